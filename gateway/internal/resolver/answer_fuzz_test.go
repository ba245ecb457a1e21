package resolver

import (
	"context"
	"errors"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// fuzzServer is a UDP nameserver on loopback that answers every query
// with the bytes it was last given, under the query's ID, so that the
// fuzzer writes whole DNS responses.
type fuzzServer struct {
	pc    net.PacketConn
	mu    sync.Mutex
	reply []byte
}

func startFuzzServer(f *testing.F) *fuzzServer {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	s := &fuzzServer{pc: pc}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if n < 2 {
				continue
			}
			s.mu.Lock()
			reply := append([]byte{buf[0], buf[1]}, s.reply[min(2, len(s.reply)):]...)
			s.mu.Unlock()
			pc.WriteTo(reply, from)
		}
	}()
	f.Cleanup(func() {
		pc.Close()
		<-done
	})
	return s
}

func (s *fuzzServer) set(reply []byte) {
	s.mu.Lock()
	s.reply = reply
	s.mu.Unlock()
}

// fuzzTypes are the questions a fuzz input may be the answer to, as the
// gateway asks them: MX and addresses for the relay, TXT for SPF, DKIM
// and DMARC, PTR for plugins.
var fuzzTypes = []uint16{dns.TypeMX, dns.TypeA, dns.TypeAAAA, dns.TypeTXT, dns.TypePTR}

// FuzzAnswer has a real nameserver on loopback answer the resolver with
// arbitrary bytes. Whatever comes back, the lookup returns; a failure is a
// *net.DNSError that is temporary, so that mail is deferred and not
// bounced, unless the response really says NXDOMAIN; and what it returns
// is of the type asked (IPv4 for A, IPv6 for AAAA, MX by preference).
// Seeds are well-formed answers to each question, with CNAMEs, NODATA and
// NXDOMAIN, made at run time.
func FuzzAnswer(f *testing.F) {
	const name = "fuzz.test."
	for i, qtype := range fuzzTypes {
		q := new(dns.Msg)
		q.SetQuestion(name, qtype)
		for _, answer := range []string{
			"fuzz.test. 300 IN MX 10 mx.fuzz.test.", "fuzz.test. 300 IN A 192.0.2.1", "fuzz.test. 300 IN AAAA 2001:db8::1",
			`fuzz.test. 300 IN TXT "v=spf1 " "-all"`, "fuzz.test. 300 IN PTR host.fuzz.test.",
			"fuzz.test. 300 IN CNAME other.fuzz.test.", "",
		} {
			m := new(dns.Msg)
			m.SetReply(q)
			if answer != "" {
				rr, err := dns.NewRR(answer)
				if err != nil {
					f.Fatal(err)
				}
				m.Answer = append(m.Answer, rr)
			}
			soa, _ := dns.NewRR("fuzz.test. 300 IN SOA ns.fuzz.test. host.fuzz.test. 1 7200 3600 1209600 60")
			m.Ns = append(m.Ns, soa)
			b, err := m.Pack()
			if err != nil {
				f.Fatal(err)
			}
			f.Add(uint8(i), b)
			m.Rcode = dns.RcodeNameError
			b, _ = m.Pack()
			f.Add(uint8(i), b)
		}
	}
	srv := startFuzzServer(f)
	f.Fuzz(func(t *testing.T, sel uint8, reply []byte) {
		srv.set(reply)
		r, err := New(Config{Nameservers: []string{srv.pc.LocalAddr().String()}, Timeout: time.Second, Attempts: 1})
		if err != nil {
			t.Fatal(err)
		}
		qtype := fuzzTypes[int(sel)%len(fuzzTypes)]
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- lookup(ctx, t, r, name, qtype) }()
		select {
		case err = <-done:
		case <-time.After(time.Minute):
			t.Fatalf("%s lookup answered by %q did not return in a minute", dns.TypeToString[qtype], reply)
		}
		if err == nil {
			return
		}
		var dnsErr *net.DNSError
		if !errors.As(err, &dnsErr) {
			t.Fatalf("%s lookup answered by %q: %v (%T) is not a *net.DNSError", dns.TypeToString[qtype], reply, err, err)
		}
		if dnsErr.IsNotFound {
			var m dns.Msg
			if m.Unpack(reply) != nil || m.Rcode != dns.RcodeNameError {
				t.Fatalf("%s lookup answered by %q: not found (%v), but the answer is not NXDOMAIN", dns.TypeToString[qtype], reply, err)
			}
		} else if !dnsErr.IsTemporary && !dnsErr.IsTimeout {
			t.Fatalf("%s lookup answered by %q: %v is neither temporary nor not found", dns.TypeToString[qtype], reply, err)
		}
	})
}

// lookup asks as the gateway's callers do and checks what comes back.
func lookup(ctx context.Context, t *testing.T, r *Resolver, name string, qtype uint16) error {
	switch qtype {
	case dns.TypeMX:
		mxs, err := r.LookupMX(ctx, name)
		if err == nil && !slices.IsSortedFunc(mxs, func(a, b *net.MX) int { return int(a.Pref) - int(b.Pref) }) {
			t.Errorf("MX records not by preference: %v", mxs)
		}
		return err
	case dns.TypeA, dns.TypeAAAA:
		network := map[uint16]string{dns.TypeA: "ip4", dns.TypeAAAA: "ip6"}[qtype]
		addrs, err := r.LookupNetIP(ctx, network, name)
		for _, a := range addrs {
			if a.Is4() != (qtype == dns.TypeA) {
				t.Errorf("%s lookup gave %v", network, a)
			}
		}
		return err
	case dns.TypeTXT:
		_, err := r.LookupTXT(ctx, name)
		return err
	default:
		rrs, err := r.Query(ctx, name, qtype)
		for _, rr := range rrs {
			if rr.Header().Rrtype != qtype {
				t.Errorf("%s query gave %v", dns.TypeToString[qtype], rr)
			}
		}
		return err
	}
}
