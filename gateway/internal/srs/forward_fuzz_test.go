package srs

import (
	"errors"
	"strings"
	"testing"
)

// FuzzForward feeds Forward arbitrary senders. Whatever it makes of one
// must be an address a bounce can come back to: no longer than an SMTP
// path allows (which the gateway's relay protection enforces), and
// Reverse takes it back to the sender (SRS0), or to the first hop's SRS0
// address (SRS1). It fails only with ErrMalformed. Seeds: testdata/fuzz/FuzzForward.
func FuzzForward(f *testing.F) {
	r := newRewriter(f, Config{Secrets: []string{"fuzz-secret"}})
	f.Fuzz(func(t *testing.T, addr string) {
		fwd, err := r.Forward(addr)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Forward(%q): error %v is not ErrMalformed", addr, err)
			}
			return
		}
		if addr == "" || fwd == addr {
			if addr != "" && !equalFoldASCII(addr[strings.LastIndexByte(addr, '@')+1:], "sluice.test") {
				t.Fatalf("Forward(%q) left a foreign address unchanged", addr)
			}
			return
		}
		if len(fwd) > 254 {
			t.Fatalf("Forward(%q) = %q: %d octets, more than RFC 5321 allows, so its bounces are refused", addr, fwd, len(fwd))
		}
		local, domain, ok := splitAddress(fwd)
		if !ok || domain != "sluice.test" || !validLocal(local) || !IsSRS(fwd) {
			t.Fatalf("Forward(%q) = %q: not an SRS address at sluice.test", addr, fwd)
		}
		back, err := r.Reverse(fwd)
		if err != nil {
			t.Fatalf("Forward(%q) = %q, which Reverse refuses: %v", addr, fwd, err)
		}
		origLocal, _, _ := splitAddress(addr)
		switch tag(origLocal) {
		case "":
			if back != addr {
				t.Fatalf("Forward(%q) = %q, which Reverse takes to %q", addr, fwd, back)
			}
		case "SRS0":
			if !equalFoldASCII(back, addr) && back != "SRS0"+addr[4:] {
				t.Fatalf("Forward(%q) = %q, which Reverse takes to %q", addr, fwd, back)
			}
		case "SRS1":
			// Straight back to the first hop, which made the SRS0 part.
			firstHop, rest, _ := splitSRS1(origLocal)
			if back != "SRS0"+rest+"@"+firstHop {
				t.Fatalf("Forward(%q) = %q, which Reverse takes to %q, not the first hop's address", addr, fwd, back)
			}
		}
	})
}
