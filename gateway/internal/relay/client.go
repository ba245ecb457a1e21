package relay

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
)

// client speaks SMTP (RFC 5321) to one destination over one connection.
// Commands are queued in a write buffer and leave when flushed, so that a
// pipelined group (RFC 2920) is one write and one segment; replies are read
// through a buffer and parsed into their code and text.
//
// We use this rather than go-smtp's client because that one writes and
// waits for each command on its own, and sends every byte through debug
// plumbing: with the destination on the same network, those syscalls and
// wake-ups were most of the relay's cost per message.
type client struct {
	conn       net.Conn // TCP, or TLS once STARTTLS succeeded
	r          *bufio.Reader
	w          *bufio.Writer
	ext        map[string]string // EHLO keywords (upper case) and their parameters
	cmdTimeout time.Duration
}

const (
	// maxReplyLine bounds a reply line, CRLF included. RFC 5321
	// §4.5.3.1.5 says 512 octets; like go-smtp's client we accept more
	// (2000), as some servers exceed it.
	maxReplyLine = 2000
	// maxReplySize bounds a whole multi-line reply, so a destination that
	// never ends one cannot make us buffer without limit.
	maxReplySize = 64 << 10
	ioBufferSize = 4096
)

// endOfData ends the message after DATA (RFC 5321 §4.1.1.4): the CRLF that
// wireData takes off the message, then a line with a single dot.
var endOfData = []byte("\r\n.\r\n")

func newClient(conn net.Conn, cmdTimeout time.Duration) *client {
	return &client{
		conn:       conn,
		r:          bufio.NewReaderSize(conn, ioBufferSize),
		w:          bufio.NewWriterSize(conn, ioBufferSize),
		cmdTimeout: cmdTimeout,
	}
}

// command queues one command line; flush sends what is queued.
func (c *client) command(line string) {
	c.w.WriteString(line)
	c.w.WriteString("\r\n")
}

func (c *client) flush() error {
	c.conn.SetDeadline(time.Now().Add(c.cmdTimeout))
	return c.w.Flush()
}

// roundTrip sends the queued commands and reads one reply; see expect.
func (c *client) roundTrip(want int) (string, error) {
	if err := c.flush(); err != nil {
		return "", err
	}
	return c.expect(want)
}

// expect reads one reply and returns its text if its code is want (a code
// such as 354, or a class such as 2); otherwise the reply as an
// *smtp.SMTPError, or the error that kept it from being read.
func (c *client) expect(want int) (string, error) {
	c.conn.SetDeadline(time.Now().Add(c.cmdTimeout))
	code, text, err := c.readReply()
	if err != nil {
		return "", err
	}
	if code == want || code/100 == want {
		return text, nil
	}
	return "", parseReply(code, text)
}

// readReply reads one reply (RFC 5321 §4.2): its code and its text, the
// lines' texts joined with "\n". Bytes that are no reply (a bad code,
// lines with different codes, a line or reply too long) are an error:
// after them, replies can no longer be matched to commands.
func (c *client) readReply() (int, string, error) {
	code := 0
	var text []byte
	for {
		line, err := c.readLine()
		if err != nil {
			return 0, "", err
		}
		n, last, msg, ok := parseReplyLine(line)
		if !ok || (code != 0 && n != code) {
			return 0, "", fmt.Errorf("malformed reply: %q", truncate(string(line), 100))
		}
		if code == 0 && last {
			return n, string(msg), nil // most replies are one line
		}
		if code != 0 {
			text = append(text, '\n')
		}
		code = n
		text = append(text, msg...)
		if len(text) > maxReplySize {
			return 0, "", fmt.Errorf("reply longer than %d bytes", maxReplySize)
		}
		if last {
			return code, string(text), nil
		}
	}
}

// readLine returns the next line without its line ending. It is valid
// until the next read.
func (c *client) readLine() ([]byte, error) {
	line, err := c.r.ReadSlice('\n')
	if len(line) > maxReplyLine || errors.Is(err, bufio.ErrBufferFull) {
		return nil, fmt.Errorf("reply line longer than %d bytes", maxReplyLine)
	}
	if errors.Is(err, io.EOF) && len(line) > 0 {
		return nil, io.ErrUnexpectedEOF
	}
	if err != nil {
		return nil, err
	}
	line = line[:len(line)-1]
	return bytes.TrimSuffix(line, []byte("\r")), nil
}

// parseReplyLine splits "250-text", "250 text" or "250" into its code,
// whether it is the reply's last line, and its text.
func parseReplyLine(line []byte) (code int, last bool, text []byte, ok bool) {
	if len(line) < 3 || line[0] < '2' || line[0] > '5' || !isDigit(line[1]) || !isDigit(line[2]) {
		return 0, false, nil, false
	}
	code = int(line[0]-'0')*100 + int(line[1]-'0')*10 + int(line[2]-'0')
	if len(line) == 3 {
		return code, true, nil, true
	}
	switch line[3] {
	case ' ':
		return code, true, line[4:], true
	case '-':
		return code, false, line[4:], true
	}
	return 0, false, nil, false
}

func isDigit(b byte) bool { return b >= '0' && b <= '9' }

// greet reads the server's greeting.
func (c *client) greet() error {
	_, err := c.expect(220)
	return err
}

// hello says EHLO and records the extensions the server offers; a server
// that does not know EHLO (500, 502) gets HELO and is taken to offer none.
func (c *client) hello(name string) error {
	c.ext = nil
	c.command("EHLO " + name)
	text, err := c.roundTrip(2)
	if reply, ok := err.(*smtp.SMTPError); ok && (reply.Code == 500 || reply.Code == 502) {
		c.command("HELO " + name)
		_, err = c.roundTrip(2)
		return err
	}
	if err != nil {
		return err
	}
	c.ext = parseExtensions(text)
	return nil
}

// parseExtensions reads the keywords of an EHLO reply, one per line after
// the first, which is the server's name.
func parseExtensions(text string) map[string]string {
	ext := make(map[string]string)
	_, lines, _ := strings.Cut(text, "\n")
	for line := range strings.SplitSeq(lines, "\n") {
		keyword, params, _ := strings.Cut(line, " ")
		if keyword != "" {
			ext[strings.ToUpper(keyword)] = params
		}
	}
	return ext
}

// has reports whether the server offers an extension (upper case name).
func (c *client) has(ext string) bool {
	_, ok := c.ext[ext]
	return ok
}

// startTLS sends STARTTLS and, if the server agrees, makes the handshake
// and continues over TLS; the caller must then say EHLO again (RFC 3207
// §4.2). A refusal is an *smtp.SMTPError and leaves the connection usable
// in plaintext; a failed handshake is a *tlsHandshakeError.
func (c *client) startTLS(config *tls.Config) error {
	c.command("STARTTLS")
	if _, err := c.roundTrip(220); err != nil {
		return err
	}
	if c.r.Buffered() > 0 {
		// Bytes sent before the handshake would be read as if they had
		// come over TLS (the STARTTLS injection of CVE-2011-0411).
		return &tlsHandshakeError{errors.New("destination sent data before the handshake")}
	}
	tc := tls.Client(c.conn, config)
	c.conn.SetDeadline(time.Now().Add(c.cmdTimeout))
	if err := tc.Handshake(); err != nil {
		return &tlsHandshakeError{err}
	}
	c.conn = tc
	c.r.Reset(tc)
	c.w.Reset(tc)
	c.ext = nil
	return nil
}

// mail queues MAIL FROM with the parameters opts asks for, each only if
// the server offers its extension, as go-smtp's client does: BODY=8BITMIME
// whenever 8BITMIME is offered, SIZE, REQUIRETLS, SMTPUTF8, and DSN's RET
// and ENVID and AUTH. The caller checks beforehand that REQUIRETLS and
// SMTPUTF8 are offered when opts needs them.
func (c *client) mail(from string, opts *smtp.MailOptions) {
	c.w.WriteString("MAIL FROM:<")
	c.w.WriteString(from)
	c.w.WriteString(">")
	if c.has("8BITMIME") {
		c.w.WriteString(" BODY=8BITMIME")
	}
	if opts == nil {
		c.w.WriteString("\r\n")
		return
	}
	if opts.Size != 0 && c.has("SIZE") {
		c.w.WriteString(" SIZE=")
		c.w.WriteString(strconv.FormatInt(opts.Size, 10))
	}
	if opts.RequireTLS {
		c.w.WriteString(" REQUIRETLS")
	}
	if opts.UTF8 {
		c.w.WriteString(" SMTPUTF8")
	}
	if c.has("DSN") {
		if opts.Return == smtp.DSNReturnFull || opts.Return == smtp.DSNReturnHeaders {
			c.w.WriteString(" RET=" + string(opts.Return))
		}
		if opts.EnvelopeID != "" {
			c.w.WriteString(" ENVID=" + xtext(opts.EnvelopeID))
		}
	}
	if opts.Auth != nil && c.has("AUTH") {
		c.w.WriteString(" AUTH=" + xtext(*opts.Auth))
	}
	c.w.WriteString("\r\n")
}

// rcpt queues RCPT TO.
func (c *client) rcpt(to string) {
	c.w.WriteString("RCPT TO:<")
	c.w.WriteString(to)
	c.w.WriteString(">\r\n")
}

// xtext encodes a parameter value (RFC 3461 §4): anything but printable
// ASCII, "+" and "=" as "+" and two hex digits. Characters beyond ASCII
// are encoded byte by byte.
func xtext(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if ch := s[i]; ch >= '!' && ch <= '~' && ch != '+' && ch != '=' {
			b.WriteByte(ch)
		} else {
			fmt.Fprintf(&b, "+%02X", ch)
		}
	}
	return b.String()
}

// data sends DATA and, once the server answers 354, the message (as
// wireParts made it) and the end-of-data marker in one write, then returns
// the reply to the end of data, whatever its code. An error means no such
// reply was read: DATA got another answer (an *smtp.SMTPError), or the
// connection failed.
func (c *client) data(wire net.Buffers, timeout time.Duration) (int, string, error) {
	c.command("DATA")
	if _, err := c.roundTrip(354); err != nil {
		return 0, "", err
	}
	c.conn.SetDeadline(time.Now().Add(timeout))
	// One writev on TCP: the message is not copied.
	bufs := append(wire, endOfData)
	if _, err := bufs.WriteTo(c.conn); err != nil {
		return 0, "", err
	}
	return c.readReply()
}

// quit sends QUIT without waiting for the reply.
func (c *client) quit(timeout time.Duration) {
	c.conn.SetDeadline(time.Now().Add(timeout))
	c.command("QUIT")
	c.w.Flush()
}
