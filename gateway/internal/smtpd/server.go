// Package smtpd is Sluice's inbound SMTP side: the session a sending
// server talks to. For each recipient it asks the filter chain where the
// mail goes, opens the relay to that destination while the client waits,
// and answers with the destination's own replies. It accepts mail only
// for its own domains and the SRS domain: it is never an open relay,
// whatever a plugin says.
package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-mail/sluice/gateway/internal/activity"
	"github.com/sluice-mail/sluice/gateway/internal/plugin"
	"github.com/sluice-mail/sluice/gateway/internal/queue"
)

// Config is the inbound side's own settings.
type Config struct {
	Hostname            string
	Domains             []string // the custom domains, normalised (lower-case ASCII)
	SRSDomain           string
	MaxMessageSize      int64
	MaxRecipients       int // accepted per transaction; the next get 452 4.5.3 (session.go)
	MaxErrors           int // refusals of MAIL and RCPT before the session ends with 421; 0: no limit
	MaxConnections      int
	MaxConnectionsPerIP int
	CommandTimeout      time.Duration
	DataTimeout         time.Duration
	StressTimeout       time.Duration // for each read of every session while the gateway is full (limits.go); 0: none
	MaxLineLength       int
	MaxHops             int
	MaxHeaderFields     int // 0: no limit
	// STARTTLS offers STARTTLS, with the certificate of the generation
	// current at the handshake (Parts.TLS).
	STARTTLS bool

	// Submission makes the server the message submission service
	// (RFC 6409) rather than the MX: a client logs in (Parts.Logins)
	// over TLS before it may send, may send as its own addresses only,
	// to any recipient, and its mail leaves without SRS, signed with the
	// From domain's key. HideClient leaves the client out of Received.
	Submission bool
	HideClient bool

	// RejectBareLineEndings refuses a message with a CR or LF outside a
	// CRLF, instead of turning each into CRLF (deliver.go).
	RejectBareLineEndings bool

	// Queue takes what a session cannot settle itself (issue 12): copies
	// for destinations not relayed in session. QueueAll queues every
	// destination of a transaction whose destinations are in more than
	// one domain, instead of relaying the first in session.
	Queue    queue.Enqueuer
	QueueAll bool

	// Activity, if set, is given a record of every transaction for the
	// console (issue 13); RecordSubject says whether it holds subjects.
	Activity      activity.Recorder
	RecordSubject bool
	// Node names this gateway node in the records ([cluster] node):
	// nodes may share one store.
	Node string
	// DMARCReports, if set, records each message's DMARC evaluation for
	// the aggregate reports (dmarcrecord.go).
	DMARCReports DMARCRecorder

	Logger *slog.Logger
	// Metrics receives the server's counters; nil: they are counted but
	// registered nowhere.
	Metrics prometheus.Registerer
}

// Server accepts SMTP connections.
type Server struct {
	cfg     Config
	gens    *Generations // each session uses the one current at its start
	domains map[string]bool
	smtp    *smtp.Server
	limits  *limiter // shared by every listener
	log     *slog.Logger
	metrics *serverMetrics
	// noPlugins is the submission service's chain when the parts have
	// no SubmissionChain (smtpd used alone).
	noPlugins *plugin.Chain
	buffers   buffers // for reading messages
	headers   buffers // for making the headers of forwarded messages: kept apart, so a header never holds a message-sized buffer

	// ctx is cancelled on Close, ending relay work of sessions in flight.
	ctx    context.Context
	cancel context.CancelFunc

	mu        sync.Mutex
	listeners []net.Listener
}

// New makes a server whose sessions take their parts from gens; Serve
// starts it on a listener.
func New(cfg Config, gens *Generations) (*Server, error) {
	if cfg.Hostname == "" || len(cfg.Domains) == 0 {
		return nil, errors.New("smtpd: a hostname and at least one domain are needed")
	}
	if gens == nil {
		return nil, errors.New("smtpd: the parts are needed")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Submission && !cfg.STARTTLS {
		return nil, errors.New("smtpd: the submission service needs a certificate")
	}
	m := newServerMetrics(cfg.Metrics, cfg.Submission)
	s := &Server{cfg: cfg, gens: gens, domains: map[string]bool{}, log: cfg.Logger, metrics: m, noPlugins: plugin.NewChain(),
		limits: newLimiter(cfg.Hostname, cfg.MaxConnections, cfg.MaxConnectionsPerIP, cfg.StressTimeout, cfg.Logger, m.connsRefused)}
	for _, d := range cfg.Domains {
		s.domains[d] = true
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())

	srv := smtp.NewServer(smtp.BackendFunc(s.newSession))
	srv.Domain = cfg.Hostname
	srv.MaxMessageBytes = cfg.MaxMessageSize
	// MaxRecipients is left at 0: the session enforces it (rcpt), so
	// that the refusal is logged and counted.
	srv.MaxLineLength = cfg.MaxLineLength
	srv.ReadTimeout = cfg.CommandTimeout
	srv.WriteTimeout = cfg.CommandTimeout
	srv.EnableSMTPUTF8 = true
	if cfg.STARTTLS {
		// go-smtp's TLSConfig is fixed for the server's life; the
		// certificate is not: each handshake takes the current one.
		srv.TLSConfig = &tls.Config{GetConfigForClient: s.tlsConfig}
	}
	if cfg.Submission {
		// AUTH is let through in clear text so that the session refuses
		// it with RFC 4954's 538 rather than go-smtp's 523; it offers
		// no mechanism there (submission.go).
		srv.AllowInsecureAuth = true
	}
	srv.ErrorLog = slogLogger{s.log}
	s.smtp = srv
	return s, nil
}

// tlsConfig is the TLS configuration of the current generation, so that
// a renewed certificate serves the next handshake after a reload.
func (s *Server) tlsConfig(*tls.ClientHelloInfo) (*tls.Config, error) {
	gen := s.gens.Acquire()
	if gen == nil {
		return nil, errors.New("shutting down")
	}
	defer gen.Release()
	if gen.TLS == nil {
		return nil, errors.New("no certificate configured")
	}
	return gen.TLS, nil
}

// UseQueue gives the server the queue, which the gateway opens only when
// it serves (sluice check builds a server but never opens the queue: it
// is locked by the gateway running). Call it before Serve.
func (s *Server) UseQueue(q queue.Enqueuer) { s.cfg.Queue = q }

// UseActivity gives the server the console's store, which the gateway
// opens only when it serves, as the queue. Call it before Serve.
func (s *Server) UseActivity(a activity.Recorder) { s.cfg.Activity = a }

// Serve accepts connections on l until Close. Connections over the
// configured limits, which count the connections of every listener
// together, are answered 421 and closed.
func (s *Server) Serve(l net.Listener) error {
	var ll net.Listener = &limitListener{Listener: l, limiter: s.limits}
	if it, ok := l.(*implicitTLSListener); ok {
		ll = tls.NewListener(&limitListener{Listener: it.Listener, limiter: s.limits, implicitTLS: true},
			&tls.Config{GetConfigForClient: s.tlsConfig})
	}
	s.mu.Lock()
	s.listeners = append(s.listeners, ll)
	s.mu.Unlock()
	err := s.smtp.Serve(ll)
	if errors.Is(err, net.ErrClosed) || errors.Is(err, smtp.ErrServerClosed) {
		return nil
	}
	return err
}

// ServeTLS is Serve for a listener whose connections are in TLS from
// the first byte (implicit TLS, RFC 8314: port 465), with the
// certificate of the generation current at each handshake. TLS wraps the
// limits' connection, so that go-smtp sees it.
func (s *Server) ServeTLS(l net.Listener) error {
	return s.Serve(&implicitTLSListener{Listener: l})
}

// implicitTLSListener marks the connections it accepts as in TLS from the
// start; Serve puts TLS on them (the limits go first: a connection over
// them is refused before any handshake).
type implicitTLSListener struct{ net.Listener }

// implicitTLS reports whether c came in TLS from its first byte.
func implicitTLS(c net.Conn) bool {
	tc, ok := c.(*tls.Conn)
	if !ok {
		return false
	}
	lc, ok := tc.NetConn().(*limitedConn)
	return ok && lc.implicitTLS
}

// Shutdown stops accepting and waits for sessions to end, until ctx is
// done; then it closes them.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.smtp.Shutdown(ctx)
	if err != nil {
		s.cancel()
		s.smtp.Close()
	}
	s.cancel()
	return err
}

// chain is the session's filter chain.
func (s *session) chain() *plugin.Chain {
	if s.srv.cfg.Submission {
		if c := s.gen.SubmissionChain; c != nil {
			return c
		}
		return s.srv.noPlugins
	}
	return s.gen.Chain
}

// slogLogger lets go-smtp's own error log go to ours.
type slogLogger struct{ l *slog.Logger }

func (s slogLogger) Printf(format string, v ...any) {
	s.l.Debug("smtp", "detail", fmt.Sprintf(format, v...))
}
func (s slogLogger) Println(v ...any) { s.l.Debug("smtp", "detail", fmt.Sprint(v...)) }
