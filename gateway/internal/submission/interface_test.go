package submission

import "github.com/sluice-mail/sluice/gateway/internal/smtpd"

// Users are what the submission session checks logins with; smtpd
// cannot be imported by the package itself without tying it to the
// server, so the test holds the promise.
var _ smtpd.Logins = (*Users)(nil)
