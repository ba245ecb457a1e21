package dkim

import (
	"context"
	"crypto/rsa"
	"errors"
	"testing"
)

// A key is parsed once per encoding, and a failed parse is not kept.
func TestKeyCacheParsesOnce(t *testing.T) {
	c := NewKeyCache()
	want := testKeys(t)[0].Signer.Public().(*rsa.PublicKey)
	calls := 0
	parse := func([]byte) (*rsa.PublicKey, error) { calls++; return want, nil }
	first, _ := c.RSA([]byte("der"), parse)
	for range 3 {
		if got, err := c.RSA([]byte("der"), parse); got != first || got.PublicKey != want || err != nil {
			t.Fatalf("RSA = %v, %v", got, err)
		}
	}
	if calls != 1 {
		t.Errorf("parsed %d times, want 1", calls)
	}
	bad := errors.New("bad key")
	for range 2 {
		if _, err := c.RSA([]byte("other"), func([]byte) (*rsa.PublicKey, error) { calls++; return nil, bad }); err != bad {
			t.Fatalf("err = %v, want %v", err, bad)
		}
	}
	if calls != 3 {
		t.Errorf("a key that fails to parse was parsed %d times in 2 calls, want 2", calls-1)
	}
	var none *KeyCache
	if got, _ := none.RSA([]byte("der"), parse); got.PublicKey != want || calls != 4 {
		t.Errorf("a nil cache: %v after %d calls", got, calls)
	}
}

// With a cache, the second message signed with a key is verified with the
// key kept from the first, and passes as the first did.
func TestVerifyWithKeyCache(t *testing.T) {
	keys := testKeys(t)
	_, lookup := startDNS(t, txtZone(txtRecords(t, testDomain, keys)))
	msg := []byte(signMessage(t, newTestSigner(t, keys[:1]), testMessage))
	o := VerifyOptions{Lookup: lookup, Keys: NewKeyCache()}
	for i := range 2 {
		if got := Verify(context.Background(), msg, o); len(got) != 1 || got[0].Result != "pass" {
			t.Fatalf("verification %d: %+v", i+1, got)
		}
	}
	if len(o.Keys.keys) != 1 {
		t.Errorf("%d keys kept, want 1", len(o.Keys.keys))
	}
}
