package plugin

import (
	"github.com/emersion/go-smtp"
	"github.com/sluice-mail/sluice/sdk/abi"
)

// checkVerdict checks a verdict against the plugin's permissions and against
// what the gateway can safely act on. The check lives in sdk/abi so that
// sdk/sdktest refuses in a plugin's native tests what the host refuses here.
func checkVerdict(v *abi.Verdict, stage abi.Stage, perms abi.Permissions) error {
	return abi.CheckVerdict(v, stage, perms)
}

// reply is the SMTP reply for a checked Reject or Tempfail verdict, with
// defaults for what the plugin left empty.
func reply(plugin string, v *abi.Verdict) *smtp.SMTPError {
	code, enhanced, text := abi.DefaultReply(plugin, v)
	class, subject, detail, _ := abi.ParseEnhanced(enhanced)
	return &smtp.SMTPError{Code: int(code), EnhancedCode: smtp.EnhancedCode{class, subject, detail}, Message: text}
}

// dropReply is the reply for a Discard verdict: 250, with the plugin's
// text if it gave one. A dropped message is neither queued nor delivered,
// so the reply says only OK.
func dropReply(v *abi.Verdict) *smtp.SMTPError {
	text := v.Text
	if text == "" {
		text = "OK"
	}
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: text}
}

// FailureReply is the reply when a plugin fails and its policy is
// Tempfail, or when the answer of a plugin that failed and was skipped
// was needed after all (a recipient no plugin routed).
func FailureReply(plugin string) *smtp.SMTPError {
	return &smtp.SMTPError{
		Code:         451,
		EnhancedCode: smtp.EnhancedCode{4, 3, 0},
		Message:      "Filter " + plugin + " failed, try again later",
	}
}
