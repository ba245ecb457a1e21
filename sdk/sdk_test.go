package sdk

import (
	"encoding/binary"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/sluice-mail/sluice/sdk/abi"
)

// example subscribes to mail and rcpt, reads a setting, and panics on demand.
type example struct{ greeting string }

func (e *example) Configure(c *Config) error {
	var s struct {
		Greeting string `toml:"greeting"`
	}
	if err := c.Decode(&s); err != nil {
		return err
	}
	e.greeting = s.Greeting
	c.Permit(abi.MayReject)
	c.Permit(abi.MayAddHeaders)
	return nil
}

func (e *example) Mail(r *Request) Verdict { return Continue().AddHeader("X-Greeting", e.greeting) }

func (e *example) Rcpt(r *Request) Verdict {
	if r.Rcpt == "panic@x.test" {
		var m map[string]int
		m["boom"]++
	}
	return Reject(550, "5.1.1", "no "+r.Rcpt)
}

// roundTrip writes in into the guest's buffer as the host would and returns
// the guest's answer.
func roundTrip(g *guest, in []byte, call func(*guest, uint32) []byte) []byte {
	copy(g.buffer(uint32(len(in))), in)
	return call(g, uint32(len(in)))
}

func configureGuest(t *testing.T, g *guest, raw string) abi.ConfigureResponse {
	t.Helper()
	in := abi.AppendConfigureRequest(nil, &abi.ConfigureRequest{Version: abi.Version, Name: "ex", Config: []byte(raw)})
	var resp abi.ConfigureResponse
	if err := abi.DecodeConfigureResponse(roundTrip(g, in, (*guest).configure), &resp); err != nil {
		t.Fatal(err)
	}
	return resp
}

func handle(t *testing.T, g *guest, req *abi.Request) abi.Verdict {
	t.Helper()
	var v abi.Verdict
	if err := abi.DecodeVerdict(roundTrip(g, abi.AppendRequest(nil, req), (*guest).handle), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestConfigureDeclaresStagesAndPermissions(t *testing.T) {
	g := newGuest(&example{})
	resp := configureGuest(t, g, `greeting = "hi"`)
	if resp.Error != "" {
		t.Fatalf("configure error %q", resp.Error)
	}
	if want := abi.StageSetOf(abi.StageMail, abi.StageRcpt); resp.Stages != want {
		t.Errorf("stages = %b, want mail and rcpt (%b)", resp.Stages, want)
	}
	if want := abi.MayReject | abi.MayAddHeaders; resp.Permissions != want {
		t.Errorf("permissions = %b, want %b", resp.Permissions, want)
	}
	v := handle(t, g, &abi.Request{Stage: abi.StageMail})
	if len(v.AddHeaders) != 1 || v.AddHeaders[0] != (abi.Header{Name: "X-Greeting", Value: "hi"}) {
		t.Errorf("mail verdict %+v does not carry the configured greeting", v)
	}
}

func TestConfigureStrict(t *testing.T) {
	resp := configureGuest(t, newGuest(&example{}), "greeting = \"hi\"\ngreting = \"typo\"\n")
	if !strings.Contains(resp.Error, "unknown setting greting") {
		t.Errorf("configure error = %q, want it to name the unknown key", resp.Error)
	}
}

func TestHandleDispatchesByStage(t *testing.T) {
	g := newGuest(&example{})
	configureGuest(t, g, "")
	v := handle(t, g, &abi.Request{Stage: abi.StageRcpt, Rcpt: "a@x.test"})
	if v.Action != abi.Reject || v.Code != 550 || v.Enhanced != "5.1.1" || v.Text != "no a@x.test" {
		t.Errorf("rcpt verdict = %+v", v)
	}
	if v := handle(t, g, &abi.Request{Stage: abi.StageData}); v.Action != abi.Continue {
		t.Errorf("a stage the plugin lacks answered %v, want continue", v.Action)
	}
}

// A panic is a failure for the host; a host that predates the failure
// field sees a tempfail naming the panic.
func TestPanicBecomesFailure(t *testing.T) {
	g := newGuest(&example{})
	configureGuest(t, g, "")
	v := handle(t, g, &abi.Request{Stage: abi.StageRcpt, Rcpt: "panic@x.test"})
	if v.Failure != "panicked at rcpt: assignment to entry in nil map" {
		t.Errorf("panic verdict = %+v, want a failure naming the panic", v)
	}
	if v.Action != abi.Tempfail || !strings.Contains(v.Text, "plugin panicked at rcpt") || !strings.Contains(v.Text, "nil map") {
		t.Errorf("panic verdict = %+v, want a tempfail naming the panic", v)
	}
	if v := handle(t, g, &abi.Request{Stage: abi.StageRcpt, Rcpt: "b@x.test"}); v.Text != "no b@x.test" {
		t.Errorf("after a panic the guest answered %+v", v)
	}
}

func TestBufferGrowsAndStaysPut(t *testing.T) {
	g := newGuest(&example{})
	small := g.buffer(10)
	if again := g.buffer(minBuffer); &again[0] != &small[0] {
		t.Error("the buffer moved although it was big enough")
	}
	big := g.buffer(minBuffer * 3)
	if len(big) < minBuffer*3 {
		t.Errorf("buffer(%d) has %d bytes", minBuffer*3, len(big))
	}
	configureGuest(t, g, "")
	req := &abi.Request{Stage: abi.StageRcpt, Rcpt: strings.Repeat("a", 3*minBuffer) + "@x.test"}
	if v := handle(t, g, req); v.Text != "no "+req.Rcpt {
		t.Errorf("a request larger than the first buffer was not read whole")
	}
}

func TestRequestLargerThanBuffer(t *testing.T) {
	g := newGuest(&example{})
	v := abi.Verdict{}
	if err := abi.DecodeVerdict(g.handle(minBuffer+1), &v); err != nil {
		t.Fatal(err)
	}
	if v.Action != abi.Tempfail || !strings.Contains(v.Text, "larger than the buffer") {
		t.Errorf("verdict %+v, want a tempfail about the length", v)
	}
}

func TestVerdictHelpersDoNotAlias(t *testing.T) {
	base := Continue().AddHeader("A", "1")
	x := base.AddHeader("B", "2")
	y := base.AddHeader("C", "3")
	if x.AddHeaders[1].Name != "B" || y.AddHeaders[1].Name != "C" || len(base.AddHeaders) != 1 {
		t.Errorf("verdicts built from one base share headers: %+v %+v", x.AddHeaders, y.AddHeaders)
	}
	v := Quarantine("looks odd").WithDestination("a@b.test").RemoveHeader("X-Old").Finding("ODD", 2.5)
	if v.Action != abi.Quarantine || v.Text != "looks odd" || v.Destination != "a@b.test" ||
		v.RemoveHeaders[0] != "X-Old" || v.Findings[0] != (abi.Finding{Symbol: "ODD", Score: 2.5}) {
		t.Errorf("verdict = %+v", v)
	}
}

// forwarder sends each recipient to the addresses of its rcpt.
type forwarder struct{}

func (forwarder) Configure(c *Config) error { c.Permit(abi.MaySetDestination); return nil }
func (forwarder) Rcpt(r *Request) Verdict {
	return Continue().WithDestinations(strings.Split(r.Rcpt, ",")...)
}

// WithDestinations reaches the host as Destination and Destinations, so
// that an older host forwards to the first; the checks take the list.
func TestWithDestinationsRoundTrip(t *testing.T) {
	g := newGuest(forwarder{})
	configureGuest(t, g, "")
	v := handle(t, g, &abi.Request{Stage: abi.StageRcpt, Rcpt: "a@one.test,b@two.test,c@two.test"})
	if v.Destination != "a@one.test" || !reflect.DeepEqual(v.Destinations, []string{"b@two.test", "c@two.test"}) {
		t.Errorf("verdict = %+v, want a@one.test then b@two.test, c@two.test", v)
	}
	if err := abi.CheckVerdict(&v, abi.StageRcpt, abi.MaySetDestination); err != nil {
		t.Errorf("CheckVerdict: %v", err)
	}
	v = handle(t, g, &abi.Request{Stage: abi.StageRcpt, Rcpt: "a@one.test"})
	if v.Destination != "a@one.test" || v.Destinations != nil {
		t.Errorf("one destination: verdict = %+v", v)
	}
	base := Continue().WithDestinations("a@x.test", "b@x.test")
	if one := base.WithDestination("c@x.test"); !reflect.DeepEqual((*abi.Verdict)(&one).DestinationList(), []string{"c@x.test"}) {
		t.Errorf("WithDestination after WithDestinations: %v, want it to replace them", (*abi.Verdict)(&one).DestinationList())
	}
}

func TestStages(t *testing.T) {
	if s := Stages(struct{}{}); s != 0 {
		t.Errorf("a type with no stage methods subscribes to %b", s)
	}
}

// recorder keeps the last request it was given at data.
type recorder struct{ got Request }

func (r *recorder) Data(req *Request) Verdict {
	r.got = *req
	return Continue()
}

// TestRequestStringsOutliveTheBuffer checks that the strings of a request
// a plugin keeps stay as they were when the host writes the next request
// into the same buffer: they share a copy of the request, not the buffer.
func TestRequestStringsOutliveTheBuffer(t *testing.T) {
	rec := &recorder{}
	g := newGuest(rec)
	first := &abi.Request{Stage: abi.StageData, SessionID: "s1", MailFrom: "alice@example.org", Rcpts: []string{"a@example.test"}}
	handle(t, g, first)
	kept := rec.got
	handle(t, g, &abi.Request{Stage: abi.StageData, SessionID: "s2", MailFrom: "bobby@example.net", Rcpts: []string{"b@example.test"}})
	if kept.SessionID != "s1" || kept.MailFrom != "alice@example.org" || kept.Rcpts[0] != "a@example.test" {
		t.Errorf("the first request's strings became %q, %q, %q", kept.SessionID, kept.MailFrom, kept.Rcpts)
	}
}

// olderHostRequest encodes a request as a host from before the Auth fields
// did: fields 1 to 11 of sdk/ABI.md, written out by hand so that the test
// does not share the encoder it checks.
func olderHostRequest(r *Request) []byte {
	var b []byte
	varint := func(v uint64) { b = binary.AppendUvarint(b, v) }
	str := func(s string) { varint(uint64(len(s))); b = append(b, s...) }
	boolean := func(v bool) {
		if v {
			varint(1)
		} else {
			varint(0)
		}
	}
	varint(uint64(r.Stage))
	str(r.SessionID)
	str(r.ClientIP)
	str(r.ClientName)
	str(r.Helo)
	boolean(r.TLS)
	str(r.MailFrom)
	boolean(r.UTF8)
	varint(uint64(len(r.Rcpts)))
	for _, rc := range r.Rcpts {
		str(rc)
	}
	str(r.Rcpt)
	varint(r.Size)
	return b
}

// A plugin built with this SDK runs on a host that sends no Auth fields:
// it sees them as not checked, and everything else as sent.
func TestGuestReadsRequestFromOlderHost(t *testing.T) {
	rec := &recorder{}
	g := newGuest(rec)
	configureGuest(t, g, "")
	want := Request{Stage: abi.StageData, SessionID: "s9", ClientIP: "192.0.2.7", ClientName: "mx.example.org",
		Helo: "mx.example.org", TLS: true, MailFrom: "a@example.org", UTF8: true,
		Rcpts: []string{"info@your-domain.test"}, Size: 1234}
	var v abi.Verdict
	if err := abi.DecodeVerdict(roundTrip(g, olderHostRequest(&want), (*guest).handle), &v); err != nil {
		t.Fatal(err)
	}
	if v.Action != abi.Continue {
		t.Fatalf("verdict %+v, want the plugin's continue (a tempfail means the request did not decode)", v)
	}
	if !reflect.DeepEqual(rec.got, want) {
		t.Errorf("plugin saw %+v, want %+v", rec.got, want)
	}
	if a := rec.got.Auth; a.SPF.Result != "" || a.DKIM != nil || a.ARC.Result != "" || a.DMARC.Result != "" || a.Authenticated() {
		t.Errorf("Auth from an older host = %+v, want every result empty (not checked)", a)
	}

	// And a newer host's request, with a field after Auth, reads whole.
	want.Auth = abi.Auth{SPF: abi.SPF{Result: "pass", Domain: "example.org"},
		DMARC: abi.DMARC{Result: "pass", FromDomain: "example.org", Policy: "reject", Pct: 100, SPFAligned: true}}
	newer := append(abi.AppendRequest(nil, &want), 0x03, 'n', 'e', 'w')
	if err := abi.DecodeVerdict(roundTrip(g, newer, (*guest).handle), &v); err != nil || v.Action != abi.Continue {
		t.Fatalf("newer request: verdict %+v, %v", v, err)
	}
	if !reflect.DeepEqual(rec.got, want) {
		t.Errorf("plugin saw %+v, want %+v", rec.got, want)
	}
}

// A setting that Decode refuses is named in the answer's error_key, for
// the gateway to point at its line, and said in a config file's words: the
// entry of a list of tables numbered, a typo with the key probably meant.
func TestConfigureNamesTheRefusedSetting(t *testing.T) {
	for raw, want := range map[string][2]string{
		"greeting = 5\n":                   {"greeting", "greeting: expected a string, got a number"},
		"greting = \"hi\"\n":               {"greting", `unknown setting greting; did you mean "greeting"?`},
		"greting = \"hi\"\nother = 1\n":    {"greting", `unknown setting greting (did you mean "greeting"?), other`},
		"[[rule]]\nx = 1\n[[rule]]\ny=2\n": {"rule", "unknown setting rule"},
	} {
		resp := configureGuest(t, newGuest(&example{}), raw)
		if resp.ErrorKey != want[0] || resp.Error != want[1] {
			t.Errorf("%q: error %q at %q, want %q at %q", raw, resp.Error, resp.ErrorKey, want[1], want[0])
		}
	}
	// In a list of tables, the entry at fault: toml names the key alone.
	rules := "[[rule]]\nmatch = \"a\"\ncode = 550\n[[rule]]\nmatch = \"b\"\n[[rule]]\nmatch = \"c\"\ncode = \"550\"\n"
	for raw, want := range map[string][2]string{
		rules: {"rule.2.code", "rule[2].code: expected a whole number, got a string"},
		"[[rule]]\nmatch = \"a\"\n[[rule]]\nmatch = \"b\"\ncdoe = 550\n": {"rule.cdoe", `unknown setting rule.cdoe; did you mean "code"?`},
		"subaddress_seperator = \"+\"\n":                                 {"subaddress_seperator", `unknown setting subaddress_seperator; did you mean "subaddress_separator"?`},
	} {
		resp := configureGuest(t, newGuest(&rulesPlugin{}), raw)
		if resp.ErrorKey != want[0] || resp.Error != want[1] {
			t.Errorf("%q: error %q at %q, want %q at %q", raw, resp.Error, resp.ErrorKey, want[1], want[0])
		}
	}
	// Domains reach Configure.
	var got []string
	g := newGuest(&domainsPlugin{&got})
	in := abi.AppendConfigureRequest(nil, &abi.ConfigureRequest{Version: abi.Version, Name: "ex", Domains: []string{"ours.test"}})
	var resp abi.ConfigureResponse
	if err := abi.DecodeConfigureResponse(roundTrip(g, in, (*guest).configure), &resp); err != nil || !reflect.DeepEqual(got, []string{"ours.test"}) {
		t.Errorf("Config.Domains = %q (%v), want [ours.test]", got, err)
	}
}

// rulesPlugin has settings with a list of tables.
type rulesPlugin struct{}

func (*rulesPlugin) Configure(c *Config) error {
	var s struct {
		SubaddressSeparator string `toml:"subaddress_separator"`
		Rule                []struct {
			Match string `toml:"match"`
			Code  int    `toml:"code"`
		} `toml:"rule"`
	}
	return c.Decode(&s)
}
func (*rulesPlugin) Mail(*Request) Verdict { return Continue() }

type domainsPlugin struct{ got *[]string }

func (d *domainsPlugin) Configure(c *Config) error { *d.got = c.Domains; return nil }
func (d *domainsPlugin) Mail(*Request) Verdict     { return Continue() }

func TestDuration(t *testing.T) {
	var s struct {
		Per Duration `toml:"per"`
		On  *bool    `toml:"on"`
	}
	for text, want := range map[string]string{
		"30s": "30s", "90s": "90s", "120s": "2m", "1h": "1h", "1h30m": "90m", "2d": "2d", "48h": "2d", "1500ms": "1.5s",
	} {
		c := &Config{Raw: []byte("per = \"" + text + "\"\n")}
		if err := c.Decode(&s); err != nil || s.Per.String() != want {
			t.Errorf("%q: %s, %v; want %s", text, s.Per, err, want)
		}
	}
	for raw, want := range map[string]string{
		"per = \"1 hour\"\n": "per: duration \"1 hour\": want a number and a unit: 30s, 10m, 1h, 2d",
		"per = \"-1d\"\n":    "per: duration \"-1d\": not a whole number of days",
		"per = \"0s\"\n":     "per: duration \"0s\": must be more than 0",
		"on = 1\n":           "on: expected true or false, got a number",
	} {
		var se *SettingError
		if err := (&Config{Raw: []byte(raw)}).Decode(&s); !errors.As(err, &se) || err.Error() != want {
			t.Errorf("%q: %v, want %q", raw, err, want)
		}
	}
}
