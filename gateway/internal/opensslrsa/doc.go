// Package opensslrsa signs and verifies RSA PKCS#1 v1.5 SHA-256 digests
// with the system's libcrypto (OpenSSL 3), which signs several times
// faster than crypto/rsa on CPUs with wide multiply instructions, and
// verifies with a key set up once rather than per signature. It is built
// only with the build tag openssl (and cgo); without it the package is
// empty and Sluice signs and verifies with crypto/rsa (RATIONALE.md, "RSA
// signing through OpenSSL").
package opensslrsa
