package smtpd

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sluice-mail/sluice/gateway/internal/address"
	"github.com/sluice-mail/sluice/gateway/internal/auth"
	"github.com/sluice-mail/sluice/gateway/internal/plugin"
	"github.com/sluice-mail/sluice/gateway/internal/relay"
	"github.com/sluice-mail/sluice/sdk/abi"
)

// session is one SMTP connection, from HELO to QUIT.
type session struct {
	srv      *Server
	conn     *smtp.Conn
	id       string
	clientIP netip.Addr
	name     *clientName // the client's verified name, looked up from the start
	started  time.Time
	txn      transaction
	errors   int // refusals of MAIL and RCPT that count against the client
	failures int // refusals of MAIL and RCPT of every kind but 452 4.5.3
	txns     int // transactions recorded so far, which numbers their records
	// user is who logged in, on the submission service (submission.go).
	user string

	// gen is the generation of parts (chain, relay, keys, settings) this
	// session started on and keeps to its end, whatever reloads happen
	// meanwhile.
	gen  *Generation
	done sync.Once // gives gen back, once, at the end
	// first says the session is the connection's first, which counts it:
	// after STARTTLS go-smtp starts another on the same connection.
	first bool

	// mu guards the session's state. With BDAT, go-smtp calls Data on a
	// goroutine of its own and goes on reading commands: RSET, or a closed
	// connection, resets the session while Data waits for the message.
	// Data does not hold mu while it reads, so that a Logout from the
	// server's Close is never stuck behind a client that sends nothing.
	mu sync.Mutex
}

// transaction is one MAIL FROM ... DATA exchange.
type transaction struct {
	from      string // as the client gave it; "" for the null reverse-path
	mailOpts  *smtp.MailOptions
	srsFrom   string   // the rewritten sender used towards the destination
	rcpts     []string // every recipient accepted, as given
	forwards  []forward
	discarded []string
	destDom   string     // the one destination domain relayed to in session
	relay     *relay.Txn // open towards destDom once a recipient is forwarded
	remote    string     // the destination host used, for the log
	changes   changes
	verdicts  []verdict
	spf       *auth.SPF // running from MAIL FROM on
	// fromDomains are the domains of the From field of submitted mail,
	// whose keys sign it.
	fromDomains []string
	started     time.Time

	// Destinations not relayed in session, with a queue (destinations.go).
	queued   []forward // to be queued at DATA
	queueAll bool      // QueueAll found several domains: nothing is relayed in session
	queueIDs []string  // what Enqueue named the queued messages, for the log

	// What was decided, for the transaction's log line and the recipient
	// counts, written once when the transaction ends (log.go).
	decisions []decision      // each recipient asked for, in order
	dropReply *smtp.SMTPError // the reply of the first plugin that dropped a recipient
	result    *smtp.SMTPError // the reply to a refused MAIL, or to DATA; nil before
	resultBy  decider         // who gave result
	data      bool            // result is the reply to DATA
	dropped   bool            // result is the 250 for a message dropped whole
	size      int             // of the message, once read

	// For the transaction's record (activity.go), read at DATA only
	// when there is a store to record in.
	messageID, subject string
	auth               *abi.Auth
}

// verdict is one plugin's answer at one stage, for the message's log line.
type verdict struct {
	stage abi.Stage
	plugin.Record
}

type forward struct {
	rcpt   string // as the client gave it
	dest   string // where it goes
	domain string // dest's domain, for a queued one
}

// changes are what plugins asked for at any stage of the transaction,
// applied to the message once, after the data stage.
type changes struct {
	add        []abi.Header
	remove     []string
	quarantine string
}

func (c *changes) merge(o plugin.Outcome) {
	c.add = append(c.add, o.AddHeaders...)
	c.remove = append(c.remove, o.RemoveHeaders...)
	if o.Quarantine != "" && c.quarantine == "" {
		c.quarantine = o.Quarantine
	}
}

// newSession runs when the client first says HELO or EHLO, which is when
// go-smtp creates a session: the connect and helo stages run here.
// The session holds the generation current at this moment until Logout.
func (s *Server) newSession(c *smtp.Conn) (smtp.Session, error) {
	growStack() // at once, while the stack is shallow: see sessionStack
	gen := s.gens.Acquire()
	if gen == nil {
		return nil, &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "Shutting down, try again later"}
	}
	sess := &session{srv: s, conn: c, id: newID(), clientIP: remoteIP(c.Conn()), started: time.Now(), gen: gen}
	sess.name = lookupClientName(s.ctx, gen.DNS, gen.ClientNameTimeout, sess.clientIP)
	for _, st := range []abi.Stage{abi.StageConnect, abi.StageHelo} {
		out := sess.run(st, "")
		if out.Action == abi.Reject || out.Action == abi.Tempfail {
			gen.Release()
			s.log.Info("session refused", "session", sess.id, "client", sess.clientIP, "stage", st.String(),
				"reply", replyText(out.Reply), "decided_by", pluginDecider(out).String())
			return nil, out.Reply
		}
	}
	// After STARTTLS go-smtp ends the session and starts another on the
	// same connection: that is not a new client. A connection in TLS
	// from its first byte (ServeTLS) is.
	if _, tls := c.TLSConnectionState(); !tls || implicitTLS(c.Conn()) {
		sess.first = true
		s.metrics.sessions.Inc()
	}
	s.metrics.openSessions.Add(1)
	return sess, nil
}

// end gives the session's generation back. go-smtp may call Logout
// from another goroutine when the server closes, so it runs once.
func (s *session) end() {
	s.done.Do(func() {
		s.gen.Release()
		s.srv.metrics.openSessions.Add(-1)
		if s.first {
			// go-smtp upgrades the connection before it ends the
			// session that said STARTTLS, so a client that started TLS
			// counts with its version, once.
			state, _ := s.conn.TLSConnectionState()
			s.srv.metrics.tlsUsed("inbound", state.Version)
		}
	})
}

// newID names a session. Nodes sharing one activity store name their
// transactions by it for the retention (30 days by default): 64 random
// bits keep the chance that two sessions of a busy cluster meet
// negligible, where 48 did not (and the store keeps the first record of
// an id only).
func newID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// request describes the session and transaction so far to the plugins.
// It is built only for a stage some plugin handles, so that only then does
// the session wait for the client's name.
func (s *session) request(st abi.Stage, rcpt string) *abi.Request {
	_, tls := s.conn.TLSConnectionState()
	r := &abi.Request{
		Stage:     st,
		SessionID: s.id,
		ClientIP:  s.clientIP.String(),
		Helo:      s.conn.Hostname(),
		TLS:       tls,
		MailFrom:  s.txn.from,
		Rcpts:     s.txn.rcpts,
		Rcpt:      rcpt,

		AuthenticatedUser: s.user,
	}
	r.ClientName, r.ClientNameResult = s.name.wait(s.srv.ctx)
	if s.txn.mailOpts != nil {
		r.UTF8 = s.txn.mailOpts.UTF8
	}
	// What plugins found so far, as score adds it up; the chain adds what
	// the plugins of this stage find as it goes.
	for _, v := range s.txn.verdicts {
		if len(v.Findings) > 0 {
			r.Findings = abi.AddFindings(r.Findings, v.Name, v.Findings)
		}
	}
	return r
}

func (s *session) run(st abi.Stage, rcpt string) plugin.Outcome {
	if !s.chain().Handles(st) {
		return plugin.Outcome{} // no plugin at this stage: nothing to ask or time
	}
	return s.runRequest(s.request(st, rcpt), nil)
}

// runRequest runs the chain at a stage it handles; msg is the message at
// the data stage, nil before.
func (s *session) runRequest(req *abi.Request, msg *plugin.Message) plugin.Outcome {
	start := time.Now()
	out := s.chain().Run(s.srv.ctx, req, msg)
	s.srv.metrics.chainRun(req.Stage, time.Since(start), out.Verdicts)
	for _, r := range out.Verdicts {
		s.txn.verdicts = append(s.txn.verdicts, verdict{req.Stage, r})
	}
	return out
}

// Mail starts a transaction: the mail stage, then SRS.
func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endTxn()
	s.txn = transaction{from: from, mailOpts: opts, started: time.Now()}
	by, err := s.mail(from, opts)
	if err != nil {
		// A refused MAIL ends its transaction at once.
		s.txn.result, s.txn.resultBy = asSMTPError(err), by
		s.endTxn()
	}
	return s.refused(err)
}

func (s *session) mail(from string, opts *smtp.MailOptions) (decider, error) {
	if s.srv.cfg.Submission {
		if err := s.submissionMail(from); err != nil {
			return byHost, err
		}
	}
	if from != "" {
		if _, _, err := address.Split(from); err != nil {
			return byHost, &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 1, 7}, Message: fmt.Sprintf("Bad sender address <%s>", from)}
		}
		if !opts.UTF8 && !address.IsASCII(from) {
			return byHost, &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 6, 7}, Message: "Non-ASCII address without SMTPUTF8"}
		}
	}
	out := s.run(abi.StageMail, "")
	if out.Action == abi.Reject || out.Action == abi.Tempfail {
		return pluginDecider(out), out.Reply
	}
	s.txn.changes.merge(out)
	if s.srv.cfg.Submission {
		// The sender is one of ours: no SRS, and SPF is for mail from
		// outside.
		s.txn.srsFrom = from
		return decider{}, nil
	}
	// A sender whose domain alone is not ASCII is rewritten with its
	// A-labels: the rewritten address then needs no SMTPUTF8 (its local
	// part carries the domain).
	srsFrom, err := address.WithASCIIDomain(from)
	if err == nil {
		srsFrom, err = s.gen.SRS.Forward(srsFrom)
	}
	if err != nil {
		return byHost, &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 1, 7}, Message: fmt.Sprintf("Cannot rewrite sender <%s>: %v", from, err)}
	}
	s.txn.srsFrom = srsFrom
	if a := s.gen.Auth; a != nil {
		s.txn.spf = a.StartSPF(s.srv.ctx, s.clientIP, s.conn.Hostname(), from)
	}
	return decider{}, nil
}

// Rcpt decides one recipient: relay protection, then where it goes (an
// SRS bounce address, or the chain's destination), then the destination's
// own answer to it.
func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	by, err := s.rcpt(to)
	d := decision{rcpt: to, by: by}
	if err != nil {
		d.reply = asSMTPError(err)
	}
	s.txn.decisions = append(s.txn.decisions, d)
	return s.refused(err)
}

// rcpt decides one recipient and says who decided: a refusal's author, or
// for an accepted recipient the destination (forwarded) or the plugin
// that dropped it.
func (s *session) rcpt(to string) (decider, error) {
	if max := s.srv.cfg.MaxRecipients; max > 0 && len(s.txn.rcpts) >= max {
		// Counted here rather than by go-smtp, which would refuse before
		// the session hears of the recipient, so that the refusal is
		// logged and counted like any other. RFC 5321 §4.5.3.1.10: the
		// client sends the rest in another transaction.
		return byHost, &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 5, 3}, Message: fmt.Sprintf("Maximum limit of %d recipients reached", max)}
	}
	if !s.txn.utf8() && !address.IsASCII(to) {
		return byHost, &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 6, 7}, Message: "Non-ASCII address without SMTPUTF8"}
	}
	var bounceTo string
	if s.srv.cfg.Submission && s.user == "" {
		// Not reached (MAIL needs a login, RCPT needs MAIL), but the
		// only thing between anyone and an open relay: checked again.
		return byHost, &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	}
	if !s.srv.cfg.Submission {
		// A logged-in user may send anywhere: relay protection and SRS
		// bounces are the MX's.
		var err error
		if bounceTo, err = s.srv.localRecipient(to, s.gen.SRS); err != nil {
			return byHost, err
		}
	}
	out := s.run(abi.StageRcpt, to)
	switch out.Action {
	case abi.Reject, abi.Tempfail:
		return pluginDecider(out), out.Reply
	case abi.Discard:
		s.txn.changes.merge(out)
		s.txn.rcpts = append(s.txn.rcpts, to)
		s.txn.discarded = append(s.txn.discarded, to)
		if s.txn.dropReply == nil {
			s.txn.dropReply = out.Reply
		}
		return pluginDecider(out), nil
	}
	dests := out.Destinations
	if bounceTo != "" {
		// A bounce goes back to the sender it was sent for; no plugin
		// can redirect it.
		dests = []string{bounceTo}
	}
	if len(dests) == 0 && s.srv.cfg.Submission {
		// Submitted mail goes where it is addressed, unless a plugin
		// says otherwise.
		dests = []string{to}
	}
	if len(dests) == 0 {
		if len(out.Skipped) > 0 {
			// A plugin that failed may be the one that would have routed
			// it: refusing for good would bounce good mail for a failure
			// of ours.
			return decider{kind: deciderPlugin, plugin: out.Skipped[0]}, plugin.FailureReply(out.Skipped[0])
		}
		return byHost, &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: fmt.Sprintf("<%s>: no such recipient here", to)}
	}
	by, err := s.route(to, dests)
	if err != nil {
		return by, err
	}
	s.txn.changes.merge(out)
	s.txn.rcpts = append(s.txn.rcpts, to)
	return by, nil
}

// forwardTo adds a destination in domain to the transaction, opening the
// relay to its domain if this is the first, and passes on the
// destination's reply. A refusal is the host's own or the destination's,
// as it says.
func (s *session) forwardTo(rcpt, dest, domain string) (decider, error) {
	var err error
	for _, f := range s.txn.forwards {
		if f.dest == dest {
			// Already accepted by the destination in this transaction.
			s.txn.forwards = append(s.txn.forwards, forward{rcpt: rcpt, dest: dest})
			return byDestination, nil
		}
	}
	if s.txn.relay != nil && domain != s.txn.destDom {
		if len(s.txn.forwards) > 0 {
			// One reply to DATA must be true for every recipient, so one
			// transaction goes to one destination (RFC 5321 §3.3 lets a
			// server defer a recipient to the next transaction).
			return byHost, &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 5, 3}, Message: fmt.Sprintf("<%s>: send this recipient in a new transaction", rcpt)}
		}
		s.txn.relay.Close()
		s.txn.relay = nil
	}
	ctx := s.srv.ctx
	if s.txn.relay == nil {
		// Begin sends the first RCPT TO with MAIL FROM, pipelined.
		t, rcptErr, mailErr := s.gen.Relay.Begin(ctx, domain, s.txn.srsFrom, s.relayMailOptions(), dest)
		s.srv.metrics.relayReply("mail", mailErr)
		if mailErr != nil {
			return byDestination, mailErr
		}
		s.txn.relay, s.txn.destDom = t, domain
		err = rcptErr
	} else {
		err = s.txn.relay.Rcpt(ctx, dest)
	}
	s.srv.metrics.relayReply("rcpt", err)
	if err != nil {
		return byDestination, err
	}
	s.txn.forwards = append(s.txn.forwards, forward{rcpt: rcpt, dest: dest})
	return byDestination, nil
}

// relayMailOptions passes on what the destination must know about the
// message: its size and whether it needs SMTPUTF8.
func (s *session) relayMailOptions() *smtp.MailOptions {
	o := s.txn.mailOpts
	if o == nil {
		return &smtp.MailOptions{}
	}
	return &smtp.MailOptions{Size: o.Size, UTF8: o.UTF8, Body: o.Body}
}

func (t *transaction) utf8() bool { return t.mailOpts != nil && t.mailOpts.UTF8 }

// Data reads the message, runs the data stage, and relays it; the reply
// is the destination's.
func (s *session) Data(r io.Reader) error {
	if d := s.srv.cfg.DataTimeout; d > 0 {
		s.conn.Conn().SetReadDeadline(time.Now().Add(d))
	}
	s.mu.Lock()
	var hint int64
	if s.txn.mailOpts != nil {
		hint = s.txn.mailOpts.Size
	}
	s.mu.Unlock()
	buf := s.srv.buffers.get()
	defer s.srv.buffers.put(buf)
	msg, err := readMessage(r, hint, buf)
	if errors.Is(err, smtp.ErrDataReset) {
		// RSET or a closed connection in the middle of BDAT: the client
		// gave up this message, go-smtp answers for it, and Reset or
		// Logout ends the transaction.
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.closeRelay()
		switch _, isReply := err.(*smtp.SMTPError); {
		case errors.Is(err, smtp.ErrTooLongLine):
			// go-smtp reads nothing more after an overlong line, so the
			// session cannot go on; the message itself will never pass, so
			// the refusal is permanent.
			err = s.hangUp(&smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0},
				Message: fmt.Sprintf("Line longer than %d bytes in the message, closing connection", s.srv.cfg.MaxLineLength)})
		case !isReply:
			// The client stalled or vanished mid-message. Its session cannot
			// go on: whatever it sends later would be read as commands.
			err = s.hangUp(&smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 2},
				Message: s.srv.cfg.Hostname + " Timeout or error reading the message, closing connection"})
		}
		s.txn.result, s.txn.resultBy, s.txn.data = asSMTPError(err), byHost, true
		s.endTxn()
		return err
	}
	reply, by := s.deliver(msg)
	s.txn.result, s.txn.resultBy, s.txn.size, s.txn.data = reply, by, len(msg), true
	s.endTxn()
	return s.closing(reply)
}

// closing hangs up after a reply of 421, such as plugins/ratelimit's with
// code = 421: the code says the server closes the connection (RFC 5321
// §3.8), and go-smtp would otherwise keep reading commands.
func (s *session) closing(reply *smtp.SMTPError) *smtp.SMTPError {
	if reply != nil && reply.Code == 421 {
		return s.hangUp(reply)
	}
	return reply
}

// hangUp writes a final reply and closes the connection, for when the
// session cannot go on; go-smtp's own reply then goes nowhere. It returns
// the reply, for the log.
func (s *session) hangUp(reply *smtp.SMTPError) *smtp.SMTPError {
	conn := s.conn.Conn()
	conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	conn.Write(formatReply(reply))
	conn.Close()
	return reply
}

// refused counts a refusal of MAIL or RCPT. At max_errors of the
// client's errors the session ends with 421, as Postfix's
// smtpd_hard_error_limit does: a client probing for addresses or for a
// way to relay cannot go on forever. Transient failures of ours or the
// destination's are no error of the client's, but each still costs a
// plugin call or a connection to the destination, so they have a bound
// of their own: at failuresPerError times max_errors refusals of any kind
// the session ends the same way. A sending server that delivers its queue
// over one session during an outage is then told 421 only after that many
// deferred messages, and an abusive client cannot make us dial a dead
// destination or wait on a failing plugin without end.
func (s *session) refused(err error) error {
	if err == nil || isDeferral(err) {
		return err
	}
	if e, ok := err.(*smtp.SMTPError); ok && e.Code == 421 {
		return s.closing(e)
	}
	s.failures++
	if clientsError(err) {
		s.errors++
	}
	if max := s.srv.cfg.MaxErrors; max > 0 && (s.errors >= max || s.failures >= failuresPerError*max) {
		s.srv.log.Info("session ended: too many errors", "session", s.id, "client", s.clientIP, "errors", s.errors, "failures", s.failures, "last", err.Error())
		return s.hangUp(tooManyErrors(s.srv.cfg.Hostname))
	}
	return err
}

// failuresPerError is how many refusals of any kind a session may have
// for each error of max_errors: 100 with the default of 20.
const failuresPerError = 5

// isDeferral reports a recipient put off to the next transaction (452
// 4.5.3, one destination per transaction): the client did nothing wrong,
// and sends the recipient again in its next transaction, so it counts
// towards neither bound.
func isDeferral(err error) bool {
	e, ok := err.(*smtp.SMTPError)
	return ok && e.Code == 452 && e.EnhancedCode == smtp.EnhancedCode{4, 5, 3}
}

// clientsError reports whether a refusal counts against the client. A
// transient failure of a system on the way, ours or the destination's,
// does not, since the client did nothing wrong: RFC 3463's 4.3.x (mail
// system: a plugin that failed, as when its key-value store is down;
// queueing, signing) and 4.4.x (network and routing: a destination that
// cannot be reached). It goes by the code, not by who wrote it: a
// destination's own 4.3.x or 4.4.x reply, passed on, counts the same.
func clientsError(err error) bool {
	e, ok := err.(*smtp.SMTPError)
	if !ok {
		return true
	}
	transient := e.Code/100 == 4 && e.EnhancedCode[0] == 4 && (e.EnhancedCode[1] == 3 || e.EnhancedCode[1] == 4)
	return !transient
}

// Reset ends the transaction, keeping the session.
func (s *session) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endTxn()
}

// Logout runs the close stage, whose verdict has no one to go to, and
// ends the session.
func (s *session) Logout() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endTxn()
	s.run(abi.StageClose, "")
	s.end()
	return nil
}

// Make sure the session satisfies go-smtp's interface.
var _ smtp.Session = (*session)(nil)
