package resolver

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"
)

const (
	// ednsBufferSize is the DNS Flag Day 2020 value: big enough for most
	// answers, small enough to avoid IP fragmentation.
	ednsBufferSize = 1232
	// maxCNAMEChain bounds CNAME following so a loop cannot hang a lookup.
	maxCNAMEChain = 8
	// maxTTL caps how long any answer is cached, whatever its TTL says.
	maxTTL = 24 * time.Hour
	// maxNegativeTTL caps NXDOMAIN/NODATA caching (RFC 2308 suggests 1-3 h).
	maxNegativeTTL = time.Hour
	// failureTTL is how long SERVFAIL, timeouts and bad answers are cached:
	// long enough that a burst of mail to a broken domain does not wait on
	// every lookup, short enough that recovery is noticed quickly.
	failureTTL = 5 * time.Second
)

// answer is the outcome of one question: records for the final name of a
// CNAME chain (empty for NODATA), or an error. secure says the nameserver
// vouched for the records (or NODATA) with the AD bit, which is only
// believed when DNSSEC is on; it is kept with the answer in the cache.
type answer struct {
	rrs    []dns.RR
	err    *net.DNSError
	secure bool
}

// exchange asks the nameservers about k, trying each in order, Attempts
// times round, until one gives a usable answer. It returns the answer and how
// long it may be cached.
func (r *Resolver) exchange(k key) (answer, time.Duration) {
	q := new(dns.Msg)
	q.SetQuestion(k.name, k.qtype)
	q.RecursionDesired = true
	// RFC 6840 section 5.7: AD in a question asks a validating resolver
	// to say whether it validated the answer, without the RRSIGs that DO
	// would bring.
	q.AuthenticatedData = r.dnssec
	q.SetEdns0(ednsBufferSize, false)

	var failure *net.DNSError
	for range r.attempts {
		for _, server := range r.nameservers {
			q.Id = dns.Id()
			resp, err := r.exchangeOne(q, server)
			if err == nil {
				err = checkResponse(q, resp)
			}
			if err != nil {
				failure = exchangeError(k.name, server, err)
				continue
			}
			res, ttl := readAnswer(k, resp)
			if res.err != nil {
				res.err.Server = server
			}
			res.secure = res.err == nil && r.dnssec && resp.AuthenticatedData
			return res, ttl
		}
	}
	return answer{err: failure}, failureTTL
}

// exchangeOne sends q to server over UDP, and again over TCP if the answer
// was truncated.
func (r *Resolver) exchangeOne(q *dns.Msg, server string) (*dns.Msg, error) {
	udp := &dns.Client{Net: "udp", Timeout: r.timeout}
	resp, _, err := udp.Exchange(q, server)
	if err != nil || !resp.Truncated {
		return resp, err
	}
	tcp := &dns.Client{Net: "tcp", Timeout: r.timeout}
	resp, _, err = tcp.Exchange(q, server)
	return resp, err
}

// rcodeError is a response code that makes the answer unusable.
type rcodeError int

func (e rcodeError) Error() string {
	return "server misbehaving: " + dns.RcodeToString[int(e)]
}

// errBadAnswer marks responses that do not make sense for the question.
var errBadAnswer = errors.New("bad answer")

// checkResponse rejects responses that are not a usable answer to q. The
// miekg client has already matched the message ID.
func checkResponse(q, resp *dns.Msg) error {
	if !resp.Response || len(resp.Question) != 1 {
		return fmt.Errorf("%w: not a response to one question", errBadAnswer)
	}
	got, want := resp.Question[0], q.Question[0]
	if !strings.EqualFold(got.Name, want.Name) || got.Qtype != want.Qtype || got.Qclass != want.Qclass {
		return fmt.Errorf("%w: response is for %s %s", errBadAnswer, got.Name, dns.TypeToString[got.Qtype])
	}
	if resp.Rcode != dns.RcodeSuccess && resp.Rcode != dns.RcodeNameError {
		return rcodeError(resp.Rcode)
	}
	return nil
}

// exchangeError turns a failed exchange into the error callers see: always
// temporary, and a timeout when the network said so.
func exchangeError(name, server string, err error) *net.DNSError {
	var ne net.Error
	return &net.DNSError{
		Err:         err.Error(),
		Name:        name,
		Server:      server,
		IsTimeout:   errors.As(err, &ne) && ne.Timeout(),
		IsTemporary: true,
		UnwrapErr:   err,
	}
}

// readAnswer extracts the records for k from a NOERROR or NXDOMAIN response,
// following the CNAME chain inside the answer section, and works out how
// long the result may be cached.
func readAnswer(k key, resp *dns.Msg) (answer, time.Duration) {
	if resp.Rcode == dns.RcodeNameError {
		return answer{err: &net.DNSError{Err: "no such host", Name: k.name, IsNotFound: true}}, negativeTTL(resp)
	}
	name := k.name
	ttl := maxTTL
	for range maxCNAMEChain {
		var rrs []dns.RR
		next := ""
		for _, rr := range resp.Answer {
			h := rr.Header()
			if h.Class != dns.ClassINET || !strings.EqualFold(h.Name, name) {
				continue
			}
			switch c, isCNAME := rr.(*dns.CNAME); {
			case h.Rrtype == k.qtype:
				rrs = append(rrs, rr)
			case isCNAME:
				next = c.Target
			default:
				return badAnswer(k, fmt.Sprintf("%s record for %s", dns.TypeToString[h.Rrtype], name))
			}
			ttl = min(ttl, time.Duration(h.Ttl)*time.Second)
		}
		if len(rrs) > 0 {
			return answer{rrs: rrs}, ttl
		}
		if next == "" { // NODATA
			return answer{}, min(ttl, negativeTTL(resp))
		}
		name = next
	}
	return badAnswer(k, "CNAME chain too long")
}

func badAnswer(k key, what string) (answer, time.Duration) {
	err := fmt.Errorf("%w: %s in answer to %s", errBadAnswer, what, dns.TypeToString[k.qtype])
	return answer{err: &net.DNSError{Err: err.Error(), Name: k.name, IsTemporary: true, UnwrapErr: err}}, failureTTL
}

// negativeTTL is how long NXDOMAIN or NODATA may be cached (RFC 2308 section
// 5): the smaller of the SOA record's TTL and its MINIMUM field. Without a
// SOA the answer is not cached at all.
func negativeTTL(resp *dns.Msg) time.Duration {
	for _, rr := range resp.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			ttl := time.Duration(min(soa.Hdr.Ttl, soa.Minttl)) * time.Second
			return min(ttl, maxNegativeTTL)
		}
	}
	return 0
}
