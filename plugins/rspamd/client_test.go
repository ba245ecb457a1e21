package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/sluice-mail/sluice/sdk"
	"github.com/sluice-mail/sluice/sdk/abi"
	"github.com/sluice-mail/sluice/sdk/sdktest"
)

// Bad settings are refused at their key.
func TestConfigRefused(t *testing.T) {
	hosts := sdktest.HTTPHosts("127.0.0.1:11333")
	for _, c := range []struct{ config, key, want string }{
		{`url = "127.0.0.1:11333"`, "url", "is not an http:// or https:// URL"},
		{`url = "http://127.0.0.1:11334"`, "url", "host not allowed"},
		{`on_error = "accept"`, "on_error", `must be "skip" or "tempfail"`},
		{`findings = "all"`, "findings", `must be "symbols", "score" or "none"`},
		{"[actions]\nreject = \"drop\"", "actions.reject", "must be one of reject, tempfail, quarantine, header, subject, continue"},
		{`timeout = "5s"`, "timeout", "unknown"},
	} {
		_, err := sdktest.Configure(&plugin{}, c.config, hosts)
		var se *sdk.SettingError
		if err == nil || !strings.Contains(err.Error(), c.want) || !errors.As(err, &se) || se.Key != c.key {
			t.Errorf("%s: %v, want a refusal at %s with %q", c.config, err, c.key, c.want)
		}
	}
}

// It declares only what its settings need.
func TestPermissions(t *testing.T) {
	hosts := sdktest.HTTPHosts("127.0.0.1:11333")
	p := sdktest.New(t, &plugin{}, "", hosts)
	if want := abi.MayReject | abi.MayTempfail | abi.MayAddHeaders | abi.MayRemoveHeaders; p.Permissions() != want {
		t.Errorf("defaults: permissions %b, want %b", p.Permissions(), want)
	}
	p = sdktest.New(t, &plugin{}, "[actions]\nreject = \"quarantine\"\nsoft_reject = \"continue\"\nrewrite_subject = \"header\"", hosts)
	if want := abi.MayQuarantine | abi.MayAddHeaders; p.Permissions() != want {
		t.Errorf("permissions %b, want %b", p.Permissions(), want)
	}
	if p.Stages() != abi.StageSetOf(abi.StageData) {
		t.Errorf("stages %b, want data only", p.Stages())
	}
}
