package dmarc

import (
	"slices"
	"strings"
	"testing"

	"github.com/sluice-mail/sluice/gateway/internal/message"
)

// header builds a header block from lines, each ending in CRLF.
func header(lines ...string) []byte {
	return []byte(strings.Join(lines, "\r\n") + "\r\n")
}

func TestFromDomain(t *testing.T) {
	for _, c := range []struct {
		name   string
		header []byte
		want   string
	}{
		{"bare address", header("From: alice@example.org"), "example.org"},
		{"angle brackets", header("From: <alice@example.org>"), "example.org"},
		{"display name", header(`From: "Alice, the first" <alice@Mail.Example.ORG>`), "mail.example.org"},
		{"comment", header("From: alice@example.org (Alice)"), "example.org"},
		{"folded", header("Subject: hi", "From: Alice", " <alice@example.org>", "To: b@example.net"), "example.org"},
		{"field name case", header("FROM : alice@example.org"), "example.org"},
		{"encoded word", header("From: =?UTF-8?B?w4FsaWNl?= <alice@example.org>"), "example.org"},
		{"encoded word, unknown charset", header("From: =?x-unknown?Q?Alice?= <alice@example.org>"), "example.org"},
		{"group of one", header("From: Team: alice@example.org;"), "example.org"},
		{"U-label domain", header("From: Ålice <ålice@Bücher.example>"), "xn--bcher-kva.example"},
		{"A-label domain", header("From: alice@XN--BCHER-KVA.example"), "xn--bcher-kva.example"},
		{"Resent-From is not From", header("Resent-From: x@other.test", "From: alice@example.org"), "example.org"},
		// No field name, but DKIM reads it as From (and signs it so).
		{"form feed after the name", header("From\f: alice@example.org"), "example.org"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := FromDomain(message.ParseHeader(c.header))
			if err != nil || got != c.want {
				t.Fatalf("FromDomain = %q, %v; want %q", got, err, c.want)
			}
		})
	}
}

func TestFromDomainErrors(t *testing.T) {
	for _, c := range []struct {
		name   string
		header []byte
		want   string // part of the error
	}{
		{"missing", header("To: bob@example.net"), "no From field"},
		{"two fields", header("From: a@example.org", "From: b@example.org"), "2 From fields"},
		// A second From that DKIM and a lenient next hop read as one.
		{"two fields, one with a vertical tab", header("From: a@example.org", "From\v: b@bank.test"), "2 From fields"},
		{"two fields, one with a vertical tab before", header("\vFROM: b@bank.test", "From: a@example.org"), "2 From fields"},
		{"two addresses", header("From: a@example.org, b@example.net"), "2 addresses"},
		{"two addresses in a group", header("From: Team: a@example.org, b@example.org;"), "2 addresses"},
		{"empty group", header("From: undisclosed-recipients:;"), "no address"},
		{"empty", header("From:  "), "empty"},
		{"no domain", header("From: alice"), "not an address list"},
		{"domain literal", header("From: alice@[192.0.2.1]"), "address literal"},
		{"bad label", header("From: alice@exa_mple.org"), "bad domain"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := FromDomain(message.ParseHeader(c.header))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("FromDomain = %q, %v; want an error saying %q", got, err, c.want)
			}
		})
	}
}

// FromAddresses takes every address of every From field, and fails only
// when there is none, or a field is not an address list.
func TestFromAddresses(t *testing.T) {
	for _, c := range []struct {
		header string
		want   []string
		err    string
	}{
		{"From: Info <info@custom.test>\r\n", []string{"info@custom.test"}, ""},
		{"From: a@x.test, \"B\" <b@y.test>\r\nSubject: s\r\n", []string{"a@x.test", "b@y.test"}, ""},
		{"From: a@x.test\r\nFrom: b@y.test\r\n", []string{"a@x.test", "b@y.test"}, ""},
		{"From: me@x.test\r\nFrom\v: boss@y.test\r\n", []string{"me@x.test", "boss@y.test"}, ""},
		{"Subject: s\r\n", nil, "no From field"},
		{"From: \r\n", nil, "not an address list"},
		{"From: not an address\r\n", nil, "not an address list"},
	} {
		got, err := FromAddresses(message.ParseHeader([]byte(c.header)))
		if !slices.Equal(got, c.want) || (err == nil) != (c.err == "") || err != nil && !strings.Contains(err.Error(), c.err) {
			t.Errorf("FromAddresses(%q) = %q, %v; want %q, %q", c.header, got, err, c.want, c.err)
		}
	}
}
