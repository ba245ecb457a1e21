package plugin

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sluice-mail/sluice/gateway/internal/dnstest"
	"github.com/sluice-mail/sluice/gateway/internal/resolver"
	"github.com/sluice-mail/sluice/gateway/internal/wasmbuild"
	"github.com/sluice-mail/sluice/sdk/abi"
)

// dns_lookup_many, through the SDK's LookupMany: one answer per name, in
// order, each with its own error; each name costs one lookup.
func TestDNSLookupMany(t *testing.T) {
	srv := dnstest.Start(t, dnsZone)
	h := dnsHost(t, srv)
	s := hostcallsSpec(t, "hc", abi.CapDNS)
	s.DNSLookups = 5 // the calls below share it
	c := NewChain(load(t, h, s))
	expect(t, c, abi.StageRcpt, nil, [][2]string{
		{"sdk-many 16 b.example.test nx.example.test bad..name c.example.test",
			`b ; err=sdk: dns_lookup: not found ; err=sdk: dns_lookup: invalid argument ; c`},
		{"sdk-many 1 example.test", `192.0.2.1`},
		// Past the budget (one left): the first is looked up, the rest not.
		{"sdk-many 16 d.example.test b.example.test c.example.test",
			`d ; err=sdk: dns_lookup: the call's DNS lookups, HTTP requests or time are used up ; err=sdk: dns_lookup: the call's DNS lookups, HTTP requests or time are used up`},
		{"sdk-many 99 example.test", `err=sdk: dns_lookup_many: invalid argument`},
		{"sdk-many 16 " + strings.Repeat("b.example.test ", abi.MaxLookupMany+1), `err=sdk: dns_lookup_many: invalid argument`},
	})
	// Without the capability the call as a whole is refused.
	h2 := dnsHost(t, srv)
	c2 := NewChain(load(t, h2, hostcallsSpec(t, "hc", abi.CapKV)))
	expect(t, c2, abi.StageRcpt, nil, [][2]string{
		{"sdk-many 16 b.example.test", `err=sdk: dns_lookup_many: capability not granted to this plugin in gateway.toml`},
	})
}

// The lookups of one dns_lookup_many call run at the same time: this
// server answers no query until it holds one for each name, so lookups
// one after the other would each fail.
func TestDNSLookupManyInParallel(t *testing.T) {
	const names = 3
	var mu sync.Mutex
	arrived := 0
	all := make(chan struct{})
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		mu.Lock()
		if arrived++; arrived == names {
			close(all)
		}
		mu.Unlock()
		reply := new(dns.Msg)
		reply.SetReply(q)
		select {
		case <-all:
			rr, _ := dns.NewRR(q.Question[0].Name + " 300 IN A 127.0.0.2")
			reply.Answer = append(reply.Answer, rr)
		case <-time.After(10 * time.Second):
			reply.Rcode = dns.RcodeServerFailure
		}
		w.WriteMsg(reply)
	})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	server := &dns.Server{PacketConn: pc, Handler: handler}
	go server.ActivateAndServe()
	t.Cleanup(func() { server.Shutdown() })

	res, err := resolver.New(resolver.Config{Nameservers: []string{pc.LocalAddr().String()}, Timeout: 20 * time.Second, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	h, err := NewHost(context.Background(), HostConfig{CacheDir: wasmbuild.CacheDirForTest(), Resolver: res})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(context.Background()) })
	s := hostcallsSpec(t, "hc", abi.CapDNS)
	s.Timeout = 30 * time.Second
	c := NewChain(load(t, h, s))
	expect(t, c, abi.StageRcpt, nil, [][2]string{
		{"sdk-many 1 a.example.test b.example.test c.example.test", `127.0.0.2 ; 127.0.0.2 ; 127.0.0.2`},
	})
}
