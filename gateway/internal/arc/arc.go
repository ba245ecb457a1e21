// Package arc verifies and adds Authenticated Received Chain sets (RFC 8617).
//
// Sluice forwards mail, which breaks SPF and often DKIM for the original
// sender. Verify reports whether the chain the message arrived with holds;
// Seal adds Sluice's own set (ARC-Seal, ARC-Message-Signature,
// ARC-Authentication-Results) so that the destination can see what Sluice
// found when the message reached it. Signatures are rsa-sha256 or
// ed25519-sha256 (RFC 8463); header selection, canonicalization and the
// writing of signature fields are the dkim package's.
package arc

import (
	"context"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/dkim"
)

// TXTLookup returns the TXT records at name, each record's strings joined.
// Errors are *net.DNSError.
type TXTLookup func(ctx context.Context, name string) ([]string, error)

// Chain validation status values (RFC 8617 §4.4), as in Result.CV and cv=.
const (
	CVNone = "none"
	CVPass = "pass"
	CVFail = "fail"
)

// maxInstances is the most ARC sets a message may carry (RFC 8617 §4.2.1).
const maxInstances = 50

// Result is what Verify found.
type Result struct {
	CV        string // CVNone, CVPass or CVFail: the chain validation status
	Instances int    // the number of ARC sets: the highest instance (i=) found
	// OldestPass is the lowest instance whose ARC-Message-Signature still
	// validates, when CV is pass (N when only the newest does, 1 when all
	// do); 0 otherwise. Note the RFC's A-R property header.oldest-pass
	// (RFC 8617 §5.2 step 5) counts differently: 0 there means all pass.
	OldestPass int
	Sealers    []Sealer // who added each set, instance 1 first
	Reason     string   // why the chain failed, for logs and A-R comments
}

// Sealer names the signer of one ARC-Seal.
type Sealer struct {
	Instance         int
	Domain, Selector string
}

// VerifyOptions are what Verify needs from outside.
type VerifyOptions struct {
	Lookup TXTLookup        // where public keys come from
	Now    func() time.Time // for x= expiry; nil means time.Now
	Keys   *dkim.KeyCache   // parsed keys kept across messages; nil = parse each time
}
