package main

import (
	"os"
	"strings"
	"testing"

	"github.com/sluice-mail/sluice/sdk"
	"github.com/sluice-mail/sluice/sdk/abi"
	"github.com/sluice-mail/sluice/sdk/sdktest"
)

func data(t *testing.T, p *sdktest.Plugin, msg string) sdk.Verdict {
	t.Helper()
	p.SetMessage([]byte(msg))
	return p.Handle(t, &sdk.Request{Stage: abi.StageData, Rcpts: []string{"me@your-domain.test"}})
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

const head = "From: a@example.net\r\nMIME-Version: 1.0\r\n"

func mixed(parts ...string) string {
	return head + "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n" +
		strings.Join(parts, "\r\n--b\r\n") + "\r\n--b--\r\n"
}

func TestBlocks(t *testing.T) {
	p := sdktest.New(t, &plugin{}, `types = ["application/x-msdownload"]`)
	cases := []struct {
		name, msg, want string // want: "" passes, else the extension or type in the reply
	}{
		{"plain text", head + "\r\nhello\r\n", ""},
		{"pdf", readFile(t, "testdata/report.eml"), ""},
		{"rfc 2231 name", readFile(t, "testdata/setup.eml"), ".exe"},
		{"in a forwarded message", readFile(t, "testdata/forwarded.eml"), ".js"},
		{"by type", readFile(t, "testdata/installer.eml"), "application/x-msdownload"},
		{"the whole message is the attachment", head + "Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=run.bat\r\n\r\nx\r\n", ".bat"},
		{"name parameter only", mixed("Content-Type: application/octet-stream; name=\"photo.JPG.scr\"\r\n\r\nx"), ".scr"},
		{"trailing dot and space", mixed("Content-Disposition: attachment; filename=\"setup.exe. \"\r\n\r\nx"), ".exe"},
		{"a path in the name", mixed("Content-Disposition: attachment; filename=\"C:\\\\temp\\\\a.vbs\"\r\n\r\nx"), ".vbs"},
		{"exe in the middle of a name", mixed("Content-Disposition: attachment; filename=\"setup.exe.pdf\"\r\n\r\nx"), ""},
		{"nested multipart", mixed("Content-Type: multipart/alternative; boundary=\"in\"\r\n\r\n--in\r\nContent-Type: text/plain\r\n\r\nx\r\n--in\r\nContent-Disposition: attachment; filename=\"x.ps1\"\r\n\r\ny\r\n--in--"), ".ps1"},
		{"no boundary: unreadable, passes", head + "Content-Type: multipart/mixed\r\n\r\n--b\r\nContent-Disposition: attachment; filename=x.exe\r\n\r\nx\r\n--b--\r\n", ""},
		{"broken after a blocked part", mixed("Content-Disposition: attachment; filename=x.exe\r\n\r\nx") + "--b\r\nno end", ".exe"},
	}
	for _, c := range cases {
		v := data(t, p, c.msg)
		switch {
		case c.want == "" && v.Action != abi.Continue:
			t.Errorf("%s: %s, want continue", c.name, sdktest.Describe(v))
		case c.want != "" && (v.Action != abi.Reject || v.Code != 550 || !strings.Contains(v.Text, c.want)):
			t.Errorf("%s: %s, want a 550 naming %s", c.name, sdktest.Describe(v), c.want)
		}
	}
}

func TestNestingIsBounded(t *testing.T) {
	msg := head + "Content-Type: multipart/mixed; boundary=\"b0\"\r\n\r\n"
	for i := 1; i < 50; i++ {
		msg += "--b" + itoa(i-1) + "\r\nContent-Type: multipart/mixed; boundary=\"b" + itoa(i) + "\"\r\n\r\n"
	}
	msg += "--b49\r\nContent-Disposition: attachment; filename=deep.exe\r\n\r\nx\r\n"
	p := sdktest.New(t, &plugin{}, "")
	if v := data(t, p, msg); v.Action != abi.Continue {
		t.Errorf("50 levels deep: %s, want the scan to stop at %d levels and pass", sdktest.Describe(v), maxDepth)
	}
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}

func TestQuarantine(t *testing.T) {
	p := sdktest.New(t, &plugin{}, `action = "quarantine"`)
	v := data(t, p, readFile(t, "testdata/setup.eml"))
	if v.Action != abi.Quarantine || !strings.Contains(v.Text, ".exe") {
		t.Errorf("%s, want quarantine", sdktest.Describe(v))
	}
	if p.Permissions()&abi.MayReject != 0 {
		t.Error("a quarantining plugin declared reject")
	}
}

func TestSettings(t *testing.T) {
	p := sdktest.New(t, &plugin{}, `extensions = [".PDF"]`)
	if v := data(t, p, readFile(t, "testdata/report.eml")); v.Action != abi.Reject {
		t.Errorf("extensions = [.PDF]: %s, want the PDF refused", sdktest.Describe(v))
	}
	if v := data(t, p, readFile(t, "testdata/setup.eml")); v.Action != abi.Continue {
		t.Errorf("extensions = [.PDF]: %s, want the exe passed", sdktest.Describe(v))
	}
	for config, want := range map[string]string{
		`extensions = ["e x e"]`:  "not a file name extension",
		`types = ["application"]`: "not a media type",
		`action = "drop"`:         "neither reject nor quarantine",
		`extension = ["exe"]`:     "unknown setting extension",
	} {
		if _, err := sdktest.Configure(&plugin{}, config); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", config, err, want)
		}
	}
}

// Without the capabilities it needs, the plugin refuses to load.
func TestNeedsCapabilities(t *testing.T) {
	for _, deny := range []abi.Capability{abi.CapBody, abi.CapHeaders} {
		_, err := sdktest.Configure(&plugin{}, "", sdktest.Deny(deny))
		if err == nil || !strings.Contains(err.Error(), `capabilities = ["headers", "body"]`) {
			t.Errorf("without %s: %v", deny, err)
		}
	}
}
