// Package dnstest runs a real DNS server on loopback that serves test zones
// written as zone-file text, so tests exercise the same UDP and TCP paths as
// production lookups.
package dnstest

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"
)

// maxCNAMEChain bounds CNAME following so that a loop in test data cannot
// hang the server.
const maxCNAMEChain = 8

// Server is an authoritative DNS server for the test zones it was given.
type Server struct {
	addr    string
	queries atomic.Int64

	mu      sync.Mutex
	records map[string][]dns.RR // by canonical owner name
	fails   map[string]int      // canonical name -> rcode
	drops   map[string]bool     // canonical name -> never answer
	signed  []string            // canonical zone apexes whose answers carry AD
}

// Start serves the records (zone-file syntax, one RR per line, absolute
// names; $TTL/$ORIGIN allowed) on 127.0.0.1 on a free port, over UDP and TCP.
// It stops on t.Cleanup.
//
// Answers: names with data of the asked type get it (following CNAMEs inside
// the data); names with data but not of the asked type get NODATA (NOERROR,
// empty answer); names without data get NXDOMAIN. Negative answers carry the
// SOA of the enclosing zone, if the data has one, in the authority section.
// UDP answers larger than the client's buffer (512 bytes, or its EDNS0 size)
// are truncated with TC set, so clients retry over TCP.
func Start(t testing.TB, zone string) *Server {
	t.Helper()
	s := &Server{fails: map[string]int{}, drops: map[string]bool{}}
	if err := s.SetRecords(zone); err != nil {
		t.Fatalf("dnstest: %v", err)
	}
	pc, ln, err := listenPair()
	if err != nil {
		t.Fatalf("dnstest: %v", err)
	}
	s.addr = pc.LocalAddr().String()
	udp := s.serve(t, &dns.Server{PacketConn: pc, Handler: s})
	tcp := s.serve(t, &dns.Server{Listener: ln, Handler: s})
	t.Cleanup(func() {
		udp.Shutdown()
		tcp.Shutdown()
	})
	return s
}

// listenPair opens UDP and TCP on the same free loopback port. The port is
// picked for UDP first; if TCP happens to be taken on it, try another.
func listenPair() (net.PacketConn, net.Listener, error) {
	var lastErr error
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return nil, nil, err
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		lastErr = err
	}
	return nil, nil, fmt.Errorf("no free port for both UDP and TCP: %v", lastErr)
}

// serve starts srv and waits until it is accepting queries.
func (s *Server) serve(t testing.TB, srv *dns.Server) *dns.Server {
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	failed := make(chan error, 1)
	go func() { failed <- srv.ActivateAndServe() }()
	select {
	case <-started:
	case err := <-failed:
		t.Fatalf("dnstest: server did not start: %v", err)
	}
	return srv
}

// Addr is the "127.0.0.1:PORT" the server listens on, for UDP and TCP.
func (s *Server) Addr() string { return s.addr }

// Queries is how many queries the server has answered (dropped ones are not
// counted), over UDP and TCP together.
func (s *Server) Queries() int { return int(s.queries.Load()) }

// SetRecords replaces the served data while the server runs.
func (s *Server) SetRecords(zone string) error {
	records := map[string][]dns.RR{}
	zp := dns.NewZoneParser(strings.NewReader(zone), ".", "")
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		name := dns.CanonicalName(rr.Header().Name)
		records[name] = append(records[name], rr)
	}
	if err := zp.Err(); err != nil {
		return fmt.Errorf("bad zone: %v", err)
	}
	s.mu.Lock()
	s.records = records
	s.mu.Unlock()
	return nil
}

// Fail makes the server answer queries for name with rcode, e.g.
// dns.RcodeServerFailure.
func (s *Server) Fail(name string, rcode int) {
	s.mu.Lock()
	s.fails[dns.CanonicalName(name)] = rcode
	s.mu.Unlock()
}

// Authenticate makes the server act, for the names at or below each zone,
// as a validating resolver does for a DNSSEC-signed zone whose signatures
// it checked: it sets the AD bit on their answers (NOERROR and NXDOMAIN)
// when the query asked for it with AD or DO (RFC 6840 section 5.7). It is a
// stub of a trusted validating resolver: nothing is signed or checked, the
// bit is simply believed by the client, as Sluice believes its configured
// nameservers with [dns] dnssec. An answer that follows a CNAME into a
// zone not named here has no AD, and neither has an answer set by Fail.
func (s *Server) Authenticate(zones ...string) {
	s.mu.Lock()
	for _, z := range zones {
		s.signed = append(s.signed, dns.CanonicalName(z))
	}
	s.mu.Unlock()
}

// Drop makes the server never answer queries for name, to test timeouts.
func (s *Server) Drop(name string) {
	s.mu.Lock()
	s.drops[dns.CanonicalName(name)] = true
	s.mu.Unlock()
}

// ServeDNS answers one query; it implements dns.Handler.
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	if len(req.Question) != 1 {
		reply := new(dns.Msg)
		reply.SetRcode(req, dns.RcodeFormatError)
		s.write(w, req, reply)
		return
	}
	q := req.Question[0]
	name := dns.CanonicalName(q.Name)

	s.mu.Lock()
	drop := s.drops[name]
	rcode, fail := s.fails[name]
	s.mu.Unlock()
	if drop {
		return
	}

	reply := new(dns.Msg)
	reply.SetReply(req)
	reply.Authoritative = true
	if fail {
		reply.Rcode = rcode
	} else {
		s.answer(reply, name, q.Qtype)
		reply.AuthenticatedData = askedAD(req) && s.authenticated(name, reply)
	}
	s.write(w, req, reply)
}

// askedAD reports whether req asked for the AD bit, with AD or DO.
func askedAD(req *dns.Msg) bool {
	if req.AuthenticatedData {
		return true
	}
	opt := req.IsEdns0()
	return opt != nil && opt.Do()
}

// authenticated reports whether every name reply's answer comes from (the
// question and the targets of its CNAMEs) is in a zone set by Authenticate.
func (s *Server) authenticated(name string, reply *dns.Msg) bool {
	names := []string{name}
	for _, rr := range reply.Answer {
		if c, ok := rr.(*dns.CNAME); ok {
			names = append(names, dns.CanonicalName(c.Target))
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range names {
		signed := false
		for _, z := range s.signed {
			signed = signed || dns.IsSubDomain(z, n)
		}
		if !signed {
			return false
		}
	}
	return true
}

// write sends reply, echoing EDNS0 and truncating UDP answers to the size the
// client can take.
func (s *Server) write(w dns.ResponseWriter, req, reply *dns.Msg) {
	size := dns.MinMsgSize
	if opt := req.IsEdns0(); opt != nil {
		reply.SetEdns0(opt.UDPSize(), false)
		size = int(opt.UDPSize())
	}
	if _, isUDP := w.RemoteAddr().(*net.UDPAddr); isUDP {
		reply.Truncate(size)
	}
	s.queries.Add(1)
	w.WriteMsg(reply)
}

// answer fills reply for name and qtype from the data.
func (s *Server) answer(reply *dns.Msg, name string, qtype uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range maxCNAMEChain {
		rrs, exists := s.records[name]
		found := false
		var cname *dns.CNAME
		for _, rr := range rrs {
			if rr.Header().Rrtype == qtype {
				reply.Answer = append(reply.Answer, dns.Copy(rr))
				found = true
			} else if c, ok := rr.(*dns.CNAME); ok {
				cname = c
			}
		}
		if found {
			return
		}
		if cname != nil {
			reply.Answer = append(reply.Answer, dns.Copy(cname))
			name = dns.CanonicalName(cname.Target)
			continue
		}
		if !exists && !s.hasDescendant(name) {
			reply.Rcode = dns.RcodeNameError
		}
		if soa := s.soaFor(name); soa != nil {
			reply.Ns = append(reply.Ns, dns.Copy(soa))
		}
		return
	}
	// A CNAME chain too long or looping: answer as a broken server would.
	reply.Answer = nil
	reply.Rcode = dns.RcodeServerFailure
}

// hasDescendant reports whether name is an empty non-terminal: it has no data
// itself but names below it do, so it exists (NODATA, not NXDOMAIN).
func (s *Server) hasDescendant(name string) bool {
	for owner := range s.records {
		if owner != name && dns.IsSubDomain(name, owner) {
			return true
		}
	}
	return false
}

// soaFor returns the SOA of the closest zone apex at or above name, if any.
func (s *Server) soaFor(name string) dns.RR {
	labels := dns.SplitDomainName(name)
	for i := range len(labels) + 1 {
		apex := dns.Fqdn(strings.Join(labels[i:], "."))
		for _, rr := range s.records[apex] {
			if rr.Header().Rrtype == dns.TypeSOA {
				return rr
			}
		}
	}
	return nil
}
