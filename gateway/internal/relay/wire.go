package relay

import "bytes"

// wireData returns msg as DATA carries it (RFC 5321 §4.5.2), without its
// last CRLF, which the end-of-data marker brings back: a CR before every
// bare LF and a second dot at the start of every line that begins with
// one. It is msg itself when nothing needs changing, as for most mail.
//
// It stands in for net/textproto's dot writer, which go-smtp's client
// uses: that one copies a message a byte at a time through a 4 KiB buffer
// (a write to the socket per 4 KiB), and turns the LF of "\r\r\n" into
// another CRLF, changing a message after it was signed.
func wireData(msg []byte) []byte {
	msg = bytes.TrimSuffix(msg, []byte("\r\n"))
	if !needsStuffing(msg) {
		return msg
	}
	out := make([]byte, 0, len(msg)+len(msg)/64+16)
	for len(msg) > 0 {
		if msg[0] == '.' {
			out = append(out, '.')
		}
		i := bytes.IndexByte(msg, '\n')
		if i < 0 {
			return append(out, msg...)
		}
		out = append(out, msg[:i]...)
		if i == 0 || msg[i-1] != '\r' {
			out = append(out, '\r')
		}
		out = append(out, '\n')
		msg = msg[i+1:]
	}
	return out
}

// needsStuffing reports whether a line of msg begins with a dot or ends
// in a bare LF.
func needsStuffing(msg []byte) bool {
	if len(msg) > 0 && msg[0] == '.' {
		return true
	}
	for i := bytes.IndexByte(msg, '\n'); i >= 0; {
		if i == 0 || msg[i-1] != '\r' || (i+1 < len(msg) && msg[i+1] == '.') {
			return true
		}
		next := bytes.IndexByte(msg[i+1:], '\n')
		if next < 0 {
			break
		}
		i += 1 + next
	}
	return false
}
