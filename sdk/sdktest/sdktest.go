// Package sdktest runs a Go plugin natively in its tests, the way the
// gateway runs its WebAssembly module: the plugin is configured with the
// TOML text of its [plugin.config] table, requests and verdicts go through
// the SDK's own dispatch and the ABI's encoding, and each verdict gets the
// host's checks (permissions, reply codes, header names and values), so a
// test fails where the gateway would count the plugin as failed. The SDK's
// host functions (sdk.Header, sdk.ReadBody, sdk.Lookup, sdk.KVGet,
// sdk.Count, ...) are served natively from the message and DNS records the
// test gives, with the gateway's rules.
//
//	p := sdktest.New(t, &myPlugin{}, `refuse = ["spam@example.test"]`)
//	v := p.Handle(t, &sdk.Request{Stage: abi.StageMail, MailFrom: "spam@example.test"})
//	if v.Action != abi.Reject { ... }
//
// Session runs every stage the plugin handles, in the order of an SMTP
// session, as `sluice plugin test` does with the built module.
//
// ReadmeExamples reads the ```toml blocks of a plugin's README and the
// tables that follow them, so that a test can check each row against the
// plugin and the README cannot promise what the code does not do.
//
// Calls of all Plugins are serialised (the SDK's host functions are
// package state), so tests may run in parallel but their calls do not.
package sdktest

import (
	"errors"
	"fmt"
	"testing"

	"github.com/sluice-mail/sluice/sdk"
	"github.com/sluice-mail/sluice/sdk/abi"
)

// The name and hostname a plugin is configured with.
const (
	Name     = "sdktest"
	Hostname = "mx.sdktest.test"
)

// Plugin is a configured plugin value.
type Plugin struct {
	guest  *sdk.Guest
	host   *host
	stages abi.StageSet
	perms  abi.Permissions
	req    []byte
}

// New configures p with config, the TOML text of its [plugin.config]
// table, and fails the test if the plugin refuses it.
func New(t testing.TB, p any, config string, opts ...Option) *Plugin {
	t.Helper()
	pl, err := Configure(p, config, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return pl
}

// Configure configures p with config as the host does when it loads the
// plugin. Its error is the plugin's refusal, or what the host would
// refuse: an answer that does not decode, or no stage declared.
func Configure(p any, config string, opts ...Option) (*Plugin, error) {
	pl := &Plugin{guest: sdk.NewGuest(p), host: newHost()}
	for _, o := range opts {
		o(pl.host)
	}
	in := abi.AppendConfigureRequest(nil, &abi.ConfigureRequest{
		Version: abi.Version, Name: Name, Hostname: Hostname, Config: []byte(config), Domains: pl.host.domains,
	})
	var resp abi.ConfigureResponse
	var err error
	pl.host.call(0, func() { err = abi.DecodeConfigureResponse(pl.guest.Configure(in), &resp) })
	if err != nil {
		return nil, fmt.Errorf("the answer is not a ConfigureResponse: %w", err)
	}
	if resp.Error != "" {
		if resp.ErrorKey != "" {
			return nil, fmt.Errorf("config refused: %w", &sdk.SettingError{Key: resp.ErrorKey, Err: errors.New(resp.Error)})
		}
		return nil, fmt.Errorf("config refused: %s", resp.Error)
	}
	pl.stages = resp.Stages & abi.StageSetOf(abi.Stages()...)
	pl.perms = resp.Permissions
	if pl.stages == 0 {
		return nil, errors.New("declares no stages, so it would never be called")
	}
	return pl, nil
}

// Stages returns the stages the plugin declared.
func (p *Plugin) Stages() abi.StageSet { return p.stages }

// Permissions returns what the plugin declared it may do.
func (p *Plugin) Permissions() abi.Permissions { return p.perms }

// SetMessage sets the message (header fields, an empty line, the body)
// that the plugin reads through the host functions at the data stage. Bare
// LF line ends become CRLF, as in the gateway.
func (p *Plugin) SetMessage(msg []byte) { p.host.setMessage(msg) }

// Counter returns the plugin's counter of this name (sdk.Count).
func (p *Plugin) Counter(name string) float64 { return p.host.count[name] }

// Try sends req to the plugin and returns its verdict, or the reason the
// gateway would count the answer as a failure of the plugin: a stage it did
// not declare (the gateway never calls it there), an answer that does not
// decode, or a verdict that fails the host's checks.
func (p *Plugin) Try(req *sdk.Request) (sdk.Verdict, error) {
	if !p.stages.Has(req.Stage) {
		return sdk.Verdict{}, fmt.Errorf("the plugin does not handle %s, so the gateway never calls it there", req.Stage)
	}
	p.req = abi.AppendRequest(p.req[:0], req)
	var v abi.Verdict
	var err error
	p.host.call(req.Stage, func() { err = abi.DecodeVerdict(p.guest.Handle(p.req), &v) })
	if err != nil {
		return sdk.Verdict{}, fmt.Errorf("bad output: the answer is not a Verdict: %w", err)
	}
	if err := abi.CheckVerdict(&v, req.Stage, p.perms); err != nil {
		return sdk.Verdict(v), fmt.Errorf("bad output: %w", err)
	}
	return sdk.Verdict(v), nil
}

// Handle is Try for a request the plugin must answer well: anything the
// gateway would count as a failure fails the test.
func (p *Plugin) Handle(t testing.TB, req *sdk.Request) sdk.Verdict {
	t.Helper()
	v, err := p.Try(req)
	if err != nil {
		t.Fatalf("%s: %v", req.Stage, err)
	}
	return v
}
