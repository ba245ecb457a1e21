package abi

import (
	"strings"
	"testing"
)

func TestCheckVerdict(t *testing.T) {
	all := MayAccept | MayReject | MayTempfail | MayDiscard | MayQuarantine |
		MayAddHeaders | MayRemoveHeaders | MaySetDestination
	good := []Verdict{
		{},
		{Action: Reject},
		{Action: Reject, Code: 554, Enhanced: "5.7.1", Text: "no"},
		{Action: Tempfail, Code: 421},
		{Action: Continue, Destination: "me@inbox.test"},
		{Action: Continue, Destination: "me@inbox.test", Destinations: []string{"you@inbox.test", "them@elsewhere.test"}},
		{Action: Continue, Destinations: []string{"you@inbox.test"}},
		{AddHeaders: []Header{{Name: "X-Spam", Value: "yes\tfolded"}}, RemoveHeaders: []string{"X-Old"}},
		{Findings: []Finding{{Symbol: "RDNS_NONE", Score: 1}}},
	}
	for _, v := range good {
		if err := CheckVerdict(&v, StageRcpt, all); err != nil {
			t.Errorf("%+v: %v, want it accepted", v, err)
		}
	}
	bad := []struct {
		v     Verdict
		stage Stage
		perms Permissions
		want  string
	}{
		{Verdict{Action: Accept}, StageRcpt, MayReject, "verdict accept is outside the permissions"},
		{Verdict{Destination: "a@b.test"}, StageRcpt, MayAccept, "verdict continue with destination is outside"},
		{Verdict{Action: Reject, Code: 451}, StageRcpt, all, "reject with reply code 451; it needs 5xx"},
		{Verdict{Action: Tempfail, Code: 550}, StageRcpt, all, "tempfail with reply code 550; it needs 4xx"},
		{Verdict{Action: Tempfail, Enhanced: "5.7.1"}, StageRcpt, all, "enhanced code 5.7.1 does not match reply code 451"},
		{Verdict{Action: Reject, Code: 250}, StageRcpt, all, "reply code 250 is not 4xx or 5xx"},
		{Verdict{Action: Reject, Text: "no\r\n250 ok"}, StageRcpt, all, "has control characters"},
		{Verdict{Destination: "a@b.test"}, StageData, all, "a destination is only for the rcpt stage, not data"},
		{Verdict{Destination: "a@b.test> NOTIFY=NEVER"}, StageRcpt, all, "is not an address"},
		{Verdict{Destination: "nobody"}, StageRcpt, all, "is not an address"},
		{Verdict{Destinations: []string{"a@b.test"}}, StageRcpt, MayAccept, "verdict continue with destination is outside"},
		{Verdict{Destinations: []string{"a@b.test"}}, StageData, all, "a destination is only for the rcpt stage, not data"},
		{Verdict{Destination: "a@b.test", Destinations: []string{"c@d.test", "x\r\nRSET@d.test"}}, StageRcpt, all, "is not an address"},
		{Verdict{Destination: "a@b.test", Destinations: []string{"c@d.test", "A@B.test"}}, StageRcpt, all, `destination "A@B.test" is named twice`},
		{Verdict{Destinations: manyDestinations(MaxDestinations + 1)}, StageRcpt, all, "21 destinations; at most 20"},
		{Verdict{AddHeaders: []Header{{Name: "X Bad", Value: "1"}}}, StageData, all, `header name "X Bad"`},
		{Verdict{AddHeaders: []Header{{Name: "X-A", Value: "1\nBcc: x@y.test"}}}, StageData, all, "value has control characters"},
		{Verdict{RemoveHeaders: []string{"Subject:"}}, StageData, all, `header name "Subject:"`},
		{Verdict{Findings: []Finding{{Symbol: ""}}}, StageData, all, "finding symbol"},
	}
	for _, c := range bad {
		err := CheckVerdict(&c.v, c.stage, c.perms)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v at %s: %v, want an error containing %q", c.v, c.stage, err, c.want)
		}
	}
}

func manyDestinations(n int) []string {
	var d []string
	for i := range n {
		d = append(d, "d"+itoa(uint64(i))+"@dest.test")
	}
	return d
}
