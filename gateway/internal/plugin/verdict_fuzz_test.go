package plugin

import (
	"strings"
	"testing"

	"github.com/sluice-mail/sluice/gateway/internal/message"
	"github.com/sluice-mail/sluice/sdk/abi"
)

// FuzzVerdict feeds the host's side of a plugin's answer arbitrary bytes:
// decoding, the checks against the stage and the plugin's permissions, and
// what the chain makes of a verdict that passes. A guest controls every
// byte, so whatever passes must be safe to act on: a reply of the right
// class with text that cannot inject reply lines, a destination that
// cannot break the relay's RCPT TO line, header fields that stay one field
// each, and nothing the permissions do not cover. Seeds are encoded
// verdicts, added at run time.
func FuzzVerdict(f *testing.F) {
	for _, v := range []abi.Verdict{
		{Action: abi.Reject, Code: 550, Enhanced: "5.7.1", Text: "no", Destination: "me@example.net",
			AddHeaders: []abi.Header{{Name: "X-A", Value: "1"}}, RemoveHeaders: []string{"X-Spam"}, Findings: []abi.Finding{{Symbol: "BAYES_99", Score: 3.5}}},
		{Action: abi.Tempfail},
		{Action: abi.Accept, Destination: "me@inbox.test"},
		{Action: abi.Continue, Destination: "me@inbox.test", Destinations: []string{"you@other.test", "ME@inbox.test"}},
		{Action: abi.Continue, Destinations: []string{"a@b.test", "c@d.test"}},
		{Action: abi.Quarantine, Text: "suspicious"},
		{Action: abi.Continue, AddHeaders: []abi.Header{{Name: "X-Inject", Value: "a\r\nBcc: x@y.test"}}},
		{Action: abi.Reject, Code: 250, Text: "smuggled\r\n250 ok"},
	} {
		for _, st := range abi.Stages() {
			f.Add(abi.AppendVerdict(nil, &v), uint8(st), uint32(1<<32-1))
		}
	}
	f.Fuzz(func(t *testing.T, b []byte, stage uint8, perms uint32) {
		st := abi.Stage(stage)
		var v abi.Verdict
		if abi.DecodeVerdict(b, &v) != nil || checkVerdict(&v, st, abi.Permissions(perms)) != nil {
			return // the host counts the call as the plugin's failure
		}
		if !abi.Permissions(perms).Allows(&v) {
			t.Fatalf("%+v passed, outside permissions %b", v, perms)
		}
		var o Outcome
		o.take("fuzz", &v)
		if v.Action == abi.Reject || v.Action == abi.Tempfail {
			r := o.Reply
			class := 5
			if v.Action == abi.Tempfail {
				class = 4
			}
			if r == nil || r.Code/100 != class || r.EnhancedCode[0] != class || strings.ContainsAny(r.Message, "\r\n\x00") {
				t.Fatalf("%+v gives the reply %+v", v, r)
			}
		}
		if len(o.Destinations) > abi.MaxDestinations {
			t.Fatalf("%+v gives %d destinations", v, len(o.Destinations))
		}
		for i, d := range o.Destinations {
			if st != abi.StageRcpt || strings.ContainsAny(d, "\r\n\x00 <>") || !strings.Contains(d, "@") {
				t.Fatalf("%+v at %s gives the destination %q", v, st, d)
			}
			for _, e := range o.Destinations[:i] {
				if strings.EqualFold(d, e) {
					t.Fatalf("%+v gives the destination %q twice", v, d)
				}
			}
		}
		for _, h := range o.AddHeaders {
			raw := message.FormatField(h.Name, h.Value)
			if fields := message.Fields(raw); len(fields) != 1 || fields[0].Name != h.Name {
				t.Fatalf("header %q: %q becomes %d fields", h.Name, h.Value, len(fields))
			}
		}
		for _, name := range o.RemoveHeaders {
			if name == "" || strings.ContainsAny(name, ": \t\r\n") {
				t.Fatalf("%+v removes the header %q", v, name)
			}
		}
	})
}
