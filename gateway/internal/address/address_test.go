package address

import (
	"strings"
	"testing"
)

func TestDomain(t *testing.T) {
	good := map[string]string{
		"Example.TEST": "example.test", "bücher.example": "xn--bcher-kva.example", "a-b.c": "a-b.c",
	}
	for in, want := range good {
		if got, err := Domain(in); err != nil || got != want {
			t.Errorf("Domain(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "example.test.", ".example", "a..b", "[127.0.0.1]", "under_score.test", "-a.test", "a b.test"} {
		if got, err := Domain(bad); err == nil {
			t.Errorf("Domain(%q) = %q, want an error", bad, got)
		}
	}
}

func TestSplit(t *testing.T) {
	local, domain, err := Split("user@other@Ours.Test")
	if err != nil || local != "user@other" || domain != "ours.test" {
		t.Errorf("Split splits at the last @: %q %q %v", local, domain, err)
	}
	for _, bad := range []string{"nodomain", "@x.test", "user@", "user@[1.2.3.4]"} {
		if _, _, err := Split(bad); err == nil {
			t.Errorf("Split(%q) accepted", bad)
		}
	}
	if IsASCII("josé@example.org") || !IsASCII("jose@example.org") {
		t.Error("IsASCII is wrong")
	}
}

// The fast path for plain ASCII names gives what IDNA gives, at the edges
// of what it takes: lengths, hyphens, A-labels, case and digits.
func TestDomainFastPathIsIDNA(t *testing.T) {
	label63 := strings.Repeat("a", 63)
	long := strings.Repeat(label63+".", 3) + strings.Repeat("b", 61) // 253
	for _, d := range []string{
		"example.test", "EXAMPLE.Test", "a", "1.2.3.4", "a-b.c", "a--b.test", "ab--cd.test", "xn--bcher-kva.example",
		"XN--BCHER-KVA.example", "xn--zz.test", "-a.test", "a-.test", label63 + ".test", label63 + "a.test",
		long, long + "b", "a..b", "under_score.test", "a b.test", "0-0.9", "xn--.test",
	} {
		want, wantErr := idnaDomain(d)
		got, err := Domain(d)
		if got != want || (err == nil) != (wantErr == nil) {
			t.Errorf("Domain(%q) = %q, %v; IDNA says %q, %v", d, got, err, want, wantErr)
		}
	}
}

func BenchmarkDomain(b *testing.B) {
	for b.Loop() {
		if _, err := Domain("Mail.Example.TEST"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDomainIDNA(b *testing.B) {
	for b.Loop() {
		if _, err := Domain("bücher.example"); err != nil {
			b.Fatal(err)
		}
	}
}

// Only a local part needs SMTPUTF8; a domain goes as its A-labels.
func TestNeedsSMTPUTF8(t *testing.T) {
	for addr, want := range map[string]bool{
		"piñata@piñata.example": true, "piñata@example.test": true, "info@piñata.example": false,
		"info@example.test": false, "": false, "SRS0=AbCd=T5=example.org=josé@ours.test": true,
	} {
		if got := NeedsSMTPUTF8(addr); got != want {
			t.Errorf("NeedsSMTPUTF8(%q) = %v, want %v", addr, got, want)
		}
	}
	for addr, want := range map[string]string{
		"info@piñata.example": "info@xn--piata-pta.example", "Info@Bücher.Test": "Info@xn--bcher-kva.test",
		"info@Example.TEST": "info@Example.TEST", "": "",
	} {
		if got, err := WithASCIIDomain(addr); err != nil || got != want {
			t.Errorf("WithASCIIDomain(%q) = %q, %v; want %q", addr, got, err, want)
		}
	}
	if got, err := WithASCIIDomain("info@bad_ü.test"); err == nil {
		t.Errorf("WithASCIIDomain of a bad domain = %q, want an error", got)
	}
}
