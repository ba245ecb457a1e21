// Package inbox is the capture inbox of dev mode: an SMTP server that
// accepts every message and stores it as a file, standing in for the real
// mailbox a gateway forwards to. It lets the demo and tests show what a
// destination receives without any internet.
package inbox

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
)

// Inbox receives mail on a listener and writes it to Dir.
type Inbox struct {
	Dir    string
	Logger *slog.Logger
	// TLS, when set, makes the inbox offer STARTTLS like a real MX.
	TLS *tls.Config

	seq  atomic.Uint64
	smtp *smtp.Server
}

// Serve accepts connections on l until Close.
func (in *Inbox) Serve(l net.Listener) error {
	if err := os.MkdirAll(in.Dir, 0o755); err != nil {
		return err
	}
	s := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &session{in: in, conn: c}, nil
	}))
	s.Domain = "inbox.local"
	s.EnableSMTPUTF8 = true
	s.TLSConfig = in.TLS
	s.ReadTimeout = time.Minute
	s.ErrorLog = nopLog{}
	in.smtp = s
	return s.Serve(l)
}

// Close stops the inbox.
func (in *Inbox) Close() error {
	if in.smtp == nil {
		return nil
	}
	return in.smtp.Close()
}

type session struct {
	in   *Inbox
	conn *smtp.Conn
	from string
	to   []string
}

func (s *session) Reset()        { s.from, s.to = "", nil }
func (s *session) Logout() error { return nil }
func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	s.from = from
	return nil
}
func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.to = append(s.to, to)
	return nil
}

// Data stores the message with the envelope on top, as a delivery agent
// would: Return-Path for the sender, Delivered-To for each recipient.
func (s *session) Data(r io.Reader) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "Return-Path: <%s>\r\n", s.from)
	for _, to := range s.to {
		fmt.Fprintf(&b, "Delivered-To: %s\r\n", to)
	}
	if _, err := b.ReadFrom(r); err != nil {
		return err
	}
	name := fmt.Sprintf("%s-%d.eml", time.Now().UTC().Format("20060102T150405.000000000"), s.in.seq.Add(1))
	path := filepath.Join(s.in.Dir, name)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b.Bytes(), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if s.in.Logger != nil {
		s.in.Logger.Info("inbox: message stored", "file", path, "from", s.from, "to", strings.Join(s.to, ","), "size", b.Len())
	}
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "Stored as " + name}
}

type nopLog struct{}

func (nopLog) Printf(string, ...any) {}
func (nopLog) Println(...any)        {}

// Messages lists the stored message files in the order they arrived.
func Messages(dir string) ([]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.eml"))
	return files, err
}
