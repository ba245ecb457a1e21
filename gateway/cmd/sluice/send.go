package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sluice-mail/sluice/gateway/internal/address"
)

// send is a small SMTP client for trying a gateway out: it sends one
// message and prints what the server answered to each step.
func send(_ context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("send", "usage: sluice send [flags] [message.eml]\n\nWith no file, a short message is generated; \"-\" reads it from standard input.\n\n", stderr)
	server := fs.String("server", "127.0.0.1:2525", "SMTP server `host:port`")
	from := fs.String("from", "alice@example.org", "envelope sender and From: `address`")
	to := fs.String("to", "info@your-domain.test", "recipient `addresses`, comma-separated")
	subject := fs.String("subject", "Hello from sluice send", "Subject: of the generated message")
	helo := fs.String("helo", "client.example.org", "`name` to say in EHLO")
	source := fs.String("source", "", "connect from this local `address` (any of 127.0.0.0/8 is local on Linux: try a listed client)")
	startTLS := fs.Bool("starttls", true, "use STARTTLS when offered (without verifying the certificate)")
	verbose := fs.Bool("v", false, "print the whole SMTP conversation")
	if err := parseFlags(fs, args, stdout); err != nil {
		return usageStatus(err)
	}
	var local net.Addr
	if *source != "" {
		ip := net.ParseIP(*source)
		if ip == nil {
			fmt.Fprintf(stderr, "sluice send: -source %q: want an IP address\n", *source)
			return 2
		}
		local = &net.TCPAddr{IP: ip}
	}
	rcpts := strings.Split(*to, ",")
	var msg []byte
	switch fs.Arg(0) {
	case "":
		msg = generateMessage(*from, rcpts, *subject)
	case "-":
		b, err := io.ReadAll(stdin)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		msg = b
	default:
		b, err := os.ReadFile(fs.Arg(0))
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		msg = b
	}

	c, err := dial(*server, local, *helo, *startTLS)
	if err != nil {
		fmt.Fprintf(stdout, "connect: %s\n", replyText(err))
		return 1
	}
	defer c.Close()
	if *verbose {
		c.DebugWriter = stdout
	}
	if _, ok := c.TLSConnectionState(); ok {
		fmt.Fprintln(stdout, "STARTTLS: encrypted")
	}
	opts := &smtp.MailOptions{UTF8: !address.IsASCII(*from) || !address.IsASCII(*to)}
	if err := c.Mail(*from, opts); err != nil {
		fmt.Fprintf(stdout, "MAIL FROM:<%s>: %v\n", *from, replyText(err))
		return 1
	}
	accepted := 0
	for _, r := range rcpts {
		if err := c.Rcpt(r, nil); err != nil {
			fmt.Fprintf(stdout, "RCPT TO:<%s>: %s\n", r, replyText(err))
			continue
		}
		fmt.Fprintf(stdout, "RCPT TO:<%s>: 250 accepted\n", r)
		accepted++
	}
	if accepted == 0 {
		c.Quit()
		return 1
	}
	w, err := c.Data()
	if err != nil {
		fmt.Fprintf(stdout, "DATA: %s\n", replyText(err))
		return 1
	}
	if _, err := w.Write(msg); err != nil {
		fmt.Fprintf(stdout, "DATA: %v\n", err)
		return 1
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		fmt.Fprintf(stdout, "DATA: %s\n", replyText(err))
		return 1
	}
	fmt.Fprintf(stdout, "DATA: 250 %s\n", resp.StatusText)
	c.Quit()
	return 0
}

func replyText(err error) string {
	if e, ok := err.(*smtp.SMTPError); ok {
		return fmt.Sprintf("%d %d.%d.%d %s", e.Code, e.EnhancedCode[0], e.EnhancedCode[1], e.EnhancedCode[2], e.Message)
	}
	return err.Error()
}

func generateMessage(from string, to []string, subject string) []byte {
	var id [8]byte
	rand.Read(id[:])
	domain := from[strings.LastIndexByte(from, '@')+1:]
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: <%s>\r\n", from)
	fmt.Fprintf(&b, "To: %s\r\n", "<"+strings.Join(to, ">, <")+">")
	fmt.Fprintf(&b, "Subject: %s\r\n", subject)
	fmt.Fprintf(&b, "Date: %s\r\n", time.Now().Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <%s@%s>\r\n", hex.EncodeToString(id[:]), domain)
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
	b.WriteString("This message was sent with `sluice send`.\r\n")
	return b.Bytes()
}

// dial connects and greets, with STARTTLS when asked for and offered.
// go-smtp's client can only start TLS before its first EHLO, so a server
// without STARTTLS costs a second connection.
func dial(server string, local net.Addr, helo string, startTLS bool) (*smtp.Client, error) {
	d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: local}
	conn, err := d.Dial("tcp", server)
	if err != nil {
		return nil, err
	}
	if startTLS {
		host, _, _ := net.SplitHostPort(server)
		c, err := smtp.NewClientStartTLS(conn, &tls.Config{ServerName: host, InsecureSkipVerify: true})
		if err == nil {
			return c, c.Hello(helo)
		}
		if conn, err = d.Dial("tcp", server); err != nil {
			return nil, err
		}
	}
	c := smtp.NewClient(conn)
	return c, c.Hello(helo)
}
