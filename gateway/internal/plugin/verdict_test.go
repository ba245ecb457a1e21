package plugin

import (
	"strings"
	"testing"

	"github.com/sluice-mail/sluice/sdk/abi"
)

func TestCheckVerdict(t *testing.T) {
	all := abi.MayAccept | abi.MayReject | abi.MayTempfail | abi.MayDiscard | abi.MayQuarantine |
		abi.MayAddHeaders | abi.MayRemoveHeaders | abi.MaySetDestination
	good := []abi.Verdict{
		{},
		{Action: abi.Reject},
		{Action: abi.Reject, Code: 554, Enhanced: "5.7.1", Text: "no"},
		{Action: abi.Tempfail, Code: 421},
		{Action: abi.Continue, Destination: "me@inbox.test"},
		{AddHeaders: []abi.Header{{Name: "X-Spam", Value: "yes\tfolded"}}, RemoveHeaders: []string{"X-Old"}},
		{Findings: []abi.Finding{{Symbol: "RDNS_NONE", Score: 1}}},
	}
	for _, v := range good {
		if err := checkVerdict(&v, abi.StageRcpt, all); err != nil {
			t.Errorf("%+v: %v, want it accepted", v, err)
		}
	}
	bad := []struct {
		v     abi.Verdict
		stage abi.Stage
		perms abi.Permissions
		want  string
	}{
		{abi.Verdict{Action: abi.Accept}, abi.StageRcpt, abi.MayReject, "verdict accept is outside the permissions"},
		{abi.Verdict{Destination: "a@b.test"}, abi.StageRcpt, abi.MayAccept, "verdict continue with destination is outside"},
		{abi.Verdict{Action: abi.Reject, Code: 451}, abi.StageRcpt, all, "reject with reply code 451; it needs 5xx"},
		{abi.Verdict{Action: abi.Tempfail, Code: 550}, abi.StageRcpt, all, "tempfail with reply code 550; it needs 4xx"},
		{abi.Verdict{Action: abi.Tempfail, Enhanced: "5.7.1"}, abi.StageRcpt, all, "enhanced code 5.7.1 does not match reply code 451"},
		{abi.Verdict{Action: abi.Reject, Code: 250}, abi.StageRcpt, all, "reply code 250 is not 4xx or 5xx"},
		{abi.Verdict{Action: abi.Reject, Text: "no\r\n250 ok"}, abi.StageRcpt, all, "has control characters"},
		{abi.Verdict{Destination: "a@b.test"}, abi.StageData, all, "a destination is only for the rcpt stage, not data"},
		{abi.Verdict{Destination: "a@b.test> NOTIFY=NEVER"}, abi.StageRcpt, all, "is not an address"},
		{abi.Verdict{Destination: "nobody"}, abi.StageRcpt, all, "is not an address"},
		{abi.Verdict{AddHeaders: []abi.Header{{Name: "X Bad", Value: "1"}}}, abi.StageData, all, `header name "X Bad"`},
		{abi.Verdict{AddHeaders: []abi.Header{{Name: "X-A", Value: "1\nBcc: x@y.test"}}}, abi.StageData, all, "value has control characters"},
		{abi.Verdict{RemoveHeaders: []string{"Subject:"}}, abi.StageData, all, `header name "Subject:"`},
		{abi.Verdict{Findings: []abi.Finding{{Symbol: ""}}}, abi.StageData, all, "finding symbol"},
	}
	for _, c := range bad {
		err := checkVerdict(&c.v, c.stage, c.perms)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v at %s: %v, want an error containing %q", c.v, c.stage, err, c.want)
		}
	}
}

func TestReplyDefaults(t *testing.T) {
	r := reply("spam", &abi.Verdict{Action: abi.Reject})
	if r.Code != 550 || r.EnhancedCode != [3]int{5, 7, 1} || r.Message != "Refused by filter spam" {
		t.Errorf("reject default: %+v", r)
	}
	r = reply("spam", &abi.Verdict{Action: abi.Tempfail})
	if r.Code != 451 || r.EnhancedCode != [3]int{4, 7, 1} || r.Message != "Deferred by filter spam, try again later" {
		t.Errorf("tempfail default: %+v", r)
	}
	r = reply("spam", &abi.Verdict{Action: abi.Tempfail, Code: 452, Text: "full"})
	if r.Code != 452 || r.EnhancedCode != [3]int{4, 7, 1} || r.Message != "full" {
		t.Errorf("tempfail 452: %+v", r)
	}
}
