package plugin

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/sluice-mail/sluice/gateway/internal/resolver"
	"github.com/sluice-mail/sluice/sdk/abi"
	"github.com/tetratelabs/wazero/api"
)

// dnsLookup is (qtype, name_ptr, name_len, buf_ptr, buf_cap) → length of
// the answers, a list of strings. Lookups go through the gateway's
// resolver and its cache; each call of the plugin may make p.lookups of
// them, none past the call's deadline.
func (h *hostFuncs) dnsLookup(ctx context.Context, mod api.Module, stack []uint64) {
	c, qtype, b, code := lookupArgs(ctx, mod, stack)
	name := string(b)
	if code == 0 && !validName(name) {
		code = abi.ErrInvalid
	}
	if code < 0 {
		ret(stack, code)
		return
	}
	if c.repeated(false, qtype, name) {
		ret(stack, answer(mod, stack[3], stack[4], c.last.answer))
		return
	}
	if c.lookups <= 0 || !time.Now().Before(c.deadline) {
		ret(stack, abi.ErrBudget)
		return
	}
	c.lookups--
	list, code := h.lookup(ctx, c.deadline, qtype, name)
	if code < 0 {
		ret(stack, code)
		return
	}
	c.last.qtype, c.last.name, c.last.many, c.last.answer = qtype, name, false, abi.AppendStrings(nil, list)
	ret(stack, answer(mod, stack[3], stack[4], c.last.answer))
}

// lookupArgs reads what dns_lookup and dns_lookup_many share: the call
// (none outside a stage call), the record type and the name or names, or
// the error code to return.
func lookupArgs(ctx context.Context, mod api.Module, stack []uint64) (c *callState, qtype uint16, b []byte, code int32) {
	if c = callOf(ctx); c == nil {
		return nil, 0, nil, abi.ErrStage
	}
	qtype = uint16(stack[0])
	b, ok := guestBytes(mod, stack[1], stack[2])
	switch {
	case !ok:
		return nil, 0, nil, abi.ErrMemory
	case uint32(stack[0]) != uint32(qtype) || !lookupTypes[qtype]:
		return nil, 0, nil, abi.ErrInvalid
	}
	return c, qtype, b, 0
}

// repeated reports whether the call's last answer is the one for this
// question, which a guest whose buffer was too small asks again.
func (c *callState) repeated(many bool, qtype uint16, name string) bool {
	return c.last.answer != nil && c.last.many == many && c.last.qtype == qtype && c.last.name == name
}

// dnsLookupMany is (qtype, names_ptr, names_len, buf_ptr, buf_cap) →
// length of the answers, one per name. The guest runs on one thread, so
// asking for several names in one call is how it waits for the slowest
// lookup rather than for their sum (a plugin asking a few DNS blocklists
// about the client, say). Each name counts against the call's budget: one
// past it is answered ErrBudget, the others are still looked up.
func (h *hostFuncs) dnsLookupMany(ctx context.Context, mod api.Module, stack []uint64) {
	c, qtype, b, code := lookupArgs(ctx, mod, stack)
	if code < 0 {
		ret(stack, code)
		return
	}
	names, err := abi.DecodeStrings(b)
	if err != nil || len(names) == 0 || len(names) > abi.MaxLookupMany {
		ret(stack, abi.ErrInvalid)
		return
	}
	key := string(b)
	if c.repeated(true, qtype, key) {
		ret(stack, answer(mod, stack[3], stack[4], c.last.answer))
		return
	}
	lists := make([][]string, len(names))
	codes := make([]int32, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		switch {
		case !validName(name):
			codes[i] = abi.ErrInvalid
		case c.lookups <= 0 || !time.Now().Before(c.deadline):
			codes[i] = abi.ErrBudget
		default:
			c.lookups--
			wg.Go(func() { lists[i], codes[i] = h.lookup(ctx, c.deadline, qtype, name) })
		}
	}
	wg.Wait()
	all := make([]string, len(names))
	for i := range names {
		all[i] = string(abi.AppendLookupAnswer(nil, lists[i], codes[i]))
	}
	c.last.qtype, c.last.name, c.last.many, c.last.answer = qtype, key, true, abi.AppendStrings(nil, all)
	ret(stack, answer(mod, stack[3], stack[4], c.last.answer))
}

// validName reports whether name is one dns_lookup accepts.
func validName(name string) bool {
	_, ok := dns.IsDomainName(name)
	return ok && name != ""
}

// lookupTypes are the record types dns_lookup answers.
var lookupTypes = map[uint16]bool{abi.TypeA: true, abi.TypeAAAA: true, abi.TypeTXT: true, abi.TypeMX: true, abi.TypePTR: true}

// lookup asks the resolver and writes the records in their ABI text forms,
// or returns an error code.
func (h *hostFuncs) lookup(ctx context.Context, deadline time.Time, qtype uint16, name string) ([]string, int32) {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	rrs, err := h.resolver.Query(ctx, name, qtype)
	if err != nil {
		var dnsErr *net.DNSError
		switch {
		case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
			return nil, abi.ErrNotFound
		case ctx.Err() != nil:
			return nil, abi.ErrBudget // out of time, not a failure of DNS
		}
		return nil, abi.ErrTemporary
	}
	list := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		if s, ok := recordText(rr); ok {
			list = append(list, s)
		}
	}
	return list, 0
}

// recordText writes a record's data as sdk/ABI.md says for its type.
func recordText(rr dns.RR) (string, bool) {
	switch rr := rr.(type) {
	case *dns.A:
		return rr.A.String(), true
	case *dns.AAAA:
		return rr.AAAA.String(), true
	case *dns.TXT:
		return resolver.Unescape(strings.Join(rr.Txt, "")), true
	case *dns.MX:
		return strconv.Itoa(int(rr.Preference)) + " " + strings.TrimSuffix(rr.Mx, "."), true
	case *dns.PTR:
		return strings.TrimSuffix(rr.Ptr, "."), true
	}
	return "", false
}
