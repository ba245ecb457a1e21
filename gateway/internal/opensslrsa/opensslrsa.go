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

// signer makes a context that signs SHA-256 digests with k and PKCS#1 v1.5
// padding, or returns NULL. Setting it up (finding the provider's
// implementation, fetching SHA-256) costs a tenth of a signature, so a
// context is made once and used for many signatures: EVP_PKEY_sign may be
// called again on a context with the same parameters. A context is used by
// one thread at a time; the shared EVP_PKEY is only read.
static EVP_PKEY_CTX *signer(EVP_PKEY *k) {
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(k, NULL);
	if (ctx == NULL) return NULL;
	if (EVP_PKEY_sign_init(ctx) != 1
		|| EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) != 1
		|| EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) != 1) {
		EVP_PKEY_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

// sign makes the signature of a SHA-256 digest into sig, which holds
// *siglen bytes; it returns 1 on success.
static int sign(EVP_PKEY_CTX *ctx, const unsigned char *digest, size_t dlen, unsigned char *sig, size_t *siglen) {
	return EVP_PKEY_sign(ctx, sig, siglen, digest, dlen) == 1;
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
	c    *cKey        // nil once closed
	pub  *rsa.PublicKey
	size int // the signature's length in bytes
	free runtime.Cleanup
}

// maxIdle bounds the signing contexts a key keeps between signatures. A
// context is in use for the length of one signature, so as many are busy
// as signatures run at once: a few per core. One more is made when they
// are all busy, and dropped after use if maxIdle are idle already.
const maxIdle = 64

// cKey is what a Key holds in OpenSSL's memory: the key and its signing
// contexts not in use. It is apart from Key so that the cleanup that frees
// it does not keep the Key reachable.
type cKey struct {
	pkey *C.EVP_PKEY
	mu   sync.Mutex
	idle []*C.EVP_PKEY_CTX
}

// signer takes an idle signing context, or makes one.
func (c *cKey) signer() (*C.EVP_PKEY_CTX, error) {
	c.mu.Lock()
	if n := len(c.idle); n > 0 {
		ctx := c.idle[n-1]
		c.idle = c.idle[:n-1]
		c.mu.Unlock()
		return ctx, nil
	}
	c.mu.Unlock()
	ctx := C.signer(c.pkey)
	if ctx == nil {
		return nil, opensslError("setting up a signature")
	}
	return ctx, nil
}

// done gives a context back after a signature.
func (c *cKey) done(ctx *C.EVP_PKEY_CTX) {
	c.mu.Lock()
	if len(c.idle) < maxIdle {
		c.idle = append(c.idle, ctx)
		ctx = nil
	}
	c.mu.Unlock()
	C.EVP_PKEY_CTX_free(ctx) // NULL is fine
}

// close frees the contexts, then the key. No signature may be running.
func (c *cKey) close() {
	for _, ctx := range c.idle {
		C.EVP_PKEY_CTX_free(ctx)
	}
	c.idle = nil
	C.EVP_PKEY_free(c.pkey)
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
	k := &Key{c: &cKey{pkey: pkey}}
	// Cleanup rather than a finalizer: it runs once k is unreachable, with
	// only the C side, which nothing else holds.
	k.free = runtime.AddCleanup(k, (*cKey).close, k.c)
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
	if k.c == nil {
		return nil, errors.New("opensslrsa: the key is closed")
	}
	ctx, err := k.c.signer()
	if err != nil {
		return nil, err
	}
	sig := make([]byte, k.size)
	n := C.size_t(len(sig))
	if C.sign(ctx, (*C.uchar)(unsafe.Pointer(&digest[0])), C.size_t(len(digest)), (*C.uchar)(unsafe.Pointer(&sig[0])), &n) != 1 {
		// The context is dropped: what state a failure leaves it in is
		// not documented.
		C.EVP_PKEY_CTX_free(ctx)
		return nil, opensslError("signing")
	}
	k.c.done(ctx)
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
	if k.c != nil {
		k.free.Stop()
		k.c.close()
		k.c = nil
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
