//go:build openssl && cgo

package opensslrsa

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"math/big"
	mrand "math/rand/v2"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// testKey generates an RSA key and loads it into OpenSSL from its PKCS#8
// DER, or PKCS#1 if pkcs1.
func testKey(t testing.TB, bits int, pkcs1 bool) (*rsa.PrivateKey, *Key) {
	t.Helper()
	goKey, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	der := x509.MarshalPKCS1PrivateKey(goKey)
	if !pkcs1 {
		if der, err = x509.MarshalPKCS8PrivateKey(goKey); err != nil {
			t.Fatal(err)
		}
	}
	k, err := New(der)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	if !goKey.PublicKey.Equal(k.Public()) {
		t.Fatalf("OpenSSL's public key is not the Go key's")
	}
	return goKey, k
}

// TestSameSignatures signs random inputs of random lengths with crypto/rsa
// and with OpenSSL, for every key size DKIM accepts, and compares the
// signatures byte for byte: PKCS#1 v1.5 is deterministic.
func TestSameSignatures(t *testing.T) {
	for _, c := range []struct {
		bits, inputs int
		pkcs1        bool
	}{
		{1024, 2000, true},
		{2048, 1000, false},
		{3072, 300, true},
		{4096, 200, false},
	} {
		goKey, k := testKey(t, c.bits, c.pkcs1)
		rng := mrand.New(mrand.NewPCG(uint64(c.bits), 16))
		for i := range c.inputs {
			msg := make([]byte, rng.IntN(8192))
			for j := range msg {
				msg[j] = byte(rng.Uint32())
			}
			digest := sha256.Sum256(msg)
			want, err := rsa.SignPKCS1v15(nil, goKey, crypto.SHA256, digest[:])
			if err != nil {
				t.Fatal(err)
			}
			got, err := k.Sign(rand.Reader, digest[:], crypto.SHA256)
			if err != nil {
				t.Fatalf("RSA-%d input %d: %v", c.bits, i, err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("RSA-%d input %d (%d bytes): OpenSSL's signature differs from crypto/rsa's", c.bits, i, len(msg))
			}
		}
	}
}

// TestConcurrentSign has many goroutines sign with one key at once (run it
// with -race): every signature must be the one crypto/rsa makes.
func TestConcurrentSign(t *testing.T) {
	goKey, k := testKey(t, 2048, false)
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 20 {
				digest := sha256.Sum256([]byte{byte(g), byte(i)})
				want, err := rsa.SignPKCS1v15(nil, goKey, crypto.SHA256, digest[:])
				if err != nil {
					t.Error(err)
					return
				}
				got, err := k.Sign(nil, digest[:], crypto.SHA256)
				if err != nil || !bytes.Equal(got, want) {
					t.Errorf("goroutine %d signature %d: err %v, or differs from crypto/rsa's", g, i, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestRefuses checks what New and Sign refuse, each with a clear error.
func TestRefuses(t *testing.T) {
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	edDER, err := x509.MarshalPKCS8PrivateKey(edKey)
	if err != nil {
		t.Fatal(err)
	}
	for name, der := range map[string][]byte{"empty": nil, "garbage": []byte("not a key"), "ed25519": edDER} {
		if k, err := New(der); err == nil {
			k.Close()
			t.Errorf("New(%s) gave a key, want an error", name)
		}
	}
	// OpenSSL's own reason, read on the thread that failed.
	if _, err := New([]byte("not a key")); err == nil || !strings.Contains(err.Error(), "reading the private key: error:") {
		t.Errorf("New(garbage): %v, want OpenSSL's reason", err)
	}
	_, k := testKey(t, 1024, true)
	digest := sha256.Sum256([]byte("x"))
	if _, err := k.Sign(nil, digest[:], crypto.SHA1); err == nil {
		t.Error("signed with SHA-1 named, want an error")
	}
	if _, err := k.Sign(nil, digest[:], &rsa.PSSOptions{Hash: crypto.SHA256}); err == nil {
		t.Error("signed with PSS, want an error")
	}
	if _, err := k.Sign(nil, digest[:20], crypto.SHA256); err == nil {
		t.Error("signed a 20-byte digest as SHA-256, want an error")
	}
	k.Close()
	k.Close() // twice is fine
	if _, err := k.Sign(nil, digest[:], crypto.SHA256); err == nil {
		t.Error("signed with a closed key, want an error")
	}
}

// TestSignersReused checks that signatures reuse the key's signing
// contexts rather than make one each, that no more are kept than run at
// once, and that Close frees them.
func TestSignersReused(t *testing.T) {
	goKey, k := testKey(t, 2048, false)
	for i := range 50 {
		digest := sha256.Sum256([]byte{byte(i)})
		want, _ := rsa.SignPKCS1v15(nil, goKey, crypto.SHA256, digest[:])
		if got, err := k.Sign(nil, digest[:], crypto.SHA256); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("signature %d: err %v, or differs from crypto/rsa's", i, err)
		}
	}
	if n := len(k.c.idle); n != 1 {
		t.Errorf("after 50 signatures one at a time the key keeps %d contexts, want 1", n)
	}
	var wg sync.WaitGroup
	for range 4 * maxIdleSigning {
		wg.Go(func() {
			digest := sha256.Sum256([]byte("x"))
			if _, err := k.Sign(nil, digest[:], crypto.SHA256); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := len(k.c.idle); n < 1 || n > maxIdleSigning {
		t.Errorf("after concurrent signatures the key keeps %d contexts, want 1 to %d", n, maxIdleSigning)
	}
	c := k.c
	k.Close()
	if c.idle != nil || k.c != nil {
		t.Errorf("Close left %d contexts", len(c.idle))
	}
}

// TestSameVerification checks that OpenSSL verifies what crypto/rsa does:
// every signature crypto/rsa makes, and none of the same signatures
// altered (a bit flipped, cut short, grown by a byte, raised past the
// modulus) or checked against another digest.
func TestSameVerification(t *testing.T) {
	for _, bits := range []int{1024, 2048, 4096} {
		goKey, _ := testKey(t, bits, false)
		pub, err := NewPublic(&goKey.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		rng := mrand.New(mrand.NewPCG(uint64(bits), 17))
		for i := range 100 {
			digest := sha256.Sum256([]byte{byte(i), byte(i >> 8)})
			sig, err := rsa.SignPKCS1v15(nil, goKey, crypto.SHA256, digest[:])
			if err != nil {
				t.Fatal(err)
			}
			flipped := bytes.Clone(sig)
			flipped[rng.IntN(len(sig))] ^= 1 << rng.IntN(8)
			other := sha256.Sum256([]byte("other"))
			for _, c := range []struct {
				name        string
				digest, sig []byte
			}{
				{"signature", digest[:], sig},
				{"bit flipped", digest[:], flipped},
				{"cut short", digest[:], sig[1:]},
				{"a byte longer", digest[:], append([]byte{0}, sig...)},
				{"past the modulus", digest[:], bytes.Repeat([]byte{0xff}, len(sig))},
				{"empty", digest[:], nil},
				{"other digest", other[:], sig},
			} {
				want := rsa.VerifyPKCS1v15(&goKey.PublicKey, crypto.SHA256, c.digest, c.sig) == nil
				if got := pub.Verify(c.digest, c.sig) == nil; got != want {
					t.Fatalf("RSA-%d input %d, %s: OpenSSL says %v, crypto/rsa %v", bits, i, c.name, got, want)
				}
				if c.name == "signature" && !want {
					t.Fatalf("RSA-%d input %d: crypto/rsa does not verify its own signature", bits, i)
				}
			}
		}
	}
}

// TestNewPublicRefuses checks that a public key crypto/rsa would not
// verify with is refused too: OpenSSL would verify with some.
func TestNewPublicRefuses(t *testing.T) {
	goKey, _ := testKey(t, 1024, true)
	n := goKey.N
	even := new(big.Int).Add(n, big.NewInt(1))
	for name, pub := range map[string]*rsa.PublicKey{
		"e = 1":       {N: n, E: 1},
		"e even":      {N: n, E: 65536},
		"e too large": {N: n, E: 1 << 32},
		"n even":      {N: even, E: 65537},
		"no n":        {E: 65537},
		"16401 bits":  {N: new(big.Int).SetBit(big.NewInt(1), 16400, 1), E: 65537},
	} {
		if _, err := NewPublic(pub); err == nil {
			t.Errorf("NewPublic(%s) gave a key, want an error", name)
		}
	}
}

// BenchmarkVerify checks one RSA-2048 PKCS#1 v1.5 SHA-256 signature with
// each backend, the key loaded once.
func BenchmarkVerify(b *testing.B) {
	goKey, _ := testKey(b, 2048, false)
	pub, err := NewPublic(&goKey.PublicKey)
	if err != nil {
		b.Fatal(err)
	}
	digest := sha256.Sum256([]byte("benchmark"))
	sig, err := rsa.SignPKCS1v15(nil, goKey, crypto.SHA256, digest[:])
	if err != nil {
		b.Fatal(err)
	}
	for _, v := range []struct {
		name   string
		verify func() error
	}{
		{"go", func() error { return rsa.VerifyPKCS1v15(&goKey.PublicKey, crypto.SHA256, digest[:], sig) }},
		{"openssl", func() error { return pub.Verify(digest[:], sig) }},
	} {
		b.Run(v.name, func(b *testing.B) {
			defer reportCPU(b)()
			for b.Loop() {
				if err := v.verify(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSign makes one RSA-2048 PKCS#1 v1.5 SHA-256 signature with each
// backend, on one core and on all (parallel). Besides the wall-clock time
// it reports the process's CPU time per signature (cpu-ns/op), which other
// work on a shared machine disturbs far less.
func BenchmarkSign(b *testing.B) {
	goKey, k := testKey(b, 2048, false)
	digest := sha256.Sum256([]byte("benchmark"))
	for _, s := range []struct {
		name   string
		signer crypto.Signer
	}{{"go", goKey}, {"openssl", k}} {
		b.Run(s.name, func(b *testing.B) {
			defer reportCPU(b)()
			for b.Loop() {
				if _, err := s.signer.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(s.name+"-parallel", func(b *testing.B) {
			defer reportCPU(b)()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := s.signer.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// reportCPU starts counting the process's CPU time; the function it
// returns reports it per operation as cpu-ns/op.
func reportCPU(b *testing.B) func() {
	start := cpuTime(b)
	return func() { b.ReportMetric(float64(cpuTime(b)-start)/float64(b.N), "cpu-ns/op") }
}

func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
