//go:build openssl && cgo

package opensslrsa

/*
#cgo LDFLAGS: -lcrypto
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/err.h>

// load reads a DER private key (PKCS#8 or PKCS#1) from len bytes at p: d2i
// advances a pointer, which must be a C variable, not a Go one.
static EVP_PKEY *load(const unsigned char *p, long len) {
	const unsigned char *q = p;
	return d2i_AutoPrivateKey(NULL, &q, len);
}

// public writes the key's SubjectPublicKeyInfo into OpenSSL-allocated memory
// at *out and returns its length, or a negative number.
static int public(EVP_PKEY *k, unsigned char **out) {
	*out = NULL;
	return i2d_PUBKEY(k, out);
}

// sign makes the PKCS#1 v1.5 signature of a SHA-256 digest into sig, which
// holds *siglen bytes; it returns 1 on success. A context per call keeps
// the shared EVP_PKEY read-only, so concurrent calls are safe.
static int sign(EVP_PKEY *k, const unsigned char *digest, size_t dlen, unsigned char *sig, size_t *siglen) {
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(k, NULL);
	int ok = ctx != NULL
		&& EVP_PKEY_sign_init(ctx) == 1
		&& EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1
		&& EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) == 1
		&& EVP_PKEY_sign(ctx, sig, siglen, digest, dlen) == 1;
	EVP_PKEY_CTX_free(ctx);
	return ok;
}

// lastError takes OpenSSL's error queue, returning the latest error.
static unsigned long lastError(void) {
	unsigned long e, last = 0;
	while ((e = ERR_get_error()) != 0) last = e;
	return last;
}
*/
import "C"

import (
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"unsafe"
)

// Version is the libcrypto the binary runs with, as OpenSSL names it
// ("OpenSSL 3.0.13 30 Jan 2024").
func Version() string { return C.GoString(C.OpenSSL_version(C.OPENSSL_VERSION)) }

// Key is an RSA private key held in OpenSSL's memory. It is a crypto.Signer
// for PKCS#1 v1.5 SHA-256 signatures, safe for concurrent use. Its memory
// is freed by Close, or when the Key is garbage collected.
type Key struct {
	mu   sync.RWMutex // Sign holds it for reading, Close for writing
	pkey *C.EVP_PKEY  // nil once closed
	pub  *rsa.PublicKey
	size int // the signature's length in bytes
	free runtime.Cleanup
}

// New loads a DER RSA private key, PKCS#8 or PKCS#1, into OpenSSL. OpenSSL
// parses it straight from der, so no other copy is made in Go memory;
// the caller owns der and may zero it afterwards.
func New(der []byte) (*Key, error) {
	if len(der) == 0 {
		return nil, errors.New("opensslrsa: empty key")
	}
	pkey := C.load((*C.uchar)(unsafe.Pointer(&der[0])), C.long(len(der)))
	if pkey == nil {
		return nil, opensslError("reading the private key")
	}
	k := &Key{pkey: pkey}
	// Cleanup rather than a finalizer: it runs once k is unreachable, with
	// only the C pointer, which nothing else holds.
	k.free = runtime.AddCleanup(k, func(p *C.EVP_PKEY) { C.EVP_PKEY_free(p) }, pkey)
	if C.EVP_PKEY_get_base_id(pkey) != C.EVP_PKEY_RSA {
		k.Close()
		return nil, errors.New("opensslrsa: the key is not an RSA key")
	}
	var out *C.uchar
	n := C.public(pkey, &out)
	if n <= 0 {
		k.Close()
		return nil, opensslError("writing the public key")
	}
	spki := C.GoBytes(unsafe.Pointer(out), n)
	C.CRYPTO_free(unsafe.Pointer(out), nil, 0)
	pub, err := x509.ParsePKIXPublicKey(spki)
	if err != nil {
		k.Close()
		return nil, fmt.Errorf("opensslrsa: reading the public key: %w", err)
	}
	k.pub = pub.(*rsa.PublicKey)
	k.size = k.pub.Size()
	return k, nil
}

// Public returns the key's *rsa.PublicKey.
func (k *Key) Public() crypto.PublicKey { return k.pub }

// Sign signs a SHA-256 digest with PKCS#1 v1.5 padding, the signature
// crypto/rsa.SignPKCS1v15 makes (the padding is deterministic, so the bytes
// are the same). rand is not used: OpenSSL blinds with its own generator.
// Other hashes and PSS are refused: DKIM and ARC use neither.
func (k *Key) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if _, pss := opts.(*rsa.PSSOptions); pss {
		return nil, errors.New("opensslrsa: PSS is not supported")
	}
	if opts.HashFunc() != crypto.SHA256 {
		return nil, fmt.Errorf("opensslrsa: hash %v is not supported, only SHA-256", opts.HashFunc())
	}
	if len(digest) != crypto.SHA256.Size() {
		return nil, fmt.Errorf("opensslrsa: digest has %d bytes, want %d", len(digest), crypto.SHA256.Size())
	}
	k.mu.RLock()
	defer k.mu.RUnlock()
	if k.pkey == nil {
		return nil, errors.New("opensslrsa: the key is closed")
	}
	sig := make([]byte, k.size)
	n := C.size_t(len(sig))
	if C.sign(k.pkey, (*C.uchar)(unsafe.Pointer(&digest[0])), C.size_t(len(digest)), (*C.uchar)(unsafe.Pointer(&sig[0])), &n) != 1 {
		return nil, opensslError("signing")
	}
	// RSA signatures are as long as the modulus (RFC 8017 §8.2.1); OpenSSL
	// pads them so, but check rather than hand on a short one.
	if int(n) != len(sig) {
		return nil, fmt.Errorf("opensslrsa: signature has %d bytes, want %d", n, len(sig))
	}
	return sig, nil
}

// Close frees the key's OpenSSL memory now, rather than when it is garbage
// collected. Sign fails after Close; Close may be called more than once.
func (k *Key) Close() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.pkey != nil {
		k.free.Stop()
		C.EVP_PKEY_free(k.pkey)
		k.pkey = nil
	}
}

func opensslError(doing string) error {
	e := C.lastError()
	if e == 0 {
		return fmt.Errorf("opensslrsa: %s failed", doing)
	}
	var buf [256]C.char
	C.ERR_error_string_n(e, &buf[0], C.size_t(len(buf)))
	return fmt.Errorf("opensslrsa: %s: %s", doing, C.GoString(&buf[0]))
}
