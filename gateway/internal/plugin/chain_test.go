package plugin

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/sluice-mail/sluice/sdk/abi"
)

func TestChainSemantics(t *testing.T) {
	h, _ := newHost(t)
	p := func(name, config string) *Plugin { return load(t, h, scriptedSpec(t, name, config)) }
	accept := p("accept", `verdict = "accept"`+"\npermit = [\"accept\"]")
	reject := p("reject", `verdict = "reject"`+"\npermit = [\"reject\"]")
	tempfail := p("tempfail", `verdict = "tempfail"`+"\ncode = 452\nenhanced = \"4.2.2\"\ntext = \"full\"\npermit = [\"tempfail\"]")
	discard := p("discard", `verdict = "discard"`+"\npermit = [\"discard\"]")
	discardText := p("discard-text", `verdict = "discard"`+"\ntext = \"Dropped: list traffic\"\npermit = [\"discard\"]")
	quarantine := p("quarantine", `verdict = "quarantine"`+"\ntext = \"odd\"\nfinding = \"ODD\"\npermit = [\"quarantine\"]")
	destA := p("dest-a", `destination = "a@inbox.test"`+"\nheader = \"X-A: 1\"\npermit = [\"destination\", \"add_headers\"]")
	destB := p("dest-b", `destination = "b@inbox.test"`+"\nheader = \"X-B: 2\"\npermit = [\"destination\", \"add_headers\"]")
	destMany := p("dest-many", `destinations = ["c@inbox.test", "d@elsewhere.test"]`+"\npermit = [\"destination\"]")
	cont := p("continue", ``)

	names := func(o Outcome) []string {
		var n []string
		for _, r := range o.Verdicts {
			n = append(n, r.Name)
		}
		return n
	}
	cases := []struct {
		name    string
		chain   []*Plugin
		action  abi.Action
		called  []string
		check   func(o Outcome) bool
		explain string
	}{
		{"accept stops", []*Plugin{cont, accept, reject}, abi.Accept, []string{"continue", "accept"}, nil, ""},
		{"reject stops", []*Plugin{reject, accept}, abi.Reject, []string{"reject"},
			func(o Outcome) bool {
				return o.Reply.Code == 550 && o.Reply.EnhancedCode == [3]int{5, 7, 1} && o.Reply.Message == "Refused by filter reject"
			}, "default reply 550 5.7.1 naming the filter"},
		{"tempfail keeps its reply", []*Plugin{tempfail}, abi.Tempfail, []string{"tempfail"},
			func(o Outcome) bool {
				return o.Reply.Code == 452 && o.Reply.EnhancedCode == [3]int{4, 2, 2} && o.Reply.Message == "full"
			}, "the plugin's 452 4.2.2 full"},
		{"discard stops", []*Plugin{discard, accept}, abi.Discard, []string{"discard"},
			func(o Outcome) bool {
				return o.Reply.Code == 250 && o.Reply.EnhancedCode == [3]int{2, 0, 0} && o.Reply.Message == "OK" && o.DecidedBy == "discard"
			}, "250 2.0.0 OK, decided by discard"},
		{"discard keeps its text", []*Plugin{discardText}, abi.Discard, []string{"discard-text"},
			func(o Outcome) bool { return o.Reply.Code == 250 && o.Reply.Message == "Dropped: list traffic" },
			"250 with the plugin's text"},
		{"quarantine continues", []*Plugin{quarantine, reject}, abi.Reject, []string{"quarantine", "reject"},
			func(o Outcome) bool {
				return o.Quarantine == "odd" && len(o.Findings) == 1 && o.Findings[0].Symbol == "ODD"
			}, "quarantine reason and finding kept"},
		{"destinations last wins, headers add up", []*Plugin{destA, destB, cont}, abi.Continue, []string{"dest-a", "dest-b", "continue"},
			func(o Outcome) bool {
				return destinationIs(o, "b@inbox.test") && len(o.AddHeaders) == 2 &&
					o.AddHeaders[0].Name == "X-A" && o.AddHeaders[1].Name == "X-B"
			}, "destination b@inbox.test and headers X-A, X-B"},
		{"several destinations", []*Plugin{destA, destMany}, abi.Continue, []string{"dest-a", "dest-many"},
			func(o Outcome) bool {
				return reflect.DeepEqual(o.Destinations, []string{"c@inbox.test", "d@elsewhere.test"})
			},
			"the last verdict's destinations, c@inbox.test and d@elsewhere.test"},
		{"nobody decides", []*Plugin{cont, cont}, abi.Continue, []string{"continue", "continue"},
			func(o Outcome) bool { return o.Reply == nil && destinationIs(o, "") }, "no reply, no destination"},
	}
	for _, tc := range cases {
		c := &Chain{plugins: tc.chain}
		o := c.Run(context.Background(), rcpt("someone@x.test"), nil)
		if o.Action != tc.action {
			t.Errorf("%s: action %v, want %v", tc.name, o.Action, tc.action)
		}
		if got := names(o); len(got) != len(tc.called) || (len(got) > 0 && got[len(got)-1] != tc.called[len(tc.called)-1]) {
			t.Errorf("%s: called %v, want %v", tc.name, got, tc.called)
		}
		if tc.check != nil && !tc.check(o) {
			t.Errorf("%s: outcome %+v (reply %+v), want %s", tc.name, o, o.Reply, tc.explain)
		}
	}
}

// destinationIs reports whether an outcome routes to the one destination
// want, or to none for "".
func destinationIs(o Outcome, want string) bool {
	if want == "" {
		return len(o.Destinations) == 0
	}
	return len(o.Destinations) == 1 && o.Destinations[0] == want
}

// A plugin that names more destinations than abi.MaxDestinations, or
// one twice, or one that is no address, or any without the permission,
// fails its call as for any verdict the checks refuse: its on_failure
// (tempfail by default) applies, and the recipient goes nowhere.
func TestChainDestinationChecks(t *testing.T) {
	h, _ := newHost(t)
	many := `destinations = [`
	for i := range abi.MaxDestinations + 1 {
		if i > 0 {
			many += ", "
		}
		many += `"d` + string(rune('a'+i)) + `@inbox.test"`
	}
	many += "]\npermit = [\"destination\"]"
	for name, c := range map[string]struct{ config, err string }{
		"too-many":    {many, "bad output: 21 destinations; at most 20"},
		"twice":       {`destinations = ["a@inbox.test", "A@INBOX.test"]` + "\npermit = [\"destination\"]", `destination "A@INBOX.test" is named twice`},
		"invalid":     {`destinations = ["a@inbox.test", "b@inbox.test> NOTIFY=NEVER"]` + "\npermit = [\"destination\"]", "is not an address"},
		"unpermitted": {`destinations = ["a@inbox.test", "b@inbox.test"]`, "outside the permissions"},
	} {
		o := NewChain(load(t, h, scriptedSpec(t, name, c.config))).Run(context.Background(), rcpt("someone@x.test"), nil)
		if len(o.Destinations) != 0 || o.Action != abi.Tempfail || o.Reply.Code != 451 || len(o.Verdicts) != 1 ||
			o.Verdicts[0].Err == nil || !strings.Contains(o.Verdicts[0].Err.Error(), c.err) {
			t.Errorf("%s: %+v, want a failure %q, 451 and no destination", name, o, c.err)
		}
	}
}

func TestChainNoneSubscribed(t *testing.T) {
	h, _ := newHost(t)
	c := NewChain(load(t, h, routerSpec(t)))
	for _, st := range []abi.Stage{abi.StageConnect, abi.StageHelo, abi.StageMail, abi.StageData, abi.StageClose} {
		if o := c.Run(context.Background(), &abi.Request{Stage: st}, nil); o.Action != abi.Continue || len(o.Verdicts) != 0 {
			t.Errorf("%s: %+v, want continue with no plugin called", st, o)
		}
		if c.Handles(st) {
			t.Errorf("Handles(%s) with only a rcpt plugin", st)
		}
	}
	if !c.Handles(abi.StageRcpt) {
		t.Error("Handles(rcpt) is false with a rcpt plugin")
	}
	if o := NewChain().Run(context.Background(), rcpt("a@b.test"), nil); o.Action != abi.Continue {
		t.Errorf("empty chain: %+v", o)
	}
}

func TestCloseStageIgnoresVerdicts(t *testing.T) {
	h, _ := newHost(t)
	reject := load(t, h, scriptedSpec(t, "reject", `verdict = "reject"`+"\npermit = [\"reject\"]"))
	cont := load(t, h, scriptedSpec(t, "continue", ""))
	o := NewChain(reject, cont).Run(context.Background(), &abi.Request{Stage: abi.StageClose}, nil)
	if o.Action != abi.Continue || o.Reply != nil || len(o.Verdicts) != 2 {
		t.Errorf("close: %+v, want both plugins told and nothing decided", o)
	}
}

// A plugin whose answer is missing, because its call failed and its
// on_failure is skip or because it was left out of the chain, is named in
// the outcome's Skipped at the stages it would have been called at.
func TestChainSkipped(t *testing.T) {
	h, _ := newHost(t)
	spec := scriptedSpec(t, "flaky", "")
	spec.OnFailure = Skip
	flaky := load(t, h, spec)
	missing := []Missing{{Name: "router", Stages: abi.StageSetOf(abi.StageRcpt)}}
	c := NewPartialChain(missing, flaky)
	if !c.Handles(abi.StageRcpt) {
		t.Error("Handles(rcpt) is false with a missing rcpt plugin")
	}
	o := c.Run(context.Background(), rcpt("fatal@x.test"), nil)
	if o.Action != abi.Continue || len(o.Skipped) != 2 || o.Skipped[0] != "router" || o.Skipped[1] != "flaky" {
		t.Errorf("a failed call and a missing plugin: %+v, want continue with router and flaky skipped", o)
	}
	if o := c.Run(context.Background(), rcpt("fine@x.test"), nil); len(o.Skipped) != 1 || o.Skipped[0] != "router" {
		t.Errorf("a missing plugin: skipped %v, want [router]", o.Skipped)
	}
	if o := c.Run(context.Background(), &abi.Request{Stage: abi.StageMail}, nil); len(o.Skipped) != 0 {
		t.Errorf("mail stage: skipped %v, want none: router is a rcpt plugin", o.Skipped)
	}
}

// Each plugin's request carries the findings given with the request and
// those of the plugins before it in the run, each symbol once with its
// last score; the caller's request is left as it was.
func TestChainPassesFindingsOn(t *testing.T) {
	h, _ := newHost(t)
	p := func(name, config string) *Plugin { return load(t, h, scriptedSpec(t, name, config)) }
	a := p("a", "finding = \"A\"\nfinding_score = 2\nheader = \"X-Seen-By-A: {findings}\"\npermit = [\"add_headers\"]")
	b := p("b", "finding = \"EARLIER\"\nfinding_score = -1\nheader = \"X-Seen-By-B: {findings}\"\npermit = [\"add_headers\"]")
	quiet := p("quiet", "")
	c := p("c", "header = \"X-Seen-By-C: {findings}\"\npermit = [\"add_headers\"]")
	req := rcpt("someone@x.test")
	req.Findings = []abi.PluginFinding{{Plugin: "dnsbl", Symbol: "EARLIER", Score: 3}}
	o := NewChain(a, b, quiet, c).Run(context.Background(), req, nil)
	want := []abi.Header{
		{Name: "X-Seen-By-A", Value: "dnsbl:EARLIER=3"},
		{Name: "X-Seen-By-B", Value: "dnsbl:EARLIER=3, a:A=2"},
		{Name: "X-Seen-By-C", Value: "b:EARLIER=-1, a:A=2"},
	}
	if !reflect.DeepEqual(o.AddHeaders, want) {
		t.Errorf("what each plugin saw: %+v, want %+v", o.AddHeaders, want)
	}
	if len(req.Findings) != 1 || req.Findings[0] != (abi.PluginFinding{Plugin: "dnsbl", Symbol: "EARLIER", Score: 3}) {
		t.Errorf("the caller's request was changed: %+v", req.Findings)
	}
}

// For makes each service's chain of the plugins whose services name it,
// in order, and of the missing plugins likewise. A plugin in both is one
// Plugin (one set of instances) and closes once, whichever chain closes
// first; Loaded lists every plugin once, in order.
func TestChainForServices(t *testing.T) {
	h, _ := newHost(t)
	spec := func(name string, services ...string) Spec {
		s := scriptedSpec(t, name, "verdict = \"reject\"\ntext = \"refused by "+name+" for {authenticated_user}\"\npermit = [\"reject\"]")
		s.Services = services
		return s
	}
	mxOnly := load(t, h, spec("mx-only", "mx"))
	subOnly := load(t, h, spec("sub-only", "submission"))
	both := load(t, h, spec("both", "mx", "submission"))
	gone := Missing{Name: "gone", Stages: abi.StageSetOf(abi.StageMail), Services: []string{"submission"}}
	all := NewPartialChain([]Missing{gone}, mxOnly, subOnly, both)
	mx, sub := all.For("mx"), all.For("submission")
	if !reflect.DeepEqual(mx.Plugins(), []*Plugin{mxOnly, both}) || len(mx.Missing()) != 0 {
		t.Errorf("mx chain: %v missing %v, want mx-only and both", mx.Plugins(), mx.Missing())
	}
	if !reflect.DeepEqual(sub.Plugins(), []*Plugin{subOnly, both}) || !reflect.DeepEqual(sub.Missing(), []Missing{gone}) {
		t.Errorf("submission chain: %v missing %v, want sub-only and both, gone missing", sub.Plugins(), sub.Missing())
	}
	for _, c := range []*Chain{mx, sub} {
		if got := c.Loaded(); !reflect.DeepEqual(got, []*Plugin{mxOnly, subOnly, both}) {
			t.Errorf("Loaded: %v, want each plugin once, in order", got)
		}
	}
	if !reflect.DeepEqual(both.Info().Services, []string{"mx", "submission"}) {
		t.Errorf("Info().Services = %v", both.Info().Services)
	}
	// The submission chain's plugin sees the user at every stage and
	// refuses there; the MX chain's first plugin is another.
	msg := NewMessage([]byte("Subject: hi\r\n\r\nbody\r\n"))
	for _, st := range []abi.Stage{abi.StageMail, abi.StageRcpt, abi.StageData} {
		req := &abi.Request{Stage: st, SessionID: "s1", ClientIP: "127.0.0.1", MailFrom: "info@ours.test", Rcpt: "a@x.test", AuthenticatedUser: "alice"}
		if o := sub.Run(context.Background(), req, msg); o.Action != abi.Reject || o.DecidedBy != "sub-only" ||
			o.Reply.Message != "refused by sub-only for alice" || !reflect.DeepEqual(o.Skipped, skippedAt(st)) {
			t.Errorf("submission chain at %s: %+v, want sub-only's refusal of alice", st, o)
		}
		req.AuthenticatedUser = ""
		if o := mx.Run(context.Background(), req, msg); o.Action != abi.Reject || o.DecidedBy != "mx-only" || len(o.Skipped) != 0 {
			t.Errorf("mx chain at %s: %+v, want mx-only's refusal", st, o)
		}
	}
	// Closing the MX chain closes both, which the submission chain shares;
	// closing that chain then closes sub-only, and both is not closed again.
	if err := mx.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	req := &abi.Request{Stage: abi.StageMail, MailFrom: "info@ours.test", AuthenticatedUser: "alice"}
	if _, err := both.handle(context.Background(), req); err != errClosed {
		t.Errorf("both after the MX chain closed: %v, want it closed", err)
	}
	if v, err := subOnly.handle(context.Background(), req); err != nil || v.Action != abi.Reject {
		t.Errorf("sub-only after the MX chain closed: %+v, %v, want it still answering", v, err)
	}
	if err := sub.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := subOnly.handle(context.Background(), req); err != errClosed {
		t.Errorf("sub-only after the submission chain closed: %v, want it closed", err)
	}
}

// skippedAt is what TestChainForServices' submission chain skips: the
// missing plugin, at the mail stage only.
func skippedAt(st abi.Stage) []string {
	if st == abi.StageMail {
		return []string{"gone"}
	}
	return nil
}
