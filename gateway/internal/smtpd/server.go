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

	"github.com/sluice-mail/sluice/gateway/internal/arc"
	"github.com/sluice-mail/sluice/gateway/internal/auth"
	"github.com/sluice-mail/sluice/gateway/internal/dkim"
	"github.com/sluice-mail/sluice/gateway/internal/relay"
	"github.com/sluice-mail/sluice/gateway/internal/srs"
)

// Config is the inbound side's own settings.
type Config struct {
	Hostname            string
	Domains             []string // the custom domains, normalised (lower-case ASCII)
	SRSDomain           string
	MaxMessageSize      int64
	MaxRecipients       int
	MaxErrors           int // refusals of MAIL and RCPT before the session ends with 421; 0: no limit
	MaxConnections      int
	MaxConnectionsPerIP int
	CommandTimeout      time.Duration
	DataTimeout         time.Duration
	StressTimeout       time.Duration // for each read of every session while the gateway is full (limits.go); 0: none
	MaxLineLength       int
	MaxHops             int
	MaxHeaderFields     int         // 0: no limit
	TLS                 *tls.Config // nil: no STARTTLS

	// RejectBareLineEndings refuses a message with a CR or LF outside a
	// CRLF, instead of turning each into CRLF (deliver.go).
	RejectBareLineEndings bool

	Scoring Scoring // what findings add up to (deliver.go)
}

// Parts are the pieces a session hands mail to.
type Parts struct {
	// Chains holds the filter chain; each session uses the generation that
	// was current when it started.
	Chains *Chains
	Relay  *relay.Relay
	SRS    *srs.Rewriter
	Signer *dkim.Signer // nil: forward unsigned
	// Auth checks incoming mail; nil: no checks, no Authentication-Results.
	Auth *auth.Checker
	// Seal seals forwarded mail with ARC; nil: no sealing. It needs Auth,
	// whose ARC verification says which instance comes next.
	Seal   *arc.SealConfig
	Logger *slog.Logger
	// Metrics receives the server's counters; nil: they are counted but
	// registered nowhere.
	Metrics prometheus.Registerer
}

// Server accepts SMTP connections.
type Server struct {
	cfg     Config
	parts   Parts
	domains map[string]bool
	smtp    *smtp.Server
	limits  *limiter // shared by every listener
	log     *slog.Logger
	metrics *serverMetrics
	buffers buffers // for reading messages
	headers buffers // for making the headers of forwarded messages: kept apart, so a header never holds a message-sized buffer

	// ctx is cancelled on Close, ending relay work of sessions in flight.
	ctx    context.Context
	cancel context.CancelFunc

	mu        sync.Mutex
	listeners []net.Listener
}

// New makes a server; Serve starts it on a listener.
func New(cfg Config, parts Parts) (*Server, error) {
	if cfg.Hostname == "" || len(cfg.Domains) == 0 {
		return nil, errors.New("smtpd: a hostname and at least one domain are needed")
	}
	if parts.Chains == nil || parts.Relay == nil || parts.SRS == nil {
		return nil, errors.New("smtpd: chain, relay and SRS are needed")
	}
	if parts.Seal != nil && parts.Auth == nil {
		return nil, errors.New("smtpd: ARC sealing needs the authentication checks")
	}
	if parts.Logger == nil {
		parts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Server{cfg: cfg, parts: parts, domains: map[string]bool{}, log: parts.Logger, metrics: newServerMetrics(parts.Metrics),
		limits: newLimiter(cfg.Hostname, cfg.MaxConnections, cfg.MaxConnectionsPerIP, cfg.StressTimeout, parts.Logger)}
	for _, d := range cfg.Domains {
		s.domains[d] = true
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())

	srv := smtp.NewServer(smtp.BackendFunc(s.newSession))
	srv.Domain = cfg.Hostname
	srv.MaxMessageBytes = cfg.MaxMessageSize
	srv.MaxRecipients = cfg.MaxRecipients
	srv.MaxLineLength = cfg.MaxLineLength
	srv.ReadTimeout = cfg.CommandTimeout
	srv.WriteTimeout = cfg.CommandTimeout
	srv.EnableSMTPUTF8 = true
	srv.TLSConfig = cfg.TLS
	srv.ErrorLog = slogLogger{s.log}
	s.smtp = srv
	return s, nil
}

// Serve accepts connections on l until Close. Connections over the
// configured limits, which count the connections of every listener
// together, are answered 421 and closed.
func (s *Server) Serve(l net.Listener) error {
	ll := &limitListener{Listener: l, limiter: s.limits}
	s.mu.Lock()
	s.listeners = append(s.listeners, ll)
	s.mu.Unlock()
	err := s.smtp.Serve(ll)
	if errors.Is(err, net.ErrClosed) || errors.Is(err, smtp.ErrServerClosed) {
		return nil
	}
	return err
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

// slogLogger lets go-smtp's own error log go to ours.
type slogLogger struct{ l *slog.Logger }

func (s slogLogger) Printf(format string, v ...any) {
	s.l.Debug("smtp", "detail", fmt.Sprintf(format, v...))
}
func (s slogLogger) Println(v ...any) { s.l.Debug("smtp", "detail", fmt.Sprint(v...)) }
