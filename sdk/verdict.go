package sdk

import "github.com/sluice-mail/sluice/sdk/abi"

// Verdict is a plugin's answer to a request. Build one with Continue,
// Accept, Reject, Tempfail, Discard or Quarantine, then add changes with
// its methods, each of which returns the changed verdict.
type Verdict abi.Verdict

// Continue leaves the decision to the next plugin.
func Continue() Verdict { return Verdict{Action: abi.Continue} }

// Accept ends the chain for this stage: later plugins are not asked.
func Accept() Verdict { return Verdict{Action: abi.Accept} }

// Reject refuses with a 5xx reply. Zero code and empty enhanced code or text
// let the host pick its defaults (550 5.7.1).
func Reject(code uint16, enhanced, text string) Verdict {
	return Verdict{Action: abi.Reject, Code: code, Enhanced: enhanced, Text: text}
}

// Tempfail refuses with a 4xx reply so that the client retries later. Zero
// code and empty enhanced code or text let the host pick its defaults
// (451 4.7.1).
func Tempfail(code uint16, enhanced, text string) Verdict {
	return Verdict{Action: abi.Tempfail, Code: code, Enhanced: enhanced, Text: text}
}

// Discard answers 250 and drops the recipient (at rcpt) or the message (at
// data).
func Discard() Verdict { return Verdict{Action: abi.Discard} }

// Quarantine marks the message for quarantine with a reason; later plugins
// are still asked.
func Quarantine(reason string) Verdict { return Verdict{Action: abi.Quarantine, Text: reason} }

// WithDestination sets where this recipient's mail goes (rcpt stage only).
func (v Verdict) WithDestination(addr string) Verdict {
	v.Destination, v.Destinations = addr, nil
	return v
}

// WithDestinations sets several places this recipient's mail goes (rcpt
// stage only; at most abi.MaxDestinations, none twice). The first is the
// verdict's Destination, which is all a host older than Destinations
// reads: such a host forwards to the first only.
func (v Verdict) WithDestinations(addrs ...string) Verdict {
	v.Destination, v.Destinations = "", nil
	if len(addrs) > 0 {
		v.Destination = addrs[0]
		v.Destinations = append([]string(nil), addrs[1:]...)
	}
	if len(v.Destinations) == 0 {
		v.Destinations = nil
	}
	return v
}

// AddHeader adds a header field to the message.
func (v Verdict) AddHeader(name, value string) Verdict {
	// Clip before appending so that two verdicts built from one base never
	// share a backing array.
	v.AddHeaders = append(v.AddHeaders[:len(v.AddHeaders):len(v.AddHeaders)], abi.Header{Name: name, Value: value})
	return v
}

// RemoveHeader removes every header field with this name from the message.
func (v Verdict) RemoveHeader(name string) Verdict {
	v.RemoveHeaders = append(v.RemoveHeaders[:len(v.RemoveHeaders):len(v.RemoveHeaders)], name)
	return v
}

// Finding records something the plugin noticed, with a score that adds up
// with other plugins' findings; it does not decide anything by itself.
func (v Verdict) Finding(symbol string, score float64) Verdict {
	v.Findings = append(v.Findings[:len(v.Findings):len(v.Findings)], abi.Finding{Symbol: symbol, Score: score})
	return v
}
