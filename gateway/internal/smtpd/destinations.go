package smtpd

import (
	"fmt"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sluice-mail/sluice/gateway/internal/address"
	"github.com/sluice-mail/sluice/gateway/internal/auth"
	"github.com/sluice-mail/sluice/gateway/internal/dmarc"
	"github.com/sluice-mail/sluice/gateway/internal/message"
	"github.com/sluice-mail/sluice/gateway/internal/queue"
	"github.com/sluice-mail/sluice/sdk/abi"
)

// A recipient may have several destinations (a router rule with a list
// `to`). One reply to DATA can only be true for one destination domain,
// so a transaction relays in session to one domain, as with a single
// destination, and with a queue (Config.Queue) the destinations in other
// domains are queued at DATA, once that domain has said 2xx
// (docs/queue.md, "What is queued, and what the sender's 250 means").

// route sends a recipient to its destinations: in session to the
// transaction's domain (the recipient's reply is that destination's),
// and with a queue, to the queue for the others. A recipient none of whose
// destinations is relayed in session is accepted as soon as it is routed,
// decided by the queue.
func (s *session) route(rcpt string, dests []string) (decider, error) {
	domains := make([]string, len(dests))
	for i, dest := range dests {
		d, err := s.destinationDomain(rcpt, dest)
		if err != nil {
			return byHost, err
		}
		domains[i] = d
	}
	if s.srv.cfg.Queue == nil {
		for _, d := range domains[1:] {
			if d != domains[0] {
				// Without a queue (smtpd used alone) there is no second
				// place for a copy to wait: the configuration is at fault,
				// and retrying helps once it is fixed.
				return byHost, &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 5},
					Message: fmt.Sprintf("<%s>: misconfigured destination: destinations in several domains need the queue", rcpt)}
			}
		}
		return s.forwardAll(rcpt, dests, domains)
	}
	session := s.txn.destDom
	if len(s.txn.forwards) == 0 {
		// Nothing relayed yet (a relay open for a destination that
		// refused is closed and opened again): this recipient's first
		// destination chooses.
		session = domains[0]
	}
	if s.srv.cfg.QueueAll && !s.txn.queueAll && s.severalDomains(session, domains) {
		s.queueEverything()
	}
	if s.txn.queueAll {
		session = ""
	}
	var here, there []int
	for i, d := range domains {
		if d == session {
			here = append(here, i)
		} else {
			there = append(there, i)
		}
	}
	by := byQueue
	if len(here) > 0 {
		var hereDests, hereDomains []string
		for _, i := range here {
			hereDests, hereDomains = append(hereDests, dests[i]), append(hereDomains, domains[i])
		}
		var err error
		if by, err = s.forwardAll(rcpt, hereDests, hereDomains); err != nil {
			// Refused in session: none of the recipient's copies is queued.
			return by, err
		}
	}
	for _, i := range there {
		s.queue(rcpt, dests[i])
	}
	return by, nil
}

// forwardAll relays a recipient's destinations in session; the first
// refusal is the recipient's reply.
func (s *session) forwardAll(rcpt string, dests, domains []string) (decider, error) {
	for i, dest := range dests {
		if by, err := s.forwardTo(rcpt, dest, domains[i]); err != nil {
			s.takeBack(rcpt)
			return by, err
		}
	}
	return byDestination, nil
}

// takeBack undoes what a refused recipient added to the relay's
// transaction: an earlier destination of it that said 250 to its RCPT
// must not get the message. SMTP cannot take one recipient back, so this
// is only possible while no other recipient is in the transaction: the
// relay is closed, and the next recipient opens it again. Otherwise that
// destination stays in (docs/queue.md: it gets the message with the
// others), and the log names it among the forwards.
func (s *session) takeBack(rcpt string) {
	if len(s.txn.forwards) == 0 {
		return
	}
	for _, f := range s.txn.forwards {
		if f.rcpt != rcpt {
			return
		}
	}
	s.closeRelay()
	s.txn.forwards, s.txn.destDom, s.txn.remote = nil, "", ""
}

// destinationDomain is where dest is, or the refusal of a destination the
// gateway cannot forward to.
func (s *session) destinationDomain(rcpt, dest string) (string, error) {
	_, domain, err := address.Split(dest)
	if err != nil {
		return "", &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 5}, Message: fmt.Sprintf("<%s>: misconfigured destination: %v", rcpt, err)}
	}
	// On the submission service, mail a user sends to one of our
	// domains goes to its MX, which routes it as any mail from outside.
	if s.srv.domains[domain] && !s.srv.cfg.Submission {
		return "", &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 4, 6}, Message: fmt.Sprintf("<%s>: routing loop: it forwards to a domain this gateway serves", rcpt)}
	}
	return domain, nil
}

// severalDomains reports whether the transaction, with a recipient's
// destinations in domains added, goes to more than one domain.
func (s *session) severalDomains(session string, domains []string) bool {
	seen := map[string]bool{}
	if len(s.txn.forwards) > 0 {
		seen[session] = true
	}
	for _, f := range s.txn.queued {
		seen[f.domain] = true
	}
	for _, d := range domains {
		seen[d] = true
	}
	return len(seen) > 1
}

// queueEverything turns the transaction to queue_all: what was to be
// relayed in session is queued instead. Its destination has only seen
// RCPT, so closing the relay delivers nothing there.
func (s *session) queueEverything() {
	s.txn.queueAll = true
	for _, f := range s.txn.forwards {
		s.queue(f.rcpt, f.dest)
	}
	s.txn.forwards = nil
	s.closeRelay()
	s.txn.destDom, s.txn.remote = "", ""
	for i := range s.txn.decisions {
		if d := &s.txn.decisions[i]; d.reply == nil && d.by == byDestination {
			d.by = byQueue
		}
	}
}

// queue adds a destination to be queued at DATA, once per recipient:
// two recipients that go to one mailbox are both kept, so that a DSN
// names each, and the queue's deliverer sends that mailbox one copy.
func (s *session) queue(rcpt, dest string) {
	for _, f := range s.txn.queued {
		if f.rcpt == rcpt && f.dest == dest {
			return
		}
	}
	_, domain, _ := address.Split(dest)
	s.txn.queued = append(s.txn.queued, forward{rcpt: rcpt, dest: dest, domain: domain})
}

// enqueue queues the message as it leaves (the forwarded header fwd, then
// body) for the queued destinations, one queue.Message per domain, each
// durable before it returns nil. On an error some may be queued already:
// the client is told 451 and sends again, and those destinations get the
// message twice (at least once, never lost).
func (s *session) enqueue(fwd, body []byte, report *auth.Report) error {
	data := make([]byte, 0, len(fwd)+len(body))
	data = append(append(data, fwd...), body...) // the buffers go back to their pools
	// A user who logged in is who they say: the sender of submitted mail
	// gets its DSNs.
	mayBounce := s.txn.from != "" && (s.srv.cfg.Submission || report != nil && senderAuthenticated(s.txn.from, report.Auth))
	var requireTLS bool
	if o := s.txn.mailOpts; o != nil {
		requireTLS = o.RequireTLS
	}
	arrived := time.Now()
	var order []string
	byDomain := map[string][]queue.Recipient{}
	for _, f := range s.txn.queued {
		if _, ok := byDomain[f.domain]; !ok {
			order = append(order, f.domain)
		}
		byDomain[f.domain] = append(byDomain[f.domain], queue.Recipient{Orig: f.rcpt, To: f.dest, Status: queue.Pending})
	}
	for _, domain := range order {
		tos := make([]string, len(byDomain[domain]))
		for i, r := range byDomain[domain] {
			tos[i] = r.To
		}
		m := &queue.Message{
			Kind:      queue.Forward,
			From:      s.txn.srsFrom,
			Sender:    s.txn.from,
			MayBounce: mayBounce,
			// The same rule the relay applies in session: a copy that
			// needs nothing of SMTPUTF8 may go to a destination without it.
			UTF8:       message.NeedsSMTPUTF8(s.txn.utf8(), s.txn.srsFrom, tos, fwd),
			RequireTLS: requireTLS,
			Recipients: byDomain[domain],
			Arrived:    arrived,
			ClientIP:   s.clientIP.String(),
			Helo:       s.conn.Hostname(),
			SessionID:  s.id,
			Data:       data,
		}
		if err := s.srv.cfg.Queue.Enqueue(s.srv.ctx, m); err != nil {
			s.srv.log.Error("queueing failed", "session", s.id, "domain", domain, "err", err)
			return err
		}
		s.txn.queueIDs = append(s.txn.queueIDs, m.ID)
	}
	return nil
}

// senderAuthenticated reports whether a DSN may go back to the envelope
// sender from: only if the sender is who it says, or anyone else's address
// would get our backscatter. SPF vouches for it; DMARC vouches for the
// From domain only, so it counts for a sender of the same organisation:
// otherwise anyone signing mail for a domain of their own could aim our
// DSNs at any address.
func senderAuthenticated(from string, a abi.Auth) bool {
	if a.SPF.Result == "pass" {
		return true
	}
	_, domain, err := address.Split(from)
	return err == nil && a.DMARC.Result == "pass" &&
		dmarc.OrganizationalDomain(domain) == dmarc.OrganizationalDomain(a.DMARC.FromDomain)
}

// queueFailed is the reply when a copy could not be queued. A destination
// relayed in session may have the message already: the client's retry
// gives it a second copy, which is better than losing the others.
func queueFailed() *smtp.SMTPError {
	return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Queueing failed, try again later"}
}

// queuedReply is the reply to DATA for a message every destination of
// which is queued.
func queuedReply(ids []string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "OK: queued as " + strings.Join(ids, ", ")}
}
