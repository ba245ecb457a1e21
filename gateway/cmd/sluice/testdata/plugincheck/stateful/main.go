// Command stateful is a test plugin for sluice plugin check: its answer
// depends on how many requests its instance has seen, which the gateway,
// giving requests to any instance, makes look random.
package main

import "github.com/sluice-mail/sluice/sdk"

type stateful struct{ calls int }

func (s *stateful) Helo(*sdk.Request) sdk.Verdict {
	s.calls++
	return sdk.Continue().Finding("CALLS", float64(s.calls))
}

func init() { sdk.Register(&stateful{}) }

func main() {}
