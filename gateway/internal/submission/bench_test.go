package submission

import (
	"testing"
)

// What a login costs: an argon2id verification (64 MiB), a bcrypt one,
// and one the cache answers.
func BenchmarkAuthenticate(b *testing.B) {
	u := newUsers(b, Config{}, nil)
	for _, c := range []struct{ name, user, password string }{
		{"argon2id", "alice", "alice-pw"},
		{"bcrypt", "bob", "bob-pw"},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				u.cache = must(newCache(u.now)) // empty: every login verified
				if err := u.Authenticate(ctx, ip("192.0.2.1"), c.user, c.password); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("cached", func(b *testing.B) {
		u.Authenticate(ctx, ip("192.0.2.1"), "alice", "alice-pw")
		for b.Loop() {
			if err := u.Authenticate(ctx, ip("192.0.2.1"), "alice", "alice-pw"); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
