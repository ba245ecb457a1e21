package smtpd

import (
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-smtp"

	"github.com/sluice-mail/sluice/gateway/internal/address"
	"github.com/sluice-mail/sluice/gateway/internal/srs"
)

// maxAddressLength is RFC 5321's limit on a path (§4.5.3.1.3: 256 octets)
// less its angle brackets. Longer addresses are refused before any plugin
// sees them: no mail system delivers to them, and each plugin would
// otherwise have to guard against them.
const maxAddressLength = 254

func relayDenied(to string) error {
	return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: fmt.Sprintf("<%s>: relay access denied", to)}
}

// localRecipient is the host's relay protection, which no plugin can
// override: it accepts only plain addresses at our own domains or the SRS
// domain. For an SRS address it returns where the bounce goes.
//
// go-smtp has already dropped any source route (@a,@b:user@c) and
// unquoted a quoted local part, so "user@other"@ours arrives here as
// user@other@ours and is caught by the '@' test.
func (s *Server) localRecipient(to string, rw *srs.Rewriter) (bounceTo string, err error) {
	if len(to) > maxAddressLength {
		return "", &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 1, 3}, Message: fmt.Sprintf("Recipient address longer than %d octets", maxAddressLength)}
	}
	i := strings.LastIndexByte(to, '@')
	if i <= 0 {
		return "", relayDenied(to)
	}
	local := to[:i]
	// '%' and '!' are the old percent hack and bang paths: a host that
	// honoured them would relay to another domain.
	if strings.ContainsAny(local, "@%!") {
		return "", relayDenied(to)
	}
	domain, err := address.Domain(to[i+1:])
	if err != nil {
		return "", relayDenied(to)
	}
	if domain == s.cfg.SRSDomain && srs.IsSRS(to) {
		orig, err := rw.Reverse(to)
		if err != nil {
			return "", &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: fmt.Sprintf("<%s>: invalid SRS address: %s", to, srsReason(err))}
		}
		return orig, nil
	}
	if s.domains[domain] {
		return "", nil
	}
	if domain == s.cfg.SRSDomain {
		return "", &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: fmt.Sprintf("<%s>: no such recipient here", to)}
	}
	return "", relayDenied(to)
}

func srsReason(err error) string {
	switch {
	case errors.Is(err, srs.ErrExpired):
		return "expired"
	case errors.Is(err, srs.ErrBadHash):
		return "bad hash"
	default:
		return "malformed"
	}
}
