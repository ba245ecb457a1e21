package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/sluice-mail/sluice/gateway/internal/admin"
	"github.com/sluice-mail/sluice/gateway/internal/wasmbuild"
)

// submitted is a message alice sends as info@custom.test, to
// friend@dest.test, told apart by its subject.
func submitted(subject string) string {
	return strings.Replace(submittedMessage, "Subject: a reply", "Subject: "+subject, 1)
}

// header returns the value of the first field name of a delivered message,
// or "" without one.
func header(d delivery, name string) string {
	head, _, _ := strings.Cut(string(d.data), "\r\n\r\n")
	for _, line := range strings.Split(head, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// A plugin runs where its services say: by default on the MX only, with
// services = ["submission"] on the mail our users send only, where it
// sees the user logged in (authenticated_user). ratelimit, count = "user",
// is the outbound rate limit. /admin/chain lists each plugin once with
// its services, and a reload keeps both chains.
func TestSubmissionPluginServices(t *testing.T) {
	scripted := wasmbuild.ForTest(t, "./gateway/internal/plugin/testdata/scripted")
	e := startSubmission(t, "", envOptions{plugins: fmt.Sprintf(`
%s
[[plugin]]
name = "mx-tag"
path = %[2]q
stages = ["data"]
[plugin.config]
permit = ["add_headers"]
header = "X-MX-Plugin: seen"

[[plugin]]
name = "submission-tag"
path = %[2]q
stages = ["data"]
services = ["submission"]
[plugin.config]
permit = ["add_headers"]
header = "X-Submission-Plugin: user {authenticated_user}"

[[plugin]]
name = "both-tag"
path = %[2]q
stages = ["data"]
services = ["mx", "submission"]
[plugin.config]
permit = ["add_headers"]
header = "X-Both-Plugin: [{authenticated_user}]"

[[plugin]]
name = "ratelimit"
path = %[3]q
capabilities = ["kv"]
services = ["submission"]
[[plugin.config.limit]]
count = "user"
max = 2
per = "1h"
`, routerPlugin(t), scripted, wasmbuild.ForTest(t, "./plugins/ratelimit"))})

	{
		round := "first"
		before := len(e.dest.deliveries())
		c := submissionClient(t, e)
		for i := range 2 {
			if err := sendMail(t, c, "info@custom.test", "friend@dest.test", submitted(fmt.Sprintf("%s-%d", round, i))); err != nil {
				t.Fatalf("%s: submitted message %d: %v", round, i, err)
			}
		}
		// The third is over alice's limit, whichever client sends it.
		c = submissionClient(t, e)
		err := c.Mail("info@custom.test", nil)
		wantReply(t, round+": third message of the hour", err, 450, smtp.EnhancedCode{4, 7, 1}, "User alice exceeded 2 messages per 1h, try again later")
		// On the MX, the submission plugins are not run: no user limit,
		// no submission tag.
		mx := e.client(t)
		for i := range 3 {
			if err := sendMail(t, mx, "alice@example.org", "info@ours.test", testMessage); err != nil {
				t.Fatalf("%s: MX message %d: %v", round, i, err)
			}
		}
		got := e.dest.deliveries()[before:]
		if len(got) != 5 {
			t.Fatalf("%s: %d deliveries, want 2 submitted and 3 forwarded", round, len(got))
		}
		for _, d := range got {
			submitted := d.to[0] == "friend@dest.test"
			want := [3]string{"", "user alice", "[alice]"} // mx-tag, submission-tag, both-tag
			if !submitted {
				want = [3]string{"seen", "", "[]"}
			}
			if h := [3]string{header(d, "X-MX-Plugin"), header(d, "X-Submission-Plugin"), header(d, "X-Both-Plugin")}; h != want {
				t.Errorf("%s: message to %v: X-MX-Plugin, X-Submission-Plugin, X-Both-Plugin = %q, want %q", round, d.to, h, want)
			}
		}
	}

	// The admin listener lists every plugin once, in gateway.toml's
	// order, with its services.
	chain := func() admin.Chain {
		t.Helper()
		resp, err := http.Get("http://" + e.gw.AdminAddr() + "/admin/chain")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var c admin.Chain
		if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	var services []string
	for _, p := range chain().Plugins {
		services = append(services, p.Name+":"+strings.Join(p.Services, ","))
	}
	want := []string{"router:mx", "mx-tag:mx", "submission-tag:submission", "both-tag:mx,submission", "ratelimit:submission"}
	if !reflect.DeepEqual(services, want) {
		t.Errorf("/admin/chain: %v, want %v", services, want)
	}

	// A reload builds both chains anew; each service still runs its own
	// plugins. The key-value store is the gateway's, not the
	// generation's, so alice is still over her limit.
	if err := e.gw.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if c := chain(); c.Generation != 2 || len(c.Plugins) != 5 {
		t.Fatalf("after the reload: generation %d with %d plugins, want 2 with 5", c.Generation, len(c.Plugins))
	}
	err := submissionClient(t, e).Mail("info@custom.test", nil)
	wantReply(t, "after the reload", err, 450, smtp.EnhancedCode{4, 7, 1}, "User alice exceeded 2 messages per 1h")
	before := len(e.dest.deliveries())
	if err := sendMail(t, e.client(t), "alice@example.org", "info@ours.test", testMessage); err != nil {
		t.Fatalf("MX after the reload: %v", err)
	}
	if got := e.dest.deliveries()[before:]; len(got) != 1 || header(got[0], "X-MX-Plugin") != "seen" || header(got[0], "X-Submission-Plugin") != "" {
		t.Errorf("MX after the reload: %d deliveries, want one tagged by mx-tag only", len(got))
	}
}

// A plugin of the submission service refuses at the stage it is called
// at, mail, rcpt or data, knowing the user; the MX does not run it.
func TestSubmissionPluginRefuses(t *testing.T) {
	for _, stage := range []string{"mail", "rcpt", "data"} {
		t.Run(stage, func(t *testing.T) {
			e := startSubmission(t, "", envOptions{plugins: fmt.Sprintf(`
%s
[[plugin]]
name = "outbound-rule"
path = %q
stages = [%q]
services = ["submission"]
[plugin.config]
permit = ["reject"]
verdict = "reject"
code = 554
enhanced = "5.7.1"
text = "{authenticated_user} may not send this"
`, routerPlugin(t), wasmbuild.ForTest(t, "./gateway/internal/plugin/testdata/scripted"), stage)})
			err := sendMail(t, submissionClient(t, e), "info@custom.test", "friend@dest.test", submitted("refused"))
			wantReply(t, "submitted at "+stage, err, 554, smtp.EnhancedCode{5, 7, 1}, "alice may not send this")
			if err := sendMail(t, e.client(t), "alice@example.org", "info@ours.test", testMessage); err != nil {
				t.Errorf("MX: %v, want the message forwarded: the plugin is not the MX's", err)
			}
			if got := e.dest.deliveries(); len(got) != 1 || got[0].to[0] != "me@dest.test" {
				t.Errorf("deliveries: %+v, want the MX's message only", got)
			}
		})
	}
}

// A plugin of the submission service that fails (here it panics) gives
// the user's mail program a 4xx, which it retries: never a 5xx that
// would lose the message, and nothing is delivered. A failure is counted
// in the submission service's metrics, not the MX's.
func TestSubmissionPluginFails(t *testing.T) {
	e := startSubmission(t, "", envOptions{plugins: fmt.Sprintf(`
%s
[[plugin]]
name = "outbound-check"
path = %q
stages = ["rcpt"]
services = ["submission"]
on_failure = "tempfail"
`, routerPlugin(t), wasmbuild.ForTest(t, "./gateway/internal/plugin/testdata/scripted"))})
	err := sendMail(t, submissionClient(t, e), "info@custom.test", "panic@dest.test", submitted("fails"))
	wantReply(t, "a failing plugin at submission", err, 451, smtp.EnhancedCode{4, 3, 0}, "Filter outbound-check failed, try again later")
	if got := e.dest.deliveries(); len(got) != 0 {
		t.Errorf("%d deliveries, want none", len(got))
	}
	_, b := adminDo(t, e, "GET", "/metrics")
	body := string(b)
	for _, want := range []string{
		`sluice_submission_plugin_failures_total{plugin="outbound-check",stage="rcpt"} 1`,
		`sluice_submission_messages_total{outcome="tempfailed"} 0`, // refused at RCPT: no message
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(body, `sluice_plugin_failures_total{plugin="outbound-check"`) {
		t.Error("the submission plugin's failure is in the MX's sluice_plugin_failures_total")
	}
}
