package srs

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// perlSRS drives Perl's Mail::SRS (Debian: libmail-srs-perl) through
// testdata/mailsrs.pl, one request line and one answer line at a time.
type perlSRS struct {
	t   *testing.T
	in  io.WriteCloser
	out *bufio.Reader
}

const perlPackage = "libmail-srs-perl"

// startPerl fails (not skips) the test when Perl or Mail::SRS is missing:
// the interop promise is only kept if this test runs.
func startPerl(t *testing.T, now time.Time, maxAgeDays, hashLength int, secrets ...string) *perlSRS {
	t.Helper()
	const perl = "/usr/bin/perl"
	if _, err := os.Stat(perl); err != nil {
		t.Fatalf("%s not found (%v): install the Debian packages perl and %s", perl, err, perlPackage)
	}
	if out, err := exec.Command(perl, "-MMail::SRS", "-e", "1").CombinedOutput(); err != nil {
		t.Fatalf("Perl cannot load Mail::SRS (%v: %s): install the Debian package %s", err, out, perlPackage)
	}
	args := append([]string{"testdata/mailsrs.pl", strconv.FormatInt(now.Unix(), 10),
		strconv.Itoa(maxAgeDays), strconv.Itoa(hashLength)}, secrets...)
	cmd := exec.Command(perl, args...)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", perl, err)
	}
	t.Cleanup(func() {
		in.Close()
		if err := cmd.Wait(); err != nil {
			t.Errorf("mailsrs.pl: %v", err)
		}
	})
	return &perlSRS{t: t, in: in, out: bufio.NewReader(out)}
}

// call sends one request; it returns the result, or an error carrying
// Mail::SRS's message.
func (p *perlSRS) call(op string, args ...string) (string, error) {
	p.t.Helper()
	line := strings.Join(append([]string{op}, args...), " ")
	if _, err := fmt.Fprintln(p.in, line); err != nil {
		p.t.Fatalf("writing to mailsrs.pl: %v", err)
	}
	answer, err := p.out.ReadString('\n')
	if err != nil {
		p.t.Fatalf("reading from mailsrs.pl after %q: %v", line, err)
	}
	answer = strings.TrimSuffix(answer, "\n")
	if rest, ok := strings.CutPrefix(answer, "ok "); ok {
		return rest, nil
	}
	if rest, ok := strings.CutPrefix(answer, "err "); ok {
		return "", errors.New(rest)
	}
	p.t.Fatalf("mailsrs.pl answered %q to %q", answer, line)
	return "", nil
}

func (p *perlSRS) forward(sender, domain string) string {
	p.t.Helper()
	got, err := p.call("forward", sender, domain)
	if err != nil {
		p.t.Fatalf("Mail::SRS forward(%q, %q): %v", sender, domain, err)
	}
	return got
}

func (p *perlSRS) setTime(now time.Time) {
	p.t.Helper()
	if _, err := p.call("time", strconv.FormatInt(now.Unix(), 10)); err != nil {
		p.t.Fatal(err)
	}
}

// Senders covering every shape Forward handles.
var interopSenders = []string{
	"user@example.org",
	"First.Last+tag@Mixed.Case.Example",
	"a=b==c@example.org",
	"Üser.名前@例え.jp",
	"SRS0=abcd=G3=orig.example=alice@hop1.example",
	"SRS0+abcd=G3=orig.example=alice@hop1.example",
	"srs0-abcd=G3=orig.example=alice@hop1.example",
	"SRS1=wxyz=orig-hop.example==abcd=G3=orig.example=alice@hop2.example",
	"SRS1+wxyz=orig-hop.example=-abcd=G3=orig.example=alice@hop2.example",
}

func TestPerlInterop(t *testing.T) {
	secrets := []string{"interop-secret"}
	for _, hashLength := range []int{4, 10} {
		t.Run(fmt.Sprintf("HashLength%d", hashLength), func(t *testing.T) {
			perl := startPerl(t, katTime, 21, hashLength, secrets...)
			us := newRewriter(t, Config{Secrets: secrets, HashLength: hashLength})
			for _, sender := range interopSenders {
				ours := mustForward(t, us, sender)
				theirs := perl.forward(sender, "sluice.test")
				// Same secret, same day: the very same address.
				if ours != theirs {
					t.Errorf("Forward(%q) = %q, Mail::SRS made %q", sender, ours, theirs)
				}
				want := mustReverse(t, us, ours)
				if got, err := perl.call("reverse", ours); err != nil || got != want {
					t.Errorf("Mail::SRS reverse(%q) = %q, %v; we reverse to %q", ours, got, err, want)
				}
				if got := mustReverse(t, us, theirs); got != want {
					t.Errorf("Reverse(Mail::SRS's %q) = %q, want %q", theirs, got, want)
				}
			}
		})
	}
}

// Forwarded twice, then bounced back along the chain, alternating between
// Perl and us at every hop.
func TestPerlInteropChain(t *testing.T) {
	perl := startPerl(t, katTime, 21, 4, "perl-secret")
	us := newRewriter(t, Config{Secrets: []string{"our-secret"}})
	perlAsUs := startPerl(t, katTime, 21, 4, "our-secret")
	usAsPerl := newRewriter(t, Config{Domain: "perl.example", Secrets: []string{"perl-secret"}})

	const sender = "alice@orig.example"
	hop1 := perl.forward(sender, "perl.example") // SRS0 at Perl's domain
	hop2 := mustForward(t, us, hop1)             // SRS1 at ours
	hop3 := perl.forward(hop2, "perl.example")   // SRS1 back at Perl's
	hop4 := mustForward(t, us, hop3)             // SRS1 at ours again
	if hop4 != hop2 {
		t.Errorf("re-forwarding %q gave %q, want %q (first hop kept)", hop3, hop4, hop2)
	}
	if !strings.HasPrefix(hop2, "SRS1=") || !strings.Contains(hop2, "=perl.example==") {
		t.Errorf("Forward(%q) = %q, want SRS1 naming perl.example", hop1, hop2)
	}
	if got, err := perl.call("reverse", hop3); err != nil || got != hop1 {
		t.Errorf("Mail::SRS reverse(%q) = %q, %v; want %q", hop3, got, err, hop1)
	}
	if got := mustReverse(t, usAsPerl, hop3); got != hop1 {
		t.Errorf("Reverse(%q) with Perl's secret = %q, want %q", hop3, got, hop1)
	}
	if got, err := perlAsUs.call("reverse", hop4); err != nil || got != hop1 {
		t.Errorf("Mail::SRS reverse(%q) with our secret = %q, %v; want %q", hop4, got, err, hop1)
	}
	if got := mustReverse(t, us, hop4); got != hop1 {
		t.Errorf("Reverse(%q) = %q, want %q", hop4, got, hop1)
	}
	if got := mustReverse(t, usAsPerl, hop1); got != sender {
		t.Errorf("Reverse(%q) with Perl's secret = %q, want %q", hop1, got, sender)
	}
}

func TestPerlInteropRotation(t *testing.T) {
	perlOld := startPerl(t, katTime, 21, 4, "old")
	perlRotated := startPerl(t, katTime, 21, 4, "new", "old")
	usOld := newRewriter(t, Config{Secrets: []string{"old"}})
	usRotated := newRewriter(t, Config{Secrets: []string{"new", "old"}})

	for _, sender := range []string{"user@example.org", "SRS0=abcd=G3=orig.example=alice@hop1.example"} {
		ours := mustForward(t, usOld, sender)
		if got, err := perlRotated.call("reverse", ours); err != nil || got != mustReverse(t, usOld, ours) {
			t.Errorf("rotated Mail::SRS reverse(%q) = %q, %v", ours, got, err)
		}
		theirs := perlOld.forward(sender, "sluice.test")
		if got, want := mustReverse(t, usRotated, theirs), mustReverse(t, usOld, theirs); got != want {
			t.Errorf("rotated Reverse(Mail::SRS's %q) = %q, want %q", theirs, got, want)
		}
		if signed, want := mustForward(t, usRotated, sender), perlRotated.forward(sender, "sluice.test"); signed != want {
			t.Errorf("rotated Forward(%q) = %q, rotated Mail::SRS made %q", sender, signed, want)
		}
	}
}

// Relays may change the (ASCII) case of the local part; both sides must
// still reverse what the other made. Non-ASCII letters are left alone:
// neither libsrs2 nor Mail::SRS folds them, so neither do we.
func TestPerlInteropCaseSmashed(t *testing.T) {
	perl := startPerl(t, katTime, 21, 4, "case-secret")
	us := newRewriter(t, Config{Secrets: []string{"case-secret"}})
	for _, sender := range interopSenders {
		made := mustForward(t, us, sender)
		for _, smashed := range []string{smashCase(made, 'A'), smashCase(made, 'a')} {
			ours, err := us.Reverse(smashed)
			if err != nil {
				t.Errorf("Reverse(%q): %v", smashed, err)
				continue
			}
			theirs, err := perl.call("reverse", smashed)
			if err != nil || theirs != ours {
				t.Errorf("reverse(%q): Mail::SRS %q, %v; we %q", smashed, theirs, err, ours)
			}
		}
	}
}

// Both sides must accept and reject the same addresses as they age,
// including across the 1024-day wrap.
func TestPerlInteropExpiry(t *testing.T) {
	for _, start := range []time.Time{katTime, time.Unix((19*1024+1020)*86400, 0)} {
		c := &clock{t: start}
		us := newRewriter(t, Config{Secrets: []string{"age-secret"}, MaxAge: 10 * day, Now: c.now})
		perl := startPerl(t, start, 10, 4, "age-secret")
		made := mustForward(t, us, "user@example.org")
		for _, age := range []int{0, 1, 4, 9, 10, 11, 12, 30, 1023, 1024, 1025, 1034, 1035} {
			c.t = start.Add(time.Duration(age) * day)
			perl.setTime(c.t)
			_, ourErr := us.Reverse(made)
			_, perlErr := perl.call("reverse", made)
			if (ourErr == nil) != (perlErr == nil) {
				t.Errorf("%q at age %d days: we say %v, Mail::SRS says %v", made, age, ourErr, perlErr)
			}
			if ourErr != nil && !errors.Is(ourErr, ErrExpired) {
				t.Errorf("%q at age %d days: %v, want ErrExpired", made, age, ourErr)
			}
		}
	}
}

// Both sides must reject addresses that were tampered with.
func TestPerlInteropTampered(t *testing.T) {
	perl := startPerl(t, katTime, 21, 4, "tamper-secret")
	us := newRewriter(t, Config{Secrets: []string{"tamper-secret"}})
	srs0 := mustForward(t, us, "user@example.org")
	srs1 := mustForward(t, us, "SRS0=abcd=G3=orig.example=alice@hop1.example")
	for _, addr := range []string{
		strings.Replace(srs0, "example.org", "example.net", 1),
		strings.Replace(srs0, "=user@", "=admin@", 1),
		strings.Replace(srs0, "=G3=", "=G2=", 1),
		strings.Replace(srs1, "hop1.example", "hop9.example", 1),
		strings.Replace(srs1, "alice@", "mallory@", 1),
	} {
		if got, err := us.Reverse(addr); err == nil {
			t.Errorf("Reverse(%q) = %q, want an error", addr, got)
		}
		if got, err := perl.call("reverse", addr); err == nil {
			t.Errorf("Mail::SRS reverse(%q) = %q, want an error", addr, got)
		}
	}
}

// smashCase maps ASCII letters to upper case (to='A') or lower case (to='a').
func smashCase(s string, to byte) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' {
			b[i] = c&^0x20 | (to & 0x20)
		}
	}
	return string(b)
}
