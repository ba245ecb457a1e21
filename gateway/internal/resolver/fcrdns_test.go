package resolver

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/sluice-mail/sluice/gateway/internal/dnstest"
)

// reverseZone gives loopback addresses each a different reverse DNS story.
const reverseZone = `
$TTL 300
1.0.0.127.in-addr.arpa.  IN PTR Mail.Example.TEST.
2.0.0.127.in-addr.arpa.  IN PTR liar.example.test.
3.0.0.127.in-addr.arpa.  IN PTR broken.example.test.
4.0.0.127.in-addr.arpa.  IN PTR broken.example.test.
4.0.0.127.in-addr.arpa.  IN PTR mail.example.test.
5.0.0.127.in-addr.arpa.  IN PTR gone.example.test.
6.0.0.127.in-addr.arpa.  IN TXT "a name without a PTR record"
1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa. IN PTR mail.example.test.
mail.example.test.       IN A    127.0.0.4
mail.example.test.       IN A    127.0.0.1
mail.example.test.       IN AAAA ::1
liar.example.test.       IN A    192.0.2.1
broken.example.test.     IN A    127.0.0.3
`

func TestVerifiedName(t *testing.T) {
	s := dnstest.Start(t, reverseZone)
	s.Fail("broken.example.test.", dns.RcodeServerFailure)
	s.Fail("7.0.0.127.in-addr.arpa.", dns.RcodeServerFailure)
	s.Drop("8.0.0.127.in-addr.arpa.")
	r := newResolver(t, Config{Timeout: 100 * time.Millisecond, Attempts: 1}, s.Addr())
	for _, tc := range []struct {
		ip, name, result string
	}{
		{"127.0.0.1", "mail.example.test", NamePass}, // lower-cased, without the dot
		{"::ffff:127.0.0.1", "mail.example.test", NamePass},
		{"::1", "mail.example.test", NamePass},
		{"127.0.0.2", "", NameFail},      // the name resolves elsewhere
		{"127.0.0.5", "", NameFail},      // the name does not exist
		{"127.0.0.9", "", NameNone},      // NXDOMAIN
		{"127.0.0.6", "", NameNone},      // NODATA
		{"127.0.0.3", "", NameTempError}, // the forward lookup fails
		{"127.0.0.4", "mail.example.test", NamePass},
		{"127.0.0.7", "", NameTempError}, // the PTR lookup fails
		{"127.0.0.8", "", NameTempError}, // the PTR lookup times out
	} {
		name, result := r.VerifiedName(context.Background(), netip.MustParseAddr(tc.ip))
		if name != tc.name || result != tc.result {
			t.Errorf("VerifiedName(%s) = %q, %s; want %q, %s", tc.ip, name, result, tc.name, tc.result)
		}
	}
}

func TestVerifiedNameChecksAtMostMaxPTRNames(t *testing.T) {
	var z strings.Builder
	for i := range MaxPTRNames + 1 {
		fmt.Fprintf(&z, "1.0.0.127.in-addr.arpa. 300 IN PTR n%d.example.test.\n", i)
		fmt.Fprintf(&z, "n%d.example.test. 300 IN A 192.0.2.%d\n", i, i+1)
	}
	// Only the last PTR name resolves back.
	z.WriteString(fmt.Sprintf("n%d.example.test. 300 IN A 127.0.0.1\n", MaxPTRNames))
	s := dnstest.Start(t, z.String())
	r := newResolver(t, Config{}, s.Addr())
	name, result := r.VerifiedName(context.Background(), netip.MustParseAddr("127.0.0.1"))
	if name != "" || result != NameFail {
		t.Fatalf("VerifiedName = %q, %s; want fail: the name past the first %d is not checked", name, result, MaxPTRNames)
	}
	if got, want := s.Queries(), 1+MaxPTRNames; got < want || got > want+1 { // +1: the PTR answer may come again over TCP
		t.Errorf("%d queries, want the PTR lookup and %d forward lookups", got, MaxPTRNames)
	}
}
