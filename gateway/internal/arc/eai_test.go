package arc

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"testing"

	"github.com/sluice-mail/sluice/gateway/internal/dkimpy"
)

// utf8Message has UTF-8 header fields (RFC 6532), as an SMTPUTF8 client
// sends them.
const utf8Message = "From: Pelé <pelé@exemple.test>\r\n" +
	"To: Piñata <piñata@piñata.example>\r\n" +
	"Subject: ¡Feliz\r\n cumpleaños,  piñata!\r\n" +
	"Date: Thu, 14 Jan 2025 15:00:01 +0000\r\n" +
	"Message-ID: <eai@exemple.test>\r\n" +
	"\r\n" +
	"Olá!  \r\n\r\n"

// An ARC set over UTF-8 header fields validates both ways: dkimpy
// validates ours, and we validate dkimpy's.
func TestUTF8HeaderInterop(t *testing.T) {
	hops := benchHops()["rsa2048"]
	lookup := mapLookup(t, hops)
	ours := sealBy(t, []byte(utf8Message), hops[0], lookup)
	if cv, reason := dkimpyVerify(t, ours, hops); cv != "pass" {
		t.Errorf("dkimpy on our seal of a UTF-8 message: cv=%s (%s), want pass", cv, reason)
	}
	changed := bytes.Replace(ours, []byte("cumpleaños"), []byte("cumpleanos"), 1)
	if cv, reason := dkimpyVerify(t, changed, hops); cv != "fail" {
		t.Errorf("dkimpy on a changed UTF-8 Subject: cv=%s (%s), want fail", cv, reason)
	}

	// dkimpy seals as a.example, taking its Authentication-Results into
	// the set. (dkimpy's parser of that field refuses UTF-8 in a value,
	// smtp.mailfrom=pelé@...: it would seal nothing.)
	h := hops[0]
	msg := []byte("Authentication-Results: mx.a.example; spf=pass smtp.mailfrom=exemple.test\r\n" + utf8Message)
	block, _ := pem.Decode(rsaPEM()) // h.key's, which may be in OpenSSL
	goKey, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	key := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(goKey.(*rsa.PrivateKey))})
	set := dkimpy.Run(t, "testdata/dkimpy_seal.py", dkimpy.WriteFile(t, "utf8.eml", msg), dkimpy.WriteFile(t, "key.pem", key),
		h.selector, h.domain, "mx.a.example")
	sealed := append(set, msg...)
	wantResult(t, verify(sealed, lookup), "pass", 1, 1)
	wantResult(t, verify(bytes.Replace(sealed, []byte("Pelé"), []byte("Pele"), 1), lookup), "fail", 1, 0)
}
