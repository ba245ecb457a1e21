package dkim

import (
	"bytes"
	"strings"
	"testing"

	"github.com/sluice-mail/sluice/gateway/internal/message"
)

// FuzzFieldsOf: the fields of a header the gateway parsed once are the
// fields this package splits out of the message itself, with the same
// names and bytes, so that signing and verifying the parsed header is
// signing and verifying the message.
func FuzzFieldsOf(f *testing.F) {
	f.Add([]byte("From: a@example.net\r\nSubject: hi\r\n\tfolded\r\n\r\nbody\r\n"))
	f.Add([]byte(" leading: space\r\nno colon\r\n : empty name\r\nX\r\n cont: inued\r\n\vVT : x\r\nLast"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		msg = message.NormalizeLineEndings(msg) // as the gateway has it
		header, body := message.Split(msg)
		want, wantBody := splitMessage(msg)
		got := fieldsOf(message.ParseHeader(header))
		if len(got) != len(want) || !bytes.Equal(body, wantBody) && len(body)+len(wantBody) > 0 {
			t.Fatalf("%q: %d fields and body %q, splitMessage: %d fields and body %q", msg, len(got), body, len(want), wantBody)
		}
		for i := range got {
			if got[i].name != want[i].name || !bytes.Equal(got[i].raw, want[i].raw) {
				t.Fatalf("%q: field %d is %q %q, splitMessage: %q %q", msg, i, got[i].name, got[i].raw, want[i].name, want[i].raw)
			}
		}
	})
}

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
