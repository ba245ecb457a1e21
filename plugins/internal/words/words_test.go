package words

import (
	"reflect"
	"testing"

	"github.com/sluice-mail/sluice/sdk"
	"github.com/sluice-mail/sluice/sdk/abi"
)

func TestRequest(t *testing.T) {
	got, err := Request("rcpt ip=192.0.2.1 from=<a@example.org> to=info@ours.test name=mx.example.org")
	want := &sdk.Request{Stage: abi.StageRcpt, SessionID: "readme", ClientIP: "192.0.2.1", MailFrom: "a@example.org",
		Rcpt: "info@ours.test", ClientName: "mx.example.org", ClientNameResult: "pass"}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("rcpt: %+v, %v; want %+v", got, err, want)
	}
	got, err = Request("data ip=2001:db8::1 to=a@ours.test,b@ours.test spf=example.org dkim=a.example,b.example")
	want = &sdk.Request{Stage: abi.StageData, SessionID: "readme", ClientIP: "2001:db8::1", Rcpts: []string{"a@ours.test", "b@ours.test"},
		Auth: abi.Auth{SPF: abi.SPF{Result: "pass", Domain: "example.org"},
			DKIM: []abi.DKIM{{Result: "pass", Domain: "a.example"}, {Result: "pass", Domain: "b.example"}}}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("data: %+v, %v; want %+v", got, err, want)
	}
	got, err = Request("mail ip=192.0.2.1 from=info@ours.test user=alice")
	want = &sdk.Request{Stage: abi.StageMail, SessionID: "readme", ClientIP: "192.0.2.1", MailFrom: "info@ours.test", AuthenticatedUser: "alice"}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("mail as a user: %+v, %v; want %+v", got, err, want)
	}
	for _, bad := range []string{"", "helo ip=1.2.3.4", "mail ip", "mail colour=red"} {
		if _, err := Request(bad); err == nil {
			t.Errorf("Request(%q) took it", bad)
		}
	}
}
