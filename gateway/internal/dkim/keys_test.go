package dkim

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestLoadKey(t *testing.T) {
	tests := []struct {
		path string
		kind string // "rsa" or "ed25519" when the key loads
		err  string // part of the error otherwise
	}{
		{"testdata/rsa2048-pkcs1.pem", "rsa", ""},
		{"testdata/rsa2048-pkcs8.pem", "rsa", ""},
		{"testdata/ed25519-pkcs8.pem", "ed25519", ""},
		{"testdata/garbage.pem", "", "no PEM block"},
		{"testdata/missing.pem", "", "no such file"},
		{"testdata/rsa512-pkcs1.pem", "", "512 bits"},
		{"testdata/ecdsa-p256-pkcs8.pem", "", "ECDSA"},
		{"testdata/ed25519-encrypted.pem", "", "encrypted"},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.path), func(t *testing.T) {
			k, err := LoadKey(tt.path)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || !strings.Contains(err.Error(), tt.path) {
					t.Fatalf("got error %v, want one naming %s and saying %q", err, tt.path, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// An RSA key may be OpenSSL's (the tag openssl): ask its
			// public key what it is.
			switch k := k.Public().(type) {
			case *rsa.PublicKey:
				if tt.kind != "rsa" || k.N.BitLen() != 2048 {
					t.Errorf("got a %d-bit RSA key, want %s", k.N.BitLen(), tt.kind)
				}
			case ed25519.PublicKey:
				if tt.kind != "ed25519" {
					t.Errorf("got an Ed25519 key, want %s", tt.kind)
				}
			default:
				t.Errorf("got %T, want %s", k, tt.kind)
			}
		})
	}
}

func TestLoadKeyWrongBlock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cert.pem")
	data := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2, 3}})
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadKey(path)
	if err == nil || !strings.Contains(err.Error(), `"CERTIFICATE"`) || !strings.Contains(err.Error(), path) {
		t.Errorf("got %v, want an error naming the file and the CERTIFICATE block", err)
	}
}

func TestGenerateKey(t *testing.T) {
	k, err := GenerateKey("rsa", 0)
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := k.(*rsa.PrivateKey); !ok || r.N.BitLen() != 2048 {
		t.Errorf("rsa with bits 0: got %T, want a 2048-bit *rsa.PrivateKey", k)
	}
	k, err = GenerateKey("RSA", 1024)
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := k.(*rsa.PrivateKey); !ok || r.N.BitLen() != 1024 {
		t.Errorf("RSA 1024: got %T, want a 1024-bit *rsa.PrivateKey", k)
	}
	k, err = GenerateKey("ed25519", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := k.(ed25519.PrivateKey); !ok {
		t.Errorf("ed25519: got %T", k)
	}

	for _, bad := range []struct {
		algorithm string
		bits      int
	}{{"dsa", 0}, {"rsa", 512}, {"rsa", 8192}} {
		if _, err := GenerateKey(bad.algorithm, bad.bits); err == nil {
			t.Errorf("GenerateKey(%q, %d) succeeded, want an error", bad.algorithm, bad.bits)
		}
	}
}

// TestMarshalKeyRoundTrip writes generated keys with MarshalKey and reads
// them back with LoadKey, getting the same key.
func TestMarshalKeyRoundTrip(t *testing.T) {
	for _, algorithm := range []string{"rsa", "ed25519"} {
		t.Run(algorithm, func(t *testing.T) {
			k, err := GenerateKey(algorithm, 0)
			if err != nil {
				t.Fatal(err)
			}
			data, err := MarshalKey(k)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(data, []byte("-----BEGIN PRIVATE KEY-----\n")) {
				t.Errorf("MarshalKey did not write PKCS#8 PEM:\n%s", data)
			}
			path := filepath.Join(t.TempDir(), "key.pem")
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			loaded, err := LoadKey(path)
			if err != nil {
				t.Fatal(err)
			}
			// The public keys, as an RSA key may be loaded into OpenSSL
			// (the tag openssl); TestKeysMatchOpenSSL checks the rest.
			if !loaded.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(k.Public()) {
				t.Error("the loaded key differs from the one marshalled")
			}
		})
	}
}

// TestKeysMatchOpenSSL checks our key files and TXT records against
// openssl: the public key `openssl pkey -pubout` derives from a key file is
// the one TXTRecord publishes. It covers keys openssl wrote (read by
// LoadKey) and keys MarshalKey wrote (read by openssl).
func TestKeysMatchOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatal("openssl is missing: apt-get install -y openssl")
	}
	paths := []string{"testdata/rsa2048-pkcs1.pem", "testdata/rsa2048-pkcs8.pem", "testdata/ed25519-pkcs8.pem"}
	for _, algorithm := range []string{"rsa", "ed25519"} {
		k, err := GenerateKey(algorithm, 0)
		if err != nil {
			t.Fatal(err)
		}
		data, err := MarshalKey(k)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), algorithm+".pem")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, path)
	}

	for _, path := range paths {
		k, err := LoadKey(path)
		if err != nil {
			t.Fatal(err)
		}
		txt, err := TXTRecord(k)
		if err != nil {
			t.Fatal(err)
		}
		_, p, _ := strings.Cut(txt, "p=")
		published, err := base64.StdEncoding.DecodeString(p)
		if err != nil {
			t.Fatalf("%s: p= is not base64: %v", path, err)
		}

		out, err := exec.Command("openssl", "pkey", "-in", path, "-pubout", "-outform", "DER").Output()
		if err != nil {
			t.Fatalf("openssl cannot read %s: %v", path, err)
		}
		pub, err := x509.ParsePKIXPublicKey(out)
		if err != nil {
			t.Fatal(err)
		}
		want := out // RSA: p= is the SubjectPublicKeyInfo itself
		if edPub, ok := pub.(ed25519.PublicKey); ok {
			want = edPub // Ed25519: p= is the bare key (RFC 8463 §4)
		}
		if !bytes.Equal(published, want) {
			t.Errorf("%s: TXT record p= does not match openssl's public key", path)
		}
	}
}

func TestTXTRecord(t *testing.T) {
	keys := testKeys(t)
	rsaTXT, err := TXTRecord(keys[0].Signer)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^v=DKIM1; k=rsa; p=[A-Za-z0-9+/]+=*$`).MatchString(rsaTXT) {
		t.Errorf("RSA record %q is not v=DKIM1; k=rsa; p=<base64>", rsaTXT)
	}
	edTXT, err := TXTRecord(keys[1].Signer)
	if err != nil {
		t.Fatal(err)
	}
	p, ok := strings.CutPrefix(edTXT, "v=DKIM1; k=ed25519; p=")
	if !ok {
		t.Fatalf("Ed25519 record %q does not start with v=DKIM1; k=ed25519; p=", edTXT)
	}
	raw, err := base64.StdEncoding.DecodeString(p)
	if err != nil || !bytes.Equal(raw, keys[1].Signer.Public().(ed25519.PublicKey)) {
		t.Errorf("Ed25519 p= %q is not the base64 public key", p)
	}
}

func TestUnsupportedKeys(t *testing.T) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := TXTRecord(ec); err == nil || !strings.Contains(err.Error(), "ECDSA") {
		t.Errorf("TXTRecord(ECDSA): got %v, want an ECDSA error", err)
	}
	if _, err := MarshalKey(ec); err == nil || !strings.Contains(err.Error(), "ECDSA") {
		t.Errorf("MarshalKey(ECDSA): got %v, want an ECDSA error", err)
	}
	_, err = NewSigner(SignerConfig{Domain: testDomain, Keys: []Key{{Selector: "ec", Signer: ec}}})
	if err == nil || !strings.Contains(err.Error(), "ECDSA") {
		t.Errorf("NewSigner(ECDSA): got %v, want an ECDSA error", err)
	}
	var target *os.PathError
	if _, err := LoadKey("testdata/missing.pem"); !errors.As(err, &target) {
		t.Errorf("LoadKey of a missing file: got %v, want it to wrap *os.PathError", err)
	}
}

// PublicKey reads back what TXTRecord writes, as the same key.
func TestPublicKeyOfRecord(t *testing.T) {
	for _, alg := range []string{"rsa", "ed25519"} {
		k, err := GenerateKey(alg, 0)
		if err != nil {
			t.Fatal(err)
		}
		txt, err := TXTRecord(k)
		if err != nil {
			t.Fatal(err)
		}
		pub, err := PublicKey(txt)
		if err != nil {
			t.Fatalf("%s: %v", alg, err)
		}
		if !pub.(interface{ Equal(crypto.PublicKey) bool }).Equal(k.Public()) {
			t.Errorf("%s: PublicKey(%q) is not the key", alg, txt)
		}
		other, _ := GenerateKey(alg, 0)
		if pub.(interface{ Equal(crypto.PublicKey) bool }).Equal(other.Public()) {
			t.Errorf("%s: PublicKey equals another key", alg)
		}
	}
	if _, err := PublicKey("v=DKIM1; k=rsa; p="); err == nil {
		t.Error("a revoked key (empty p=) parsed")
	}
}
