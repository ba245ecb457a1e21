package dkim

import (
	"strings"
	"testing"
)

// FuzzSignVerify signs arbitrary bodies and Subject values and checks that
// go-msgauth, an independent implementation, verifies the result: our
// canonicalization agrees with its one.
func FuzzSignVerify(f *testing.F) {
	f.Add("Lunch", "Hi  Bob,\r\n\r\n\tnoon? \r\n\r\n")
	f.Add(" a \t b ", "")
	f.Add("x", "\r\n\r\n \r\n")
	f.Add("folded\r\n value", "no final line break")
	keys := testKeys(f)[1:] // Ed25519: fast
	records := txtRecords(f, testDomain, keys)
	s := newTestSigner(f, keys)
	f.Fuzz(func(t *testing.T, subject, body string) {
		// Keep to what an SMTP client can send: CRLF line ends, folding
		// only before whitespace, no NUL.
		if strings.ContainsAny(subject+body, "\x00") || strings.Contains(body, "\r\n.") ||
			strings.ContainsAny(strings.ReplaceAll(subject, "\r\n ", ""), "\r\n") ||
			strings.Contains(strings.ReplaceAll(body, "\r\n", ""), "\r") ||
			strings.Contains(strings.ReplaceAll(body, "\r\n", ""), "\n") {
			return
		}
		msg := "From: a@example.net\r\nSubject: " + subject + "\r\n\r\n" + body
		signed := signMessage(t, s, msg)
		for i, v := range verifyGoMsgauth(t, signed, records) {
			if v.Err != nil {
				t.Errorf("signature %d of %q: %v", i, msg, v.Err)
			}
		}
	})
}
