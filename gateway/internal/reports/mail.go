package reports

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/dkim"
	"github.com/sluice-mail/sluice/gateway/internal/message"
	"github.com/sluice-mail/sluice/gateway/internal/queue"
)

// mail is a report as a message: a short text part and the report.
type mail struct {
	to          []string
	subject     string
	id          string // the Report-ID, also the Message-ID
	text        string
	contentType string   // of the whole: multipart/mixed or multipart/report; ...
	extra       []string // more header fields, "Name: value"
	attachment  attachment
}

type attachment struct {
	contentType string
	filename    string
	data        []byte
}

func gzipped(data []byte) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write(data)
	w.Close()
	return b.Bytes()
}

// render makes m a message, CRLF line endings, signed when a signer is set.
func (r *Reports) render(m mail, now time.Time) ([]byte, error) {
	var boundary [12]byte
	rand.Read(boundary[:])
	bnd := "=_sluice_" + base64.RawURLEncoding.EncodeToString(boundary[:])
	var h bytes.Buffer
	h.Write(message.FormatField("From", r.cfg.From))
	h.Write(message.FormatField("To", strings.Join(m.to, ", ")))
	h.Write(message.FormatField("Date", now.Format(time.RFC1123Z)))
	h.Write(message.FormatField("Subject", m.subject))
	h.Write(message.FormatField("Message-ID", "<"+m.id+">"))
	for _, f := range m.extra {
		name, value, _ := strings.Cut(f, ": ")
		h.Write(message.FormatField(name, value))
	}
	h.Write(message.FormatField("MIME-Version", "1.0"))
	h.Write(message.FormatField("Content-Type", m.contentType+`; boundary="`+bnd+`"`))
	var b bytes.Buffer
	b.WriteString("--" + bnd + "\r\n")
	b.WriteString("Content-Type: text/plain; charset=us-ascii\r\n\r\n")
	b.WriteString(m.text)
	b.WriteString("\r\n--" + bnd + "\r\n")
	b.WriteString("Content-Type: " + m.attachment.contentType + "\r\n")
	b.WriteString("Content-Transfer-Encoding: base64\r\n")
	b.WriteString(`Content-Disposition: attachment; filename="` + m.attachment.filename + "\"\r\n\r\n")
	enc := base64.StdEncoding.EncodeToString(m.attachment.data)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n")
	b.WriteString("--" + bnd + "--\r\n")
	header := h.Bytes()
	if s := r.signer(); s != nil {
		sigs, err := s.SignParts(message.ParseHeader(header), dkim.NewBody(b.Bytes()))
		if err != nil {
			return nil, fmt.Errorf("DKIM: %w", err)
		}
		header = append(sigs, header...)
	}
	return append(append(header, "\r\n"...), b.Bytes()...), nil
}

// send enqueues m, one queued message per destination domain (the
// queue's messages go to one domain each).
func (r *Reports) send(ctx context.Context, kind string, m mail) error {
	now := r.cfg.Now()
	data, err := r.render(m, now)
	if err != nil {
		return err
	}
	byDomain := map[string][]queue.Recipient{}
	for _, to := range m.to {
		_, domain, _ := strings.Cut(to, "@")
		byDomain[domain] = append(byDomain[domain], queue.Recipient{Orig: to, To: to, Status: queue.Pending})
	}
	for _, domain := range sortedKeys(byDomain) {
		q := &queue.Message{Kind: queue.Report, TLSReport: kind == KindTLS, From: r.cfg.From, Recipients: byDomain[domain], Arrived: now, Data: data}
		if err := r.cfg.Queue.Enqueue(ctx, q); err != nil {
			return fmt.Errorf("enqueueing the %s report to %s: %w", kind, domain, err)
		}
		r.cfg.Logger.Info("reports: report queued", "kind", kind, "to", domain, "id", q.ID, "subject", m.subject)
		if r.cfg.Sent != nil {
			r.cfg.Sent(kind)
		}
	}
	return nil
}

// signer is the current DKIM signer, nil for none.
func (r *Reports) signer() *dkim.Signer {
	if r.cfg.Signer == nil {
		return nil
	}
	return r.cfg.Signer()
}
