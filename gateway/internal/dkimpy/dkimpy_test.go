package dkimpy

import (
	"slices"
	"testing"
)

// dkimpy reports each signature, and a message without an ARC chain as
// "none": a bogus signature fails, it does not vanish.
func TestCheck(t *testing.T) {
	msg := "DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=x; h=from; bh=AAAA; b=AAAA\r\n" +
		"From: a@example.org\r\nSubject: hi\r\n\r\nHello.\r\n"
	got := Check(t, []byte(msg), map[string]string{"x._domainkey.example.org.": "v=DKIM1; p="})
	if !slices.Equal(got.DKIM, []bool{false}) || got.ARC != "none" {
		t.Errorf("Check = %+v, want one failed signature and ARC none", got)
	}
	got = Check(t, []byte("From: a@example.org\r\n\r\nHello.\r\n"), nil)
	if len(got.DKIM) != 0 || got.ARC != "none" {
		t.Errorf("Check of an unsigned message = %+v, want no signatures and ARC none", got)
	}
}
