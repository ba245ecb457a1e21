package srs

import (
	"errors"
	"strings"
	"testing"
)

// FuzzReverse feeds Reverse arbitrary input. Seeds (testdata/fuzz/FuzzReverse)
// include valid SRS0 and SRS1 addresses made by Mail::SRS with the secret
// below at katTime, so the fuzzer also explores what Reverse accepts.
// Reverse must never panic, must fail only with the sentinel errors, and
// whatever it accepts must behave consistently.
func FuzzReverse(f *testing.F) {
	r := newRewriter(f, Config{Secrets: []string{"fuzz-secret"}})
	f.Fuzz(func(t *testing.T, addr string) {
		got, err := r.Reverse(addr)
		if err != nil {
			if !errors.Is(err, ErrNotSRS) && !errors.Is(err, ErrBadHash) &&
				!errors.Is(err, ErrExpired) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("Reverse(%q): error %v is none of the sentinels", addr, err)
			}
			return
		}

		local, domain, _ := splitAddress(addr)
		if !IsSRS(addr) || !equalFoldASCII(domain, "sluice.test") {
			t.Fatalf("Reverse accepted %q, which is not an SRS address at sluice.test", addr)
		}
		if _, gotDomain, ok := splitAddress(got); !ok || gotDomain == "" {
			t.Fatalf("Reverse(%q) = %q, not an address", addr, got)
		}
		if tag(local) == "SRS1" && !strings.HasPrefix(got, "SRS0") {
			t.Fatalf("Reverse(%q) = %q, want the first hop's SRS0 address", addr, got)
		}

		// Relays may change ASCII case; the answer must not change but
		// for case.
		for _, to := range []byte{'A', 'a'} {
			smashed := smashCase(addr, to)
			again, err := r.Reverse(smashed)
			if err != nil || smashCase(again, 'a') != smashCase(got, 'a') {
				t.Fatalf("Reverse(%q) = %q, but Reverse(%q) = %q, %v", addr, got, smashed, again, err)
			}
		}

		// Forwarding where the bounce goes must lead back to it.
		if fwd, err := r.Forward(got); err == nil && fwd != got {
			if back, err := r.Reverse(fwd); err != nil || back != got {
				t.Fatalf("Reverse(%q) = %q; Forward of that = %q; Reverse of that = %q, %v", addr, got, fwd, back, err)
			}
		}
	})
}
