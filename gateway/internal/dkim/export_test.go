package dkim

// Hashed is how many passes over the body b made to hash it: a test in
// package dkim_test, which may import arc, counts them after the checks
// and signatures of one message.
func Hashed(b *Body) int { return int(b.hashed.Load()) }
