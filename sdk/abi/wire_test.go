package abi

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

func fullRequest() *Request {
	return &Request{
		Stage: StageRcpt, SessionID: "s1", ClientIP: "192.0.2.1", ClientName: "mail.example.org",
		Helo: "mail.example.org", TLS: true, MailFrom: "a@example.org", UTF8: true,
		Rcpts: []string{"x@example.com", "y@example.com"}, Rcpt: "z@example.com", Size: 4096,
		Auth: Auth{
			SPF:  SPF{Result: "pass", Domain: "example.org", Helo: "none"},
			DKIM: []DKIM{{Result: "pass", Domain: "example.org", Selector: "s1"}, {Result: "fail", Domain: "x.test", Selector: "s2", Reason: "bad signature"}},
			ARC:  ARC{Result: "pass", Instances: 2, OldestPass: 1, Sealers: []string{"a.test", "b.test"}},
			DMARC: DMARC{Result: "fail", FromDomain: "example.org", PolicyDomain: "example.org", Policy: "reject", Pct: 100,
				SPFAligned: false, DKIMAligned: true, Reason: "x"},
		},
		ClientNameResult:  "pass",
		Findings:          []PluginFinding{{"dnsbl", "DNSBL_X", 2.5}, {"rspamd", "BAYES_HAM", -3.25}},
		AuthenticatedUser: "alice",
	}
}

func fullVerdict() *Verdict {
	return &Verdict{
		Action: Reject, Code: 550, Enhanced: "5.7.1", Text: "no", Destination: "me@example.net",
		AddHeaders:    []Header{{"X-A", "1"}, {"X-B", ""}},
		RemoveHeaders: []string{"X-Spam"},
		Findings:      []Finding{{"BAYES_99", 3.5}, {"NEG", -1.25}},
		Destinations:  []string{"you@example.org", "them@example.com"},
	}
}

// TestDecodeRequestShared checks that the shared decoding reads what
// DecodeRequest reads, with an allocation per list at most rather than
// one per string.
func TestDecodeRequestShared(t *testing.T) {
	enc := AppendRequest(nil, fullRequest())
	var want, got Request
	if err := DecodeRequest(enc, &want); err != nil {
		t.Fatal(err)
	}
	if err := DecodeRequestShared(bytes.Clone(enc), &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("DecodeRequestShared =\n%+v\nwant\n%+v", got, want)
	}
	// Rcpts, DKIM, Sealers, Findings.
	if n := testing.AllocsPerRun(100, func() { DecodeRequestShared(enc, &got) }); n > 4 {
		t.Errorf("DecodeRequestShared took %v allocations, want at most 4", n)
	}
	if err := DecodeRequestShared(enc[:len(enc)-3], &got); err == nil {
		t.Error("a request cut short decoded")
	}
}

func TestRoundTrip(t *testing.T) {
	req := fullRequest()
	var gotReq Request
	if err := DecodeRequest(AppendRequest(nil, req), &gotReq); err != nil || !reflect.DeepEqual(&gotReq, req) {
		t.Fatalf("request: got %+v, %v; want %+v", gotReq, err, req)
	}
	v := fullVerdict()
	var gotV Verdict
	if err := DecodeVerdict(AppendVerdict(nil, v), &gotV); err != nil || !reflect.DeepEqual(&gotV, v) {
		t.Fatalf("verdict: got %+v, %v; want %+v", gotV, err, v)
	}
	cr := &ConfigureRequest{Version: Version, Name: "router", Hostname: "mx.test", Config: []byte("a = 1\n"), Domains: []string{"ours.test", "xn--bcher-kva.example"}}
	var gotCR ConfigureRequest
	if err := DecodeConfigureRequest(AppendConfigureRequest(nil, cr), &gotCR); err != nil || !reflect.DeepEqual(&gotCR, cr) {
		t.Fatalf("configure request: got %+v, %v", gotCR, err)
	}
	cs := &ConfigureResponse{Error: "bad", Stages: StageSetOf(StageRcpt, StageData), Permissions: MayReject | MaySetDestination, ErrorKey: "rule.0.to"}
	var gotCS ConfigureResponse
	if err := DecodeConfigureResponse(AppendConfigureResponse(nil, cs), &gotCS); err != nil || !reflect.DeepEqual(&gotCS, cs) {
		t.Fatalf("configure response: got %+v, %v", gotCS, err)
	}
}

// An older peer sends fewer fields; a newer one sends more. Both must decode.
func TestMissingAndExtraTrailingFields(t *testing.T) {
	enc := AppendRequest(nil, fullRequest())
	var got Request
	if err := DecodeRequest(append(enc, 0x07, 0x01, 'x'), &got); err != nil || !reflect.DeepEqual(&got, fullRequest()) {
		t.Fatalf("extra trailing bytes: got %+v, %v", got, err)
	}
	old := AppendRequest(nil, &Request{Stage: StageMail, SessionID: "s", MailFrom: "a@b"})
	old = old[:len(old)-4-authLen(&Request{})] // drop Rcpts, Rcpt, Size and Auth as an older encoder would not write them
	if err := DecodeRequest(old, &got); err != nil {
		t.Fatal(err)
	}
	if got.MailFrom != "a@b" || got.Rcpts != nil || got.Size != 0 {
		t.Fatalf("short message: got %+v", got)
	}
	// A host before the findings ends at client_name_result: the guest
	// reads no findings; a guest before them reads the rest as before.
	full := fullRequest()
	full.Findings, full.AuthenticatedUser = nil, ""
	enc = AppendRequest(nil, full)
	enc = enc[:len(enc)-2] // the count 0 of findings and the empty user, which an older host does not write
	if err := DecodeRequest(enc, &got); err != nil || !reflect.DeepEqual(&got, full) {
		t.Fatalf("request of a host before findings: got %+v, %v; want %+v", got, err, full)
	}
	d := decoder{b: AppendRequest(nil, fullRequest())}
	prior := Request{Stage: Stage(d.uint()), SessionID: d.str(), ClientIP: d.str(), ClientName: d.str(), Helo: d.str(), TLS: d.bool(),
		MailFrom: d.str(), UTF8: d.bool(), Rcpts: d.strs(), Rcpt: d.str(), Size: d.uint(), Auth: d.auth(), ClientNameResult: d.str()}
	if d.err != nil || !reflect.DeepEqual(&prior, full) {
		t.Fatalf("the fields before findings, as a guest before them reads them: %+v, %v", prior, d.err)
	}
}

// AuthenticatedUser is appended after Findings: a host before it sends
// requests that read as from no user, and a guest before it reads every
// earlier field of a request that names one.
func TestAuthenticatedUserAppended(t *testing.T) {
	full := fullRequest()
	noUser := *full
	noUser.AuthenticatedUser = ""
	enc := AppendRequest(nil, full)
	old := enc[:len(enc)-1-len(full.AuthenticatedUser)] // its length, then its bytes
	var got Request
	if err := DecodeRequest(old, &got); err != nil || !reflect.DeepEqual(got, noUser) {
		t.Fatalf("request of a host before the field: got %+v, %v; want %+v", got, err, noUser)
	}
	// A guest before the field reads up to the findings and ignores the
	// rest, as DecodeRequest does bytes after the fields it knows.
	d := decoder{b: enc}
	prior := Request{Stage: Stage(d.uint()), SessionID: d.str(), ClientIP: d.str(), ClientName: d.str(), Helo: d.str(), TLS: d.bool(),
		MailFrom: d.str(), UTF8: d.bool(), Rcpts: d.strs(), Rcpt: d.str(), Size: d.uint(), Auth: d.auth(), ClientNameResult: d.str()}
	for range d.count() {
		prior.Findings = append(prior.Findings, PluginFinding{Plugin: d.str(), Symbol: d.str(), Score: d.float()})
	}
	if d.err != nil || !reflect.DeepEqual(prior, noUser) {
		t.Fatalf("as a guest before the field reads it: %+v, %v; want %+v", prior, d.err, noUser)
	}
	if rest := string(d.b); rest != "\x05alice" {
		t.Fatalf("after the findings: %q, want the user", rest)
	}
}

// Destinations are appended after Failure: a verdict with several
// destinations reads, to a host older than the field, as one to the first
// (Destination), and a guest older than it sends none.
func TestDestinationsAppended(t *testing.T) {
	v := &Verdict{Action: Continue, Destination: "a@one.test", Destinations: []string{"b@two.test", "c@two.test"}}
	enc := AppendVerdict(nil, v)
	var got Verdict
	if err := DecodeVerdict(enc, &got); err != nil || !reflect.DeepEqual(&got, v) {
		t.Fatalf("got %+v, %v; want %+v", got, err, v)
	}
	if l := got.DestinationList(); !reflect.DeepEqual(l, []string{"a@one.test", "b@two.test", "c@two.test"}) {
		t.Errorf("DestinationList = %v", l)
	}
	d := decoder{b: enc}
	prior := Verdict{Action: Action(d.uint()), Code: uint16(d.uint()), Enhanced: d.str(), Text: d.str(), Destination: d.str()}
	d.count() // no headers
	d.strs()
	d.count() // no findings
	prior.Failure = d.str()
	if d.err != nil || prior.Destination != "a@one.test" || prior.Failure != "" {
		t.Errorf("as a host before Destinations reads it: %+v, %v", prior, d.err)
	}
	one := AppendVerdict(nil, &Verdict{Destination: "a@one.test"})
	if err := DecodeVerdict(one, &got); err != nil || got.Destinations != nil || !reflect.DeepEqual(got.DestinationList(), []string{"a@one.test"}) {
		t.Errorf("a verdict of a guest before Destinations: %+v, %v", got, err)
	}
	if l := (&Verdict{Destinations: []string{"x@y.test"}}).DestinationList(); !reflect.DeepEqual(l, []string{"x@y.test"}) {
		t.Errorf("Destinations alone: DestinationList = %v", l)
	}
}

// AddFindings adds up as the host's score does: in the order found, a
// symbol once with its last score and plugin, no more than
// MaxRequestFindings symbols.
func TestAddFindings(t *testing.T) {
	var list []PluginFinding
	if list = AddFindings(list, "a", nil); list != nil {
		t.Errorf("nothing found: %v, want nil", list)
	}
	list = AddFindings(list, "a", []Finding{{"X", 1}, {"Y", 2}})
	list = AddFindings(list, "b", []Finding{{"Z", 3}, {"X", -1}})
	want := []PluginFinding{{"b", "X", -1}, {"a", "Y", 2}, {"b", "Z", 3}}
	if !reflect.DeepEqual(list, want) {
		t.Errorf("got %v, want %v", list, want)
	}
	var many []Finding
	for i := range MaxRequestFindings + 10 {
		many = append(many, Finding{"S" + itoa(uint64(i)), 1})
	}
	list = AddFindings(list, "c", many)
	if len(list) != MaxRequestFindings || list[MaxRequestFindings-1].Symbol != "S"+itoa(MaxRequestFindings-4) {
		t.Errorf("%d findings, the last %v; want %d, the first ones kept", len(list), list[len(list)-1], MaxRequestFindings)
	}
	list = AddFindings(list, "d", []Finding{{"Y", 7}, {"NEW", 1}})
	if len(list) != MaxRequestFindings || list[1] != (PluginFinding{"d", "Y", 7}) {
		t.Errorf("a full list: %d findings, Y %v; want a known symbol's score changed and no new one", len(list), list[1])
	}
}

// The fields appended to the configure messages (the host's domains, the
// key of a refused setting) are read as empty from an older peer, and an
// older peer, which stops at the fields it knows, reads the rest as before.
func TestConfigureFieldsAppended(t *testing.T) {
	old := AppendConfigureRequest(nil, &ConfigureRequest{Version: Version, Name: "r", Hostname: "mx.test", Config: []byte("a = 1\n")})
	old = old[:len(old)-1] // an older host writes no domains (here the count 0)
	var cr ConfigureRequest
	if err := DecodeConfigureRequest(old, &cr); err != nil || cr.Domains != nil || string(cr.Config) != "a = 1\n" {
		t.Errorf("request of an older host: %+v, %v", cr, err)
	}
	enc := AppendConfigureResponse(nil, &ConfigureResponse{Error: "no", Stages: StageSetOf(StageRcpt), ErrorKey: "rule.0.to"})
	d := decoder{b: enc}
	if e, st, p := d.str(), d.uint(), d.uint(); d.err != nil || e != "no" || st != uint64(StageSetOf(StageRcpt)) || p != 0 {
		t.Errorf("the response's first three fields, as an older host reads them: %q %d %d %v", e, st, p, d.err)
	}
	var cs ConfigureResponse
	if err := DecodeConfigureResponse(enc[:len(enc)-len("rule.0.to")-1], &cs); err != nil || cs.ErrorKey != "" || cs.Error != "no" {
		t.Errorf("response of an older guest: %+v, %v", cs, err)
	}
}

func TestMalformed(t *testing.T) {
	enc := AppendVerdict(nil, fullVerdict())
	for cut := 1; cut < len(enc); cut++ {
		var v Verdict
		err := DecodeVerdict(enc[:cut], &v)
		// A cut inside a string or float must be detected; a cut exactly
		// between fields is a valid shorter message.
		if err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("cut %d: unexpected error %v", cut, err)
		}
	}
	bad := [][]byte{
		{byte(Reject), 0xff},             // truncated varint
		{byte(Reject), 0, 5, 'a'},        // string longer than input
		{0x09},                           // unknown action
		{byte(Reject), 0, 0, 0, 0, 0xff}, // header count larger than input
		{byte(Reject), 0xff, 0xff, 0x04}, // code above 65535
	}
	for _, b := range bad {
		var v Verdict
		if err := DecodeVerdict(b, &v); !errors.Is(err, ErrMalformed) {
			t.Errorf("DecodeVerdict(%x) = %v, want ErrMalformed", b, err)
		}
	}
}

func TestPermissionsAllow(t *testing.T) {
	p := MayReject | MaySetDestination
	cases := []struct {
		v    Verdict
		want bool
	}{
		{Verdict{Action: Continue}, true},
		{Verdict{Action: Reject}, true},
		{Verdict{Action: Continue, Destination: "a@b"}, true},
		{Verdict{Action: Continue, Destinations: []string{"a@b"}}, true},
		{Verdict{Action: Discard}, false},
		{Verdict{Action: Accept, Destinations: []string{"a@b"}}, false},
		{Verdict{Action: Continue, AddHeaders: []Header{{"X", "y"}}}, false},
		{Verdict{Action: Continue, RemoveHeaders: []string{"X"}}, false},
	}
	for _, c := range cases {
		if got := p.Allows(&c.v); got != c.want {
			t.Errorf("Allows(%+v) = %v, want %v", c.v, got, c.want)
		}
	}
}

func TestStageNames(t *testing.T) {
	for _, s := range Stages() {
		got, ok := ParseStage(s.String())
		if !ok || got != s {
			t.Errorf("ParseStage(%q) = %v, %v", s.String(), got, ok)
		}
	}
	if _, ok := ParseStage("body"); ok {
		t.Error("ParseStage accepted an unknown stage")
	}
	if StageSetOf(StageRcpt).Has(StageData) || !StageSetOf(StageRcpt).Has(StageRcpt) {
		t.Error("StageSet membership is wrong")
	}
}

func FuzzDecodeVerdict(f *testing.F) {
	f.Add(AppendVerdict(nil, fullVerdict()))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var v Verdict
		if err := DecodeVerdict(b, &v); err != nil {
			return
		}
		// Whatever decodes must re-encode to something that decodes the same.
		var again Verdict
		if err := DecodeVerdict(AppendVerdict(nil, &v), &again); err != nil || !reflect.DeepEqual(v, again) {
			t.Fatalf("re-decode differs: %+v vs %+v (%v)", v, again, err)
		}
	})
}

func FuzzDecodeRequest(f *testing.F) {
	f.Add(AppendRequest(nil, fullRequest()))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Request
		if err := DecodeRequest(b, &r); err != nil {
			return
		}
		enc := AppendRequest(nil, &r)
		if !bytes.Equal(enc, AppendRequest(nil, &r)) {
			t.Fatal("encoding is not deterministic")
		}
		// Whatever decodes must re-encode to something that decodes the same.
		var again Request
		if err := DecodeRequest(enc, &again); err != nil || !reflect.DeepEqual(r, again) {
			t.Fatalf("re-decode differs: %+v vs %+v (%v)", r, again, err)
		}
	})
}

func authLen(r *Request) int {
	e := encoder{}
	e.auth(&r.Auth)
	return len(e.b)
}
