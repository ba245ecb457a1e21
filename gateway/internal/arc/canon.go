package arc

import (
	"bytes"
	"io"
	"strings"

	"github.com/sluice-mail/sluice/gateway/internal/dkim"
)

// The dkim package canonicalizes "relaxed", the only kind Sluice signs with
// and what nearly every sealer uses. An ARC-Message-Signature from elsewhere
// may still say c=simple, so verifying needs the "simple" forms too.

// selectFields returns the fields named in names chosen as RFC 6376 §5.4.2
// says (each occurrence of a name takes the next instance counting from the
// bottom), for "simple" header canonicalization, which hashes them as they
// are. It makes the same choice as dkim.AppendSignedHeaders, which
// TestSelectFieldsMatchesDKIM checks.
func selectFields(fields []dkim.HeaderField, names []string) []dkim.HeaderField {
	var out []dkim.HeaderField
	taken := make(map[string]int, len(names))
	for _, name := range names {
		skip := taken[name]
		taken[name]++
		for i := len(fields) - 1; i >= 0; i-- {
			if !strings.EqualFold(fields[i].Name(), name) {
				continue
			}
			if skip > 0 {
				skip--
				continue
			}
			out = append(out, fields[i])
			break
		}
	}
	return out
}

// simpleBody returns the "simple" canonical body (RFC 6376 §3.4.3): empty
// lines at the end removed, and a CRLF at the end, also of an empty body.
func simpleBody(body []byte) []byte {
	for bytes.HasSuffix(body, []byte("\r\n\r\n")) {
		body = body[:len(body)-2]
	}
	if bytes.HasSuffix(body, []byte("\r\n")) {
		return body
	}
	if len(body) == 0 {
		return []byte("\r\n")
	}
	return append(body[:len(body):len(body)], "\r\n"...)
}

// limitedWriter passes on the first left bytes written to it (all when left
// is negative) and counts down what is still missing: the l= tag.
type limitedWriter struct {
	w    io.Writer
	left int64
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	n := len(p)
	if l.left >= 0 {
		p = p[:min(int64(len(p)), l.left)]
		l.left -= int64(len(p))
	}
	l.w.Write(p)
	return n, nil
}
