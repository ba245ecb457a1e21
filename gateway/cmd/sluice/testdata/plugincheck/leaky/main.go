// Command leaky is a test plugin for sluice plugin check: it keeps 2 KiB
// of every request it answers, as a plugin that caches without bound would.
package main

import "github.com/sluice-mail/sluice/sdk"

type leaky struct{ kept [][]byte }

func (l *leaky) Rcpt(*sdk.Request) sdk.Verdict {
	l.kept = append(l.kept, make([]byte, 2048))
	return sdk.Continue()
}

func init() { sdk.Register(&leaky{}) }

func main() {}
