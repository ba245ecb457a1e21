package dkim_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/sluice-mail/sluice/gateway/internal/arc"
	"github.com/sluice-mail/sluice/gateway/internal/dkim"
	"github.com/sluice-mail/sluice/gateway/internal/message"
)

// TestBodyHashedOnce: a forwarded message's body is hashed once, by
// whichever of DKIM and ARC verification, DKIM signing and ARC sealing
// comes first, and the others read that hash. Once it is computed the
// body's bytes are changed here: a step that hashed them again would find
// (or write) another hash, and the upstream signatures would fail.
func TestBodyHashedOnce(t *testing.T) {
	key, err := dkim.LoadKey("testdata/ed25519-pkcs8.pem")
	if err != nil {
		t.Fatal(err)
	}
	txt, err := dkim.TXTRecord(key)
	if err != nil {
		t.Fatal(err)
	}
	lookup := func(_ context.Context, name string) ([]string, error) {
		if strings.HasPrefix(name, "s1._domainkey.") {
			return []string{txt}, nil
		}
		return nil, fmt.Errorf("no TXT record at %s", name)
	}
	signer := func(domain string) *dkim.Signer {
		s, err := dkim.NewSigner(dkim.SignerConfig{Domain: domain, Keys: []dkim.Key{{Selector: "s1", Signer: key}}})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	seal := func(domain string) arc.SealConfig {
		return arc.SealConfig{Domain: domain, Selector: "s1", Key: key}
	}

	// The message as it arrives: signed by its sender, sealed by a first
	// forwarder.
	msg := []byte("From: Alice <alice@sender.example>\r\n" +
		"To: bob@forwarder.example\r\n" +
		"Subject: once\r\n" +
		"\r\n" +
		"A body  whose spaces\t need collapsing.  \r\n\r\n")
	sig, err := signer("sender.example").Sign(msg)
	if err != nil {
		t.Fatal(err)
	}
	msg = append(sig, msg...)
	set, err := arc.Seal(msg, "mx.first.example", "dkim=pass", arc.Result{CV: arc.CVNone}, seal("first.example"))
	if err != nil {
		t.Fatal(err)
	}
	msg = append(set, msg...)

	// What deliver does: the header parsed once, the body made once.
	block, bytesOfBody := message.Split(msg)
	header := message.ParseHeader(block)
	body := dkim.NewBody(bytesOfBody)
	want := body.Hash("relaxed")
	bytesOfBody[0] = 'a' // any pass over the bytes from here on hashes another body

	var results []dkim.Result
	var chain arc.Result
	var wg sync.WaitGroup
	wg.Go(func() {
		results = dkim.VerifyHeader(context.Background(), header, body, dkim.VerifyOptions{Lookup: lookup})
	})
	wg.Go(func() {
		chain = arc.VerifyHeader(context.Background(), header, body, arc.VerifyOptions{Lookup: lookup})
	})
	wg.Wait()
	if len(results) != 1 || results[0].Result != "pass" {
		t.Errorf("DKIM verification: %+v, want one pass: it hashed the body again", results)
	}
	if chain.CV != arc.CVPass {
		t.Errorf("ARC verification: cv=%s (%s), want pass: it hashed the body again", chain.CV, chain.Reason)
	}
	sigs, err := signer("forwarder.example").SignParts(header, body)
	if err != nil {
		t.Fatal(err)
	}
	signed := header.Prepend(sigs)
	ours, err := arc.SealParts(signed, body, "mx.forwarder.example", "dkim=pass", chain, seal("forwarder.example"))
	if err != nil {
		t.Fatal(err)
	}
	bh := "bh=" + base64.StdEncoding.EncodeToString(want) + ";"
	if !bytes.Contains(sigs, []byte(bh)) {
		t.Errorf("our DKIM-Signature has not the shared %s:\n%s", bh, sigs)
	}
	if !bytes.Contains(ours, []byte(bh)) {
		t.Errorf("our ARC-Message-Signature has not the shared %s:\n%s", bh, ours)
	}
	if n := dkim.Hashed(body); n != 1 {
		t.Errorf("the body was hashed %d times, want once", n)
	}

	// With its bytes as they were, the message we forward verifies.
	bytesOfBody[0] = 'A'
	out := append(append(ours, sigs...), msg...)
	if r := dkim.Verify(context.Background(), out, dkim.VerifyOptions{Lookup: lookup}); len(r) != 2 || r[0].Result != "pass" || r[1].Result != "pass" {
		t.Errorf("DKIM verification of the forwarded message: %+v, want two passes", r)
	}
	if r := arc.Verify(context.Background(), out, arc.VerifyOptions{Lookup: lookup}); r.CV != arc.CVPass || r.Instances != 2 {
		t.Errorf("ARC verification of the forwarded message: %+v, want a chain of 2 that passes", r)
	}
}
