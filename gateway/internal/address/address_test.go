package address

import "testing"

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
