package dmarc

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"strings"

	"github.com/sluice-mail/sluice/gateway/internal/address"
	"github.com/sluice-mail/sluice/gateway/internal/message"
)

// fromParser reads From fields. Display names are never used, so an encoded
// word in a charset Go does not know is passed through undecoded rather than
// failing the whole field.
var fromParser = mail.AddressParser{WordDecoder: &mime.WordDecoder{
	CharsetReader: func(_ string, input io.Reader) (io.Reader, error) { return input, nil },
}}

// FromDomain returns the domain of the RFC5322.From address in a header,
// in A-labels and lower case. RFC 7489 §6.6.1 leaves messages
// without exactly one From address to local policy; FromDomain reports them
// as errors, which the host turns into a DMARC permerror:
//
//	Result{Result: PermError, Reason: err.Error()}
func FromDomain(header *message.Header) (string, error) {
	from := fromFields(header)
	switch found := len(from); {
	case found == 0:
		return "", errors.New("the message has no From field")
	case found > 1:
		return "", fmt.Errorf("the message has %d From fields", found)
	}
	value := from[0].Value()
	if strings.TrimSpace(value) == "" {
		return "", errors.New("the From field is empty")
	}
	addrs, err := fromParser.ParseList(value)
	if err != nil {
		return "", fmt.Errorf("the From field is not an address list: %v", err)
	}
	switch len(addrs) {
	case 0:
		return "", errors.New("the From field has no address")
	case 1:
	default:
		return "", fmt.Errorf("the From field has %d addresses", len(addrs))
	}
	if strings.HasSuffix(addrs[0].Address, "]") {
		return "", fmt.Errorf("the From address %q has an address literal, not a domain", addrs[0].Address)
	}
	_, domain, err := address.Split(addrs[0].Address)
	if err != nil {
		return "", fmt.Errorf("the From address: %v", err)
	}
	return domain, nil
}

// fromFields returns the From fields of a header, top first: those named
// From, and those whose name is From once the other spaces around it (a
// vertical tab, a form feed) are gone. Such a name is no field name, but
// DKIM reads it so (it trims every space, as a lenient next hop may), and
// a DKIM signature over "from" covers it: were it not counted here, a
// second From could pass beside the one DMARC checked, or a submitted one
// beside the one the user may send as. auth.StripForged reads names alike.
func fromFields(header *message.Header) []message.Field {
	var from []message.Field
	for _, f := range header.Fields() {
		if n := strings.TrimSpace(f.Name); len(n) == 4 && strings.EqualFold(n, "From") {
			from = append(from, f)
		}
	}
	return from
}

// FromAddresses returns every address of the From fields of a header, as
// written. Unlike FromDomain it takes a From field with several
// addresses (RFC 5322 §3.6.2 allows them): the submission service checks
// that the user may send as each one.
func FromAddresses(header *message.Header) ([]string, error) {
	var addrs []string
	from := fromFields(header)
	found := len(from) > 0
	for _, f := range from {
		list, err := fromParser.ParseList(f.Value())
		if err != nil {
			return nil, fmt.Errorf("the From field is not an address list: %v", err)
		}
		for _, a := range list {
			addrs = append(addrs, a.Address)
		}
	}
	switch {
	case !found:
		return nil, errors.New("the message has no From field")
	case len(addrs) == 0:
		return nil, errors.New("the From field has no address")
	}
	return addrs, nil
}
