package auth

import (
	"bytes"
	"strings"
	"testing"

	"github.com/sluice-mail/sluice/gateway/internal/dkim"
	"github.com/sluice-mail/sluice/gateway/internal/message"
	"github.com/sluice-mail/sluice/sdk/abi"
)

// FuzzStripForged runs arbitrary messages through what deliver does
// before anyone reads their header: line endings normalised, header split
// off, forged fields stripped. Then it reads what is left as the plugins
// read it (abi.ParseHeader) and as the DKIM and ARC code and the next hop
// read it (dkim.SplitMessage, with our Received field in front): neither
// may find an Authentication-Results field of our authserv-id or an
// X-Sluice-* field. Only whole fields are removed. Seeds:
// testdata/fuzz/FuzzStripForged.
func FuzzStripForged(f *testing.F) {
	const id = "mx.ours.test"
	// name as the reader sees it: abi.ParseHeader keeps it as written,
	// the DKIM code trims it.
	forged := func(name, value string) bool {
		return strings.EqualFold(name, "Authentication-Results") && strings.EqualFold(authServIDOf([]byte(name+":"+value)), id) ||
			len(name) > 9 && strings.EqualFold(name[:9], "X-Sluice-")
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		header, _ := message.Split(message.NormalizeLineEndings(msg))
		view := StripForged(message.ParseHeader(header), id)
		stripped := view.Bytes()

		// Only whole fields go, and in order.
		kept := message.Fields(stripped)
		i := 0
		for _, fl := range message.Fields(header) {
			if i < len(kept) && bytes.Equal(fl.Raw, kept[i].Raw) {
				i++
			}
		}
		if i != len(kept) {
			t.Fatalf("StripForged(%q) = %q: not a selection of its fields", header, stripped)
		}

		for _, h := range abi.ParseHeader(stripped) {
			if forged(h.Name, h.Value) {
				t.Fatalf("StripForged(%q) = %q: plugins see %s: %s", header, stripped, h.Name, h.Value)
			}
		}
		received := []byte("Received: from client by " + id + "\r\n")
		fields, _ := dkim.SplitMessage(append(received, stripped...))
		// And as signing reads it: the view with our fields on top.
		for _, fl := range append(fields, dkim.FieldsOf(view.Prepend(received))...) {
			_, value, isField := bytes.Cut(fl.Raw(), []byte(":"))
			if isField && forged(fl.Name(), string(value)) {
				t.Fatalf("StripForged(%q) = %q: the next hop sees %q", header, stripped, fl.Raw())
			}
		}
	})
}
