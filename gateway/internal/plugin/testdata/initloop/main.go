// Command initloop is a test plugin that never finishes starting: its
// package initialisation, run by the module's _initialize, loops.
package main

import "github.com/sluice-mail/sluice/sdk"

type plugin struct{}

func (plugin) Configure(*sdk.Config) error   { return nil }
func (plugin) Rcpt(*sdk.Request) sdk.Verdict { return sdk.Continue() }

var spin int

func init() {
	for {
		spin++
	}
}

func init() { sdk.Register(plugin{}) }

func main() {}
