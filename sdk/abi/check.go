package abi

import (
	"fmt"
	"strconv"
	"strings"
)

// CheckVerdict checks a verdict given at stage against the permissions the
// plugin declared and against what a gateway can safely act on: whatever
// reaches an SMTP reply or a header must not be able to inject lines. It is
// the check of sdk/ABI.md's "What the host checks in a verdict", shared by
// the host and sdk/sdktest so that a plugin's native tests refuse what the
// gateway would.
func CheckVerdict(v *Verdict, stage Stage, perms Permissions) error {
	if !perms.Allows(v) {
		return fmt.Errorf("verdict %s%s is outside the permissions it declared", v.Action, changes(v))
	}
	if v.Action == Reject || v.Action == Tempfail {
		if err := checkVerdictReply(v); err != nil {
			return err
		}
	}
	if hasControl(v.Text) {
		return fmt.Errorf("text %q has control characters", v.Text)
	}
	if err := checkDestinations(v, stage); err != nil {
		return err
	}
	for _, h := range v.AddHeaders {
		if !validFieldName(h.Name) {
			return fmt.Errorf("header name %q is not a field name", h.Name)
		}
		if hasControl(strings.ReplaceAll(h.Value, "\t", " ")) {
			return fmt.Errorf("header %s: value has control characters", h.Name)
		}
	}
	for _, name := range v.RemoveHeaders {
		if !validFieldName(name) {
			return fmt.Errorf("header name %q is not a field name", name)
		}
	}
	for _, f := range v.Findings {
		if f.Symbol == "" || hasControl(f.Symbol) {
			return fmt.Errorf("finding symbol %q is empty or has control characters", f.Symbol)
		}
	}
	return nil
}

// DefaultReply is the SMTP reply the host makes of a Reject or Tempfail
// verdict, with its defaults for what the plugin left empty (sdk/ABI.md).
func DefaultReply(plugin string, v *Verdict) (code uint16, enhanced, text string) {
	code, enhanced, text = v.Code, v.Enhanced, v.Text
	if code == 0 {
		code = DefaultCode(v.Action)
	}
	if enhanced == "" {
		enhanced = "5.7.1"
		if code < 500 {
			enhanced = "4.7.1"
		}
	}
	if text == "" {
		text = "Refused by filter " + plugin
		if code < 500 {
			text = "Deferred by filter " + plugin + ", try again later"
		}
	}
	return code, enhanced, text
}

// Describe writes a verdict of the named plugin for people: its action
// (with the reply a client would get, or the quarantine reason), then each
// change. sdk/sdktest and `sluice plugin test` print verdicts this way.
func Describe(plugin string, v *Verdict) string {
	var b strings.Builder
	b.WriteString(v.Action.String())
	switch v.Action {
	case Reject, Tempfail:
		code, enhanced, text := DefaultReply(plugin, v)
		fmt.Fprintf(&b, " %d %s %s", code, enhanced, text)
	case Quarantine:
		b.WriteString(": " + v.Text)
	}
	if dests := v.DestinationList(); len(dests) > 0 {
		b.WriteString("; destination " + strings.Join(dests, ", "))
	}
	for _, h := range v.RemoveHeaders {
		b.WriteString("; remove header " + h)
	}
	for _, h := range v.AddHeaders {
		b.WriteString("; add header " + h.Name + ": " + h.Value)
	}
	for _, f := range v.Findings {
		b.WriteString("; finding " + f.Symbol + " " + strconv.FormatFloat(f.Score, 'g', -1, 64))
	}
	return b.String()
}

// DefaultCode is the reply code the host uses for a Reject (550) or
// Tempfail (451) verdict that gives none.
func DefaultCode(a Action) uint16 {
	if a == Tempfail {
		return 451
	}
	return 550
}

// changes describes the changes a verdict carries, for error messages.
func changes(v *Verdict) string {
	var c []string
	if v.Destination != "" || len(v.Destinations) > 0 {
		c = append(c, "destination")
	}
	if len(v.AddHeaders) > 0 {
		c = append(c, "add headers")
	}
	if len(v.RemoveHeaders) > 0 {
		c = append(c, "remove headers")
	}
	if len(c) == 0 {
		return ""
	}
	return " with " + strings.Join(c, ", ")
}

// checkDestinations checks where a verdict sends the recipient: only at
// rcpt, each an address that cannot break an RCPT TO line, at most
// MaxDestinations, none twice (a second copy to one mailbox is never
// wanted; case is ignored, as most mailboxes ignore it).
func checkDestinations(v *Verdict, stage Stage) error {
	dests := v.DestinationList()
	if len(dests) == 0 {
		return nil
	}
	if stage != StageRcpt {
		return fmt.Errorf("a destination is only for the rcpt stage, not %s", stage)
	}
	if len(dests) > MaxDestinations {
		return fmt.Errorf("%d destinations; at most %d", len(dests), MaxDestinations)
	}
	for i, d := range dests {
		if !plausibleAddress(d) {
			return fmt.Errorf("destination %q is not an address", d)
		}
		for _, e := range dests[:i] {
			if strings.EqualFold(d, e) {
				return fmt.Errorf("destination %q is named twice", d)
			}
		}
	}
	return nil
}

func checkVerdictReply(v *Verdict) error {
	code := v.Code
	if code == 0 {
		code = DefaultCode(v.Action)
	}
	if err := CheckReply(code, v.Enhanced); err != nil {
		return err
	}
	if want := DefaultCode(v.Action) / 100; code/100 != want {
		return fmt.Errorf("%s with reply code %d; it needs %dxx", v.Action, code, want)
	}
	return nil
}

func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}

// validFieldName reports whether s is a header field name (RFC 5322 §3.6.8:
// printable ASCII except the colon).
func validFieldName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 33 || s[i] > 126 || s[i] == ':' {
			return false
		}
	}
	return true
}

// plausibleAddress reports whether s looks like local@domain with nothing
// that could break an SMTP command line.
func plausibleAddress(s string) bool {
	at := strings.LastIndexByte(s, '@')
	return at > 0 && at < len(s)-1 && !hasControl(s) && !strings.ContainsAny(s, " <>")
}
