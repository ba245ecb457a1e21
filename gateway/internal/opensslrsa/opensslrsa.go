//go:build openssl && cgo

package opensslrsa

/*
#cgo LDFLAGS: -lcrypto
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/err.h>

// lastError takes OpenSSL's error queue, returning the latest error, or 1
// (not an error code) if the queue is empty. The queue is the thread's, so
// each function here that can fail reads it before it returns: the next
// cgo call may run on another thread.
static unsigned long lastError(void) {
	unsigned long e, last = 0;
	while ((e = ERR_get_error()) != 0) last = e;
	return last != 0 ? last : 1;
}

// load reads a DER private key (PKCS#8 or PKCS#1) from len bytes at p: d2i
// advances a pointer, which must be a C variable, not a Go one. On failure
// it returns NULL and the error in *err.
static EVP_PKEY *load(const unsigned char *p, long len, unsigned long *err) {
	const unsigned char *q = p;
	EVP_PKEY *k = d2i_AutoPrivateKey(NULL, &q, len);
	if (k == NULL) *err = lastError();
	return k;
}

// loadPublic reads a DER SubjectPublicKeyInfo, as load does.
static EVP_PKEY *loadPublic(const unsigned char *p, long len, unsigned long *err) {
	const unsigned char *q = p;
	EVP_PKEY *k = d2i_PUBKEY(NULL, &q, len);
	if (k == NULL) *err = lastError();
	return k;
}

// public writes the key's SubjectPublicKeyInfo into OpenSSL-allocated memory
// at *out and returns its length, or a negative number and the error in
// *err.
static int public(EVP_PKEY *k, unsigned char **out, unsigned long *err) {
	*out = NULL;
	int n = i2d_PUBKEY(k, out);
	if (n <= 0) *err = lastError();
	return n;
}

// context makes a context that signs (or, if verify, verifies) SHA-256
// digests with k and PKCS#1 v1.5 padding, or returns NULL. Setting it up
// (finding the provider's implementation, fetching SHA-256) costs about
// 4 µs, a fifth of a verification, so a context is made once and used many
// times:
// EVP_PKEY_sign and EVP_PKEY_verify may be called again on a context with
// the same parameters. A context is used by one thread at a time; the
// shared EVP_PKEY is only read.
static EVP_PKEY_CTX *context(EVP_PKEY *k, int verify, unsigned long *err) {
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(k, NULL);
	if (ctx == NULL
		|| (verify ? EVP_PKEY_verify_init(ctx) : EVP_PKEY_sign_init(ctx)) != 1
		|| EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) != 1
		|| EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) != 1) {
		*err = lastError();
		EVP_PKEY_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

// sign makes the signature of a SHA-256 digest into sig, which holds
// *siglen bytes; it returns 0 on success, else lastError().
static unsigned long sign(EVP_PKEY_CTX *ctx, const unsigned char *digest, size_t dlen, unsigned char *sig, size_t *siglen) {
	return EVP_PKEY_sign(ctx, sig, siglen, digest, dlen) == 1 ? 0 : lastError();
}

// verify returns 1 if sig is the signature of a SHA-256 digest, 0 if not,
// and a negative number if the check failed. The errors a signature that
// does not verify leaves in the queue are dropped, so that they are not
// taken for the cause of a later failure on this thread.
static int verify(EVP_PKEY_CTX *ctx, const unsigned char *sig, size_t siglen, const unsigned char *digest, size_t dlen) {
	int r = EVP_PKEY_verify(ctx, sig, siglen, digest, dlen);
	ERR_clear_error();
	return r;
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

// The contexts a key keeps between uses, at most. A context is in use for
// the length of one signature or verification, so as many are busy as run
// at once with the key; one more is made when they are all busy, and freed
// after use if the key keeps as many idle already. A signing key signs
// much of the mail, with signatures long enough that the scheduler runs
// others meanwhile; a public key is one of up to a thousand cached, each
// verifying for 20 µs at a time.
const (
	maxIdleSigning   = 64
	maxIdleVerifying = 4
)

// cKey is what a Key or PublicKey holds in OpenSSL's memory: the key and
// its contexts not in use. It is apart from the Go value so that the
// cleanup that frees it does not keep that value reachable.
type cKey struct {
	pkey    *C.EVP_PKEY
	verify  C.int // 1: the contexts verify; 0: they sign
	maxIdle int
	mu      sync.Mutex
	idle    []*C.EVP_PKEY_CTX
}

// context takes an idle context, or makes one.
func (c *cKey) context() (*C.EVP_PKEY_CTX, error) {
	c.mu.Lock()
	if n := len(c.idle); n > 0 {
		ctx := c.idle[n-1]
		c.idle = c.idle[:n-1]
		c.mu.Unlock()
		return ctx, nil
	}
	c.mu.Unlock()
	var e C.ulong
	ctx := C.context(c.pkey, c.verify, &e)
	if ctx == nil {
		return nil, opensslError("setting up the key", e)
	}
	return ctx, nil
}

// done gives a context back after use.
func (c *cKey) done(ctx *C.EVP_PKEY_CTX) {
	c.mu.Lock()
	if len(c.idle) < c.maxIdle {
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
	var e C.ulong
	pkey := C.load((*C.uchar)(unsafe.Pointer(&der[0])), C.long(len(der)), &e)
	if pkey == nil {
		return nil, opensslError("reading the private key", e)
	}
	k := &Key{c: &cKey{pkey: pkey, maxIdle: maxIdleSigning}}
	// Cleanup rather than a finalizer: it runs once k is unreachable, with
	// only the C side, which nothing else holds.
	k.free = runtime.AddCleanup(k, (*cKey).close, k.c)
	if C.EVP_PKEY_get_base_id(pkey) != C.EVP_PKEY_RSA {
		k.Close()
		return nil, errors.New("opensslrsa: the key is not an RSA key")
	}
	var out *C.uchar
	n := C.public(pkey, &out, &e)
	if n <= 0 {
		k.Close()
		return nil, opensslError("writing the public key", e)
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
	ctx, err := k.c.context()
	if err != nil {
		return nil, err
	}
	sig := make([]byte, k.size)
	n := C.size_t(len(sig))
	if e := C.sign(ctx, (*C.uchar)(unsafe.Pointer(&digest[0])), C.size_t(len(digest)), (*C.uchar)(unsafe.Pointer(&sig[0])), &n); e != 0 {
		// The context is dropped: what state a failure leaves it in is
		// not documented.
		C.EVP_PKEY_CTX_free(ctx)
		return nil, opensslError("signing", e)
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

// PublicKey is an RSA public key held in OpenSSL's memory, which verifies
// PKCS#1 v1.5 SHA-256 signatures, safe for concurrent use. Its memory is
// freed when it is garbage collected.
type PublicKey struct {
	c *cKey
}

// NewPublic loads pub into OpenSSL. A key crypto/rsa would not verify with
// is refused, as are keys OpenSSL does not verify with (more than 16384
// bits).
func NewPublic(pub *rsa.PublicKey) (*PublicKey, error) {
	// crypto/rsa's checks, which OpenSSL does not all make (it verifies
	// with e = 1, with which anyone can sign).
	switch {
	case pub.N == nil || pub.N.Bit(0) == 0:
		return nil, errors.New("opensslrsa: the modulus is missing or even")
	case pub.E < 3 || pub.E&1 == 0 || pub.E > 1<<31-1:
		return nil, fmt.Errorf("opensslrsa: public exponent %d is not odd, 3 to 2³¹-1", pub.E)
	case pub.N.BitLen() > C.OPENSSL_RSA_MAX_MODULUS_BITS:
		// OpenSSL loads such a key, but fails every verification.
		return nil, fmt.Errorf("opensslrsa: OpenSSL does not verify with keys of more than %d bits", C.OPENSSL_RSA_MAX_MODULUS_BITS)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("opensslrsa: %w", err)
	}
	var e C.ulong
	pkey := C.loadPublic((*C.uchar)(unsafe.Pointer(&der[0])), C.long(len(der)), &e)
	if pkey == nil {
		return nil, opensslError("reading the public key", e)
	}
	k := &PublicKey{c: &cKey{pkey: pkey, verify: 1, maxIdle: maxIdleVerifying}}
	runtime.AddCleanup(k, (*cKey).close, k.c)
	// A context now, so that a key OpenSSL will not use is refused here.
	ctx, err := k.c.context()
	if err != nil {
		return nil, err
	}
	k.c.done(ctx)
	return k, nil
}

// Verify reports whether sig is the PKCS#1 v1.5 signature of a SHA-256
// digest, as crypto/rsa.VerifyPKCS1v15 does.
func (k *PublicKey) Verify(digest, sig []byte) error {
	if len(digest) != crypto.SHA256.Size() || len(sig) == 0 {
		return errors.New("opensslrsa: verification error")
	}
	ctx, err := k.c.context()
	if err != nil {
		return err
	}
	r := C.verify(ctx, (*C.uchar)(unsafe.Pointer(&sig[0])), C.size_t(len(sig)), (*C.uchar)(unsafe.Pointer(&digest[0])), C.size_t(len(digest)))
	if r >= 0 {
		k.c.done(ctx)
	} else {
		C.EVP_PKEY_CTX_free(ctx) // as after a failed signature
	}
	runtime.KeepAlive(k) // its cleanup would free the contexts, not this one
	if r != 1 {
		return errors.New("opensslrsa: verification error")
	}
	return nil
}

// opensslError makes the error of a failed call from OpenSSL's error
// code e, or 1 if OpenSSL gave none.
func opensslError(doing string, e C.ulong) error {
	if e == 1 {
		return fmt.Errorf("opensslrsa: %s failed", doing)
	}
	var buf [256]C.char
	C.ERR_error_string_n(e, &buf[0], C.size_t(len(buf)))
	return fmt.Errorf("opensslrsa: %s: %s", doing, C.GoString(&buf[0]))
}
