package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sluice-mail/sluice/gateway/internal/config"
	"github.com/sluice-mail/sluice/gateway/internal/dnstest"
	"github.com/sluice-mail/sluice/gateway/internal/resolver"
	"github.com/sluice-mail/sluice/gateway/internal/syncbuf"
)

// identityZone has one outbound address of each kind, all on loopback.
const identityZone = `$TTL 300
; 127.0.0.3: PTR and HELO name agree, both ways
3.0.0.127.in-addr.arpa.  IN PTR out3.ours.test.
out3.ours.test.          IN A   127.0.0.3
; 127.0.0.4: no PTR; the HELO name resolves to it
out4.ours.test.          IN A   127.0.0.4
; 127.0.0.5: a PTR name that resolves elsewhere; a HELO name that does not exist
5.0.0.127.in-addr.arpa.  IN PTR elsewhere.ours.test.
elsewhere.ours.test.     IN A   127.0.0.9
; 127.0.0.6: DNS fails for both its PTR and its HELO name
; ::1: good over IPv6
1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa. IN PTR six.ours.test.
six.ours.test.           IN AAAA ::1
`

// identityLog is one line checkSourceDNS logged.
type identityLog struct {
	Level      string `json:"level"`
	Msg        string `json:"msg"`
	PTR        string `json:"ptr"`
	ResolvesTo string `json:"resolves_to"`
}

func TestCheckSourceDNS(t *testing.T) {
	srv := dnstest.Start(t, identityZone)
	srv.Fail("6.0.0.127.in-addr.arpa.", dns.RcodeServerFailure)
	srv.Fail("out6.ours.test.", dns.RcodeServerFailure)
	res, err := resolver.New(resolver.Config{Nameservers: []string{srv.Addr()}, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		src  config.Source
		want []identityLog
	}{
		{config.Source{Address: "127.0.0.3", Helo: "out3.ours.test"}, []identityLog{
			{Level: "INFO", Msg: "outbound address: reverse DNS is forward-confirmed", PTR: "out3.ours.test"},
		}},
		{config.Source{Address: "127.0.0.4", Helo: "out4.ours.test"}, []identityLog{
			{Level: "WARN", Msg: "outbound address has no PTR record: many destinations refuse or junk its mail; have its provider set one to the HELO name"},
		}},
		{config.Source{Address: "127.0.0.5", Helo: "out5.ours.test"}, []identityLog{
			{Level: "WARN", Msg: "outbound address: its PTR names do not resolve back to it (no forward-confirmed reverse DNS): many destinations refuse or junk its mail; point the PTR at a name whose A/AAAA is this address, such as the HELO name", PTR: "elsewhere.ours.test"},
			{Level: "WARN", Msg: "outbound address: its HELO name does not resolve to it: destinations that check the name may refuse its mail; add the address to the name's A records"},
		}},
		{config.Source{Address: "127.0.0.3", Helo: "out4.ours.test"}, []identityLog{
			{Level: "INFO", Msg: "outbound address: reverse DNS is forward-confirmed", PTR: "out3.ours.test"},
			{Level: "WARN", Msg: "outbound address: its HELO name does not resolve to it: destinations that check the name may refuse its mail; add the address to the name's A records", ResolvesTo: "127.0.0.4"},
		}},
		{config.Source{Address: "127.0.0.6", Helo: "out6.ours.test"}, []identityLog{
			{Level: "WARN", Msg: "outbound address: cannot check its reverse DNS: DNS failed"},
			{Level: "WARN", Msg: "outbound address: cannot check that its HELO name resolves to it: DNS failed"},
		}},
		{config.Source{Address: "::1", Helo: "six.ours.test"}, []identityLog{
			{Level: "INFO", Msg: "outbound address: reverse DNS is forward-confirmed", PTR: "six.ours.test"},
		}},
	} {
		var b bytes.Buffer
		checkSourceDNS(context.Background(), res, tc.src, slog.New(slog.NewJSONHandler(&b, nil)))
		var got []identityLog
		for _, line := range strings.Split(strings.TrimSpace(b.String()), "\n") {
			var l identityLog
			var attrs struct{ Address, Helo string }
			if err := json.Unmarshal([]byte(line), &l); err != nil || json.Unmarshal([]byte(line), &attrs) != nil {
				t.Fatalf("log line %q: %v", line, err)
			}
			if attrs.Address != tc.src.Address || attrs.Helo != tc.src.Helo {
				t.Errorf("%s: the line names %s and %s: %s", tc.src.Address, attrs.Address, attrs.Helo, line)
			}
			got = append(got, l)
		}
		if len(got) != len(tc.want) {
			t.Errorf("%s with %s: logged\n%s\nwant %d lines", tc.src.Address, tc.src.Helo, b.String(), len(tc.want))
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("%s with %s: line %d is %+v, want %+v", tc.src.Address, tc.src.Helo, i, got[i], tc.want[i])
			}
		}
	}
}

// The check runs in the background: with DNS that never answers, start
// goes on at once, and the warning comes when the resolver gives up.
func TestCheckIdentityDoesNotWaitForDNS(t *testing.T) {
	srv := dnstest.Start(t, identityZone)
	srv.Drop("3.0.0.127.in-addr.arpa.")
	srv.Drop("out3.ours.test.")
	res, err := resolver.New(resolver.Config{Nameservers: []string{srv.Addr()}, Attempts: 1, Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var logs syncbuf.Buffer
	g := &Gateway{log: slog.New(slog.NewTextHandler(&logs, nil))}
	no := false
	cfg := &config.Config{Relay: config.Relay{Sources: []config.Source{{Address: "127.0.0.3", Helo: "out3.ours.test"}}, IPv6: &no}}
	g.checkIdentity(res, cfg)
	if logs.String() != "" {
		t.Fatalf("checkIdentity waited for DNS that never answers and logged:\n%s", logs.String())
	}
	for _, want := range []string{"cannot check its reverse DNS: DNS failed", "cannot check that its HELO name resolves to it: DNS failed"} {
		deadline := time.Now().Add(time.Minute)
		for !strings.Contains(logs.String(), want) {
			if time.Now().After(deadline) {
				t.Fatalf("no %q in the log:\n%s", want, logs.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}
