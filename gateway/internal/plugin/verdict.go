package plugin

import (
	"fmt"
	"strings"

	"github.com/emersion/go-smtp"
	"github.com/sluice-mail/sluice/sdk/abi"
)

// checkVerdict checks a verdict against the plugin's permissions and against
// what the gateway can safely act on: whatever reaches an SMTP reply or a
// header must not be able to inject lines.
func checkVerdict(v *abi.Verdict, stage abi.Stage, perms abi.Permissions) error {
	if !perms.Allows(v) {
		return fmt.Errorf("verdict %s%s is outside the permissions it declared", v.Action, changes(v))
	}
	switch v.Action {
	case abi.Reject, abi.Tempfail:
		if err := checkReply(v); err != nil {
			return err
		}
	}
	if hasControl(v.Text) {
		return fmt.Errorf("text %q has control characters", v.Text)
	}
	if v.Destination != "" {
		if stage != abi.StageRcpt {
			return fmt.Errorf("a destination is only for the rcpt stage, not %s", stage)
		}
		if !plausibleAddress(v.Destination) {
			return fmt.Errorf("destination %q is not an address", v.Destination)
		}
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

// changes describes the changes a verdict carries, for error messages.
func changes(v *abi.Verdict) string {
	var c []string
	if v.Destination != "" {
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

func checkReply(v *abi.Verdict) error {
	code := v.Code
	if code == 0 {
		code = defaultCode(v.Action)
	}
	if err := abi.CheckReply(code, v.Enhanced); err != nil {
		return err
	}
	if want := defaultCode(v.Action) / 100; code/100 != want {
		return fmt.Errorf("%s with reply code %d; it needs %dxx", v.Action, code, want)
	}
	return nil
}

func defaultCode(a abi.Action) uint16 {
	if a == abi.Tempfail {
		return 451
	}
	return 550
}

// reply is the SMTP reply for a checked Reject or Tempfail verdict, with
// defaults for what the plugin left empty.
func reply(plugin string, v *abi.Verdict) *smtp.SMTPError {
	code, enhanced, text := v.Code, v.Enhanced, v.Text
	if code == 0 {
		code = defaultCode(v.Action)
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
	class, subject, detail, _ := abi.ParseEnhanced(enhanced)
	return &smtp.SMTPError{Code: int(code), EnhancedCode: smtp.EnhancedCode{class, subject, detail}, Message: text}
}

// failureReply is the reply when a plugin fails and its policy is Tempfail.
func failureReply(plugin string) *smtp.SMTPError {
	return &smtp.SMTPError{
		Code:         451,
		EnhancedCode: smtp.EnhancedCode{4, 3, 0},
		Message:      "Filter " + plugin + " failed, try again later",
	}
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
