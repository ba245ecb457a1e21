package srs

// The timestamp is the day number since the Unix epoch modulo 1024, written
// as two base32 characters (RFC 4648 alphabet, most significant first). It
// is read case-insensitively, as relays may change case.
const (
	base32Chars    = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	timestampSlots = 32 * 32
)

func timestamp(days int64) string {
	d := days % timestampSlots
	return string([]byte{base32Chars[d/32], base32Chars[d%32]})
}

func parseTimestamp(s string) (int64, bool) {
	if len(s) != 2 {
		return 0, false
	}
	var v int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' {
			c -= 'a' - 'A'
		}
		var d int64
		switch {
		case c >= 'A' && c <= 'Z':
			d = int64(c - 'A')
		case c >= '2' && c <= '7':
			d = int64(c-'2') + 26
		default:
			return 0, false
		}
		v = v*32 + d
	}
	return v, true
}

// ageDays is how many days ago a timestamp of stamp was made, given today's
// day number. The day count wraps every 1024 days, so a stamp that seems to
// be from the future was made before the last wrap; like libsrs2, we count
// it that way, which also makes genuinely future stamps very old.
func ageDays(today, stamp int64) int64 {
	now := today % timestampSlots
	if now < stamp {
		now += timestampSlots
	}
	return now - stamp
}
