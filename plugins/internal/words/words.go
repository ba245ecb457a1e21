// Package words reads the requests that the greylist and ratelimit
// READMEs describe in words, so that their example tables, which tests
// run, read the same way: a stage, then key=value words.
//
//	rcpt ip=192.0.2.1 from=<a@example.org> to=info@your-domain.test
//	data ip=192.0.2.1 to=a@ours.test,b@ours.test spf=example.org dkim=a.example,b.example
//
// Keys: ip, from, to (comma-separated; at rcpt the first is the recipient
// decided), name (a client name whose forward-confirmed lookup passed),
// spf and dkim (domains for which they passed), user (the user logged in
// to the submission service who sends it).
package words

import (
	"fmt"
	"strings"

	"github.com/sluice-mail/sluice/sdk"
	"github.com/sluice-mail/sluice/sdk/abi"
)

var stages = map[string]abi.Stage{"mail": abi.StageMail, "rcpt": abi.StageRcpt, "data": abi.StageData}

// Request builds the request that text describes.
func Request(text string) (*sdk.Request, error) {
	f := strings.Fields(text)
	if len(f) == 0 {
		return nil, fmt.Errorf("no stage")
	}
	st, ok := stages[f[0]]
	if !ok {
		return nil, fmt.Errorf("unknown stage %q", f[0])
	}
	req := &sdk.Request{Stage: st, SessionID: "readme"}
	for _, w := range f[1:] {
		key, value, ok := strings.Cut(w, "=")
		if !ok {
			return nil, fmt.Errorf("%q is not key=value", w)
		}
		switch key {
		case "ip":
			req.ClientIP = value
		case "from":
			req.MailFrom = strings.Trim(value, "<>")
		case "to":
			req.Rcpts = strings.Split(value, ",")
			if st == abi.StageRcpt {
				req.Rcpt, req.Rcpts = req.Rcpts[0], nil
			}
		case "name":
			req.ClientName, req.ClientNameResult = value, "pass"
		case "user":
			req.AuthenticatedUser = value
		case "spf":
			req.Auth.SPF = abi.SPF{Result: "pass", Domain: value}
		case "dkim":
			for d := range strings.SplitSeq(value, ",") {
				req.Auth.DKIM = append(req.Auth.DKIM, abi.DKIM{Result: "pass", Domain: d})
			}
		default:
			return nil, fmt.Errorf("unknown key %q", key)
		}
	}
	return req, nil
}
