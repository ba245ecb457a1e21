package sdktest

import (
	"slices"

	"github.com/sluice-mail/sluice/sdk"
	"github.com/sluice-mail/sluice/sdk/abi"
)

// Envelope is what one SMTP session brings, for Session.
type Envelope struct {
	ClientIP   string
	ClientName string // the verified reverse DNS name, or ""
	// ClientNameResult is how ClientName was found: pass, fail, none or
	// temperror (abi.Request.ClientNameResult).
	ClientNameResult string
	Helo             string
	TLS              bool
	MailFrom         string // "" for the null sender
	UTF8             bool
	Rcpts            []string
	// Message is what DATA carries: header fields, an empty line, the
	// body. Its length (after line ends become CRLF) is the request's Size.
	Message []byte
	// Auth is what the gateway found about the message, given at data.
	Auth abi.Auth
	// Findings are what plugins before this one in the chain found, as if
	// at MAIL FROM: every request from the mail stage on carries them
	// (abi.Request.Findings), and the plugin's own findings join them
	// stage by stage, as the gateway adds them up.
	Findings []abi.PluginFinding
	// AuthenticatedUser is the user logged in to the submission service,
	// as for mail our users send (abi.Request.AuthenticatedUser): a client
	// logs in after EHLO, so every request from the mail stage on, close
	// included, names the user. "" for mail arriving at the MX.
	AuthenticatedUser string
}

// SessionID is the session ID of the requests Session sends.
const SessionID = "sdktest-session"

// Step is one call of the plugin in a Session.
type Step struct {
	Stage   abi.Stage
	Rcpt    string // at rcpt: the recipient decided
	Verdict sdk.Verdict
	Err     error // what the gateway would count as a failure of the plugin
}

// Refused reports whether the step refused the session, the transaction or
// the recipient: a Reject or Tempfail, or a failure, which the gateway's
// default on_failure answers with a tempfail.
func (s Step) Refused() bool {
	return s.Err != nil || s.Verdict.Action == abi.Reject || s.Verdict.Action == abi.Tempfail
}

func (s Step) String() string {
	what := s.Stage.String()
	switch s.Stage {
	case abi.StageRcpt:
		what += " <" + s.Rcpt + ">"
	}
	if s.Err != nil {
		return what + ": failed: " + s.Err.Error()
	}
	if s.Stage == abi.StageClose {
		return what + ": told"
	}
	return what + ": " + Describe(s.Verdict)
}

// Session runs the stages the plugin handles in the order of an SMTP
// session that brings e: connect, helo, mail, rcpt for each recipient,
// data, and close, which always comes last. Like the gateway, it goes no
// further after a refused connect, helo or mail, leaves refused recipients
// out of the requests that follow, and skips data when every recipient was
// refused. Each request carries the session so far.
func (p *Plugin) Session(e Envelope) []Step {
	req := abi.Request{
		SessionID: SessionID, ClientIP: e.ClientIP, ClientName: e.ClientName, ClientNameResult: e.ClientNameResult,
	}
	var steps []Step
	run := func(stage abi.Stage) (refused bool) {
		req.Stage = stage
		if !p.stages.Has(stage) {
			return false
		}
		v, err := p.Try(&req)
		steps = append(steps, Step{Stage: stage, Rcpt: req.Rcpt, Verdict: v, Err: err})
		if err == nil {
			req.Findings = abi.AddFindings(req.Findings, Name, v.Findings)
		}
		return steps[len(steps)-1].Refused()
	}
	p.transaction(e, &req, run)
	// The gateway tells close after the transaction, whose findings are
	// gone with it.
	req.Rcpt, req.Findings = "", nil
	run(abi.StageClose)
	return steps
}

// transaction runs the stages before close, up to the first refusal that
// ends the session.
func (p *Plugin) transaction(e Envelope, req *abi.Request, run func(abi.Stage) bool) {
	if run(abi.StageConnect) {
		return
	}
	req.Helo, req.TLS = e.Helo, e.TLS
	if run(abi.StageHelo) {
		return
	}
	// A transaction starts at MAIL FROM: the gateway's findings of
	// connect and helo are not part of it.
	req.MailFrom, req.UTF8, req.Findings = e.MailFrom, e.UTF8, slices.Clone(e.Findings)
	req.AuthenticatedUser = e.AuthenticatedUser
	if run(abi.StageMail) {
		return
	}
	for _, rcpt := range e.Rcpts {
		req.Rcpt = rcpt
		if !run(abi.StageRcpt) {
			req.Rcpts = append(req.Rcpts, rcpt)
		}
	}
	req.Rcpt = ""
	if len(req.Rcpts) == 0 {
		return
	}
	p.SetMessage(e.Message)
	req.Size = uint64(p.host.size)
	req.Auth = e.Auth
	run(abi.StageData)
}

// Describe writes a verdict as `sluice plugin test` prints it: the action
// with the reply the client would get (the gateway's defaults filled in,
// naming the plugin "sdktest"), then each change.
//
//	reject 550 5.1.1 This address is no longer in use
//	continue; destination me@inbox.test
//	quarantine: DMARC policy of example.org; add header X-Tag: [EXT]
func Describe(v sdk.Verdict) string { return describe(Name, (*abi.Verdict)(&v)) }

func describe(name string, v *abi.Verdict) string { return abi.Describe(name, v) }
