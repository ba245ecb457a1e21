package login

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// The argon2id parameters of new hashes: RFC 9106 §4's second
// recommended option (64 MiB, 3 passes, 4 lanes), a 16-byte salt and a
// 32-byte key.
const (
	argonMemory  = 64 * 1024 // KiB
	argonTime    = 3
	argonThreads = 4
	argonSaltLen = 16
	argonKeyLen  = 32
	// argonMaxMemory bounds what a hash in the configuration may ask for,
	// so that a typo cannot make each login take gigabytes.
	argonMaxMemory = 1024 * 1024 // KiB: 1 GiB
)

// HashArgon2id hashes a password with argon2id, in the PHC string format
// $argon2id$v=19$m=65536,t=3,p=4$salt$key (unpadded standard base64).
func HashArgon2id(password string) (string, error) {
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// HashBcrypt hashes a password with bcrypt at its default cost.
func HashBcrypt(password string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	return string(h), err
}

// Verify reports whether password matches hash, a bcrypt or an argon2id
// hash; the keys are compared in constant time.
func Verify(hash, password string) bool {
	if strings.HasPrefix(hash, "$argon2id$") {
		a, err := parseArgon2id(hash)
		if err != nil {
			return false
		}
		got := argon2.IDKey([]byte(password), a.salt, a.time, a.memory, a.threads, uint32(len(a.key)))
		return subtle.ConstantTimeCompare(got, a.key) == 1
	}
	return bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) == nil
}

// CheckHash says what is wrong with a hash from the configuration, nil if
// Verify can use it.
func CheckHash(hash string) error {
	if strings.HasPrefix(hash, "$argon2id$") {
		_, err := parseArgon2id(hash)
		return err
	}
	_, err := bcrypt.Cost([]byte(hash))
	return err
}

var errArgon2id = errors.New("not an argon2id hash in the PHC format $argon2id$v=19$m=...,t=...,p=...$salt$hash")

// argon2idHash is an argon2id hash taken apart.
type argon2idHash struct {
	memory, time uint32
	threads      uint8
	salt, key    []byte
}

func parseArgon2id(hash string) (argon2idHash, error) {
	var a argon2idHash
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return a, errArgon2id
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return a, fmt.Errorf("argon2id version %q: only v=%d is known", parts[2], argon2.Version)
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &a.memory, &a.time, &a.threads); err != nil || a.time == 0 || a.threads == 0 || a.memory < 8*uint32(a.threads) {
		return a, errArgon2id
	}
	if a.memory > argonMaxMemory {
		return a, fmt.Errorf("argon2id memory m=%d KiB is more than %d", a.memory, argonMaxMemory)
	}
	var err error
	b64 := base64.RawStdEncoding
	if a.salt, err = b64.DecodeString(parts[4]); err != nil || len(a.salt) < 8 {
		return a, errArgon2id
	}
	if a.key, err = b64.DecodeString(parts[5]); err != nil || len(a.key) < 16 {
		return a, errArgon2id
	}
	return a, nil
}
