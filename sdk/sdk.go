// Package sdk is what a Sluice filter plugin written in Go builds against.
//
// A plugin is a package main that registers one value in init. The stages it
// wants are the stage methods its type has (Connect, Helo, Mail, Rcpt, Data,
// Close); Configure, if present, reads its settings and declares what it may
// do:
//
//	type router struct{ ... }
//	func (r *router) Configure(c *sdk.Config) error { ...; c.Permit(abi.MaySetDestination); return nil }
//	func (r *router) Rcpt(req *sdk.Request) sdk.Verdict { return sdk.Continue().WithDestination("me@inbox.test") }
//	func init() { sdk.Register(&router{}) }
//	func main() {}
//
// Build it with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o router.wasm ./plugins/router
//
// Everything except the WebAssembly exports also builds natively, so plugin
// logic is tested with plain go test.
package sdk

import (
	"errors"

	"github.com/sluice-mail/sluice/sdk/abi"
)

// Request is what the host sends at each stage. Its strings share one copy
// of the encoded request, made for each call (abi.DecodeRequestShared), so
// they stay as they are after the call, but a string kept past it keeps
// that whole copy alive: up to the request's size, tens of KiB with a
// hundred recipients, for a string of a few bytes. A plugin that keeps
// strings from many requests in its memory (a cache) keeps
// strings.Clone(s) instead, within its memory_limit.
type Request = abi.Request

// Configurer is implemented by a plugin that has settings or takes any
// action other than Continue: Configure is called once per instance, before
// any request, and an error refuses the plugin's load with its text.
type Configurer interface {
	Configure(c *Config) error
}

// The stage interfaces: a plugin is called at the stages whose method it has.
type (
	ConnectHandler interface{ Connect(*Request) Verdict }
	HeloHandler    interface{ Helo(*Request) Verdict }
	MailHandler    interface{ Mail(*Request) Verdict }
	RcptHandler    interface{ Rcpt(*Request) Verdict }
	DataHandler    interface{ Data(*Request) Verdict }
	// CloseHandler is told that a session ended; there is nothing to decide.
	CloseHandler interface{ Close(*Request) }
)

// registered is the plugin behind the WebAssembly exports. It is package
// state because the exports are package-level functions; Register sets it
// once, from init.
var registered *guest

// Register makes p the plugin that this module runs. Call it once, from init.
func Register(p any) {
	if registered != nil {
		panic("sdk: Register called twice")
	}
	registered = newGuest(p)
}

// Stages returns the stages p subscribes to: those whose method it has.
func Stages(p any) abi.StageSet {
	var s abi.StageSet
	if _, ok := p.(ConnectHandler); ok {
		s |= abi.StageSetOf(abi.StageConnect)
	}
	if _, ok := p.(HeloHandler); ok {
		s |= abi.StageSetOf(abi.StageHelo)
	}
	if _, ok := p.(MailHandler); ok {
		s |= abi.StageSetOf(abi.StageMail)
	}
	if _, ok := p.(RcptHandler); ok {
		s |= abi.StageSetOf(abi.StageRcpt)
	}
	if _, ok := p.(DataHandler); ok {
		s |= abi.StageSetOf(abi.StageData)
	}
	if _, ok := p.(CloseHandler); ok {
		s |= abi.StageSetOf(abi.StageClose)
	}
	return s
}

var errNoPlugin = errors.New("no plugin registered: call sdk.Register from init")
