package relay

import (
	"bytes"
	"net"
	"slices"
)

// wireData returns msg as DATA carries it (RFC 5321 §4.5.2), without its
// last CRLF, which the end-of-data marker brings back: a CR before every
// bare LF and a second dot at the start of every line that begins with
// one. It is msg itself when nothing needs changing, as for most mail.
//
// Not net/textproto's dot writer: that one copies a message a byte at a
// time through a 4 KiB buffer (a write to the socket per 4 KiB), and
// turns the LF of "\r\r\n" into another CRLF, changing a message after
// it was signed.
func wireData(msg []byte) []byte {
	return stuff(bytes.TrimSuffix(msg, []byte("\r\n")))
}

// wireParts is wireData for a message given in parts, such as a header
// (through its empty line) and a body, without joining them: a part that
// ends a line is stuffed on its own, since the next starts a line.
func wireParts(parts [][]byte) net.Buffers {
	parts = slices.DeleteFunc(slices.Clone(parts), func(p []byte) bool { return len(p) == 0 })
	out := make(net.Buffers, 0, len(parts))
	for i, p := range parts {
		if i == len(parts)-1 {
			return append(out, wireData(p))
		}
		if p[len(p)-1] != '\n' {
			// The next part continues this line: only joined can they
			// be stuffed right. Sluice's own headers end in CRLF.
			return append(out, wireData(bytes.Join(parts[i:], nil)))
		}
		out = append(out, stuff(p))
	}
	return append(out, wireData(nil))
}

// stuff returns msg with a second dot at the start of every line that
// begins with one and a CR before every bare LF: msg itself when nothing
// needs changing.
func stuff(msg []byte) []byte {
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
