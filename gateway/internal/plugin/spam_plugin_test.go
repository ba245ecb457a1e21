package plugin

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/dnstest"
	"github.com/sluice-mail/sluice/gateway/internal/wasmbuild"
	"github.com/sluice-mail/sluice/sdk/abi"
)

// spamZone is the DNS of the spam plugin's tests: a HELO name that
// resolves, and a URIBL zone that lists one domain.
const spamZone = `
mail.example.org. IN A 192.0.2.25
listed.example.uribl.test. IN A 127.0.0.2
`

// spamSpec is the real plugins/spam module, with the capabilities it
// needs and a URIBL zone.
func spamSpec(t testing.TB, config string) Spec {
	return Spec{
		Name:         "spam",
		Path:         wasmbuild.ForTest(t, "./plugins/spam"),
		Config:       []byte(config + "[[uribl]]\nzone = \"uribl.test\"\nsymbol = \"URIBL_TEST\"\nscore = 7.5\n"),
		Hostname:     "mx.example.test",
		Instances:    1,
		Capabilities: abi.CapHeaders | abi.CapBody | abi.CapDNS,
	}
}

// spamData is the data-stage request for a message from a client with the
// HELO and FCrDNS result given, as the gateway would send it.
func spamData(helo, fcrdns string) *abi.Request {
	return &abi.Request{
		Stage: abi.StageData, SessionID: "s1", ClientIP: "192.0.2.25", Helo: helo, ClientNameResult: fcrdns,
		MailFrom: "alice@example.org", Rcpts: []string{"info@example.test"}, Size: 4096,
		Auth: abi.Auth{SPF: abi.SPF{Result: "pass", Domain: "example.org"}},
	}
}

// zipBase64 is a zip archive of empty files with these names, in base64
// lines as mail carries it.
func zipBase64(t testing.TB, names ...string) string {
	var buf bytes.Buffer
	z := zip.NewWriter(&buf)
	for _, n := range names {
		if _, err := z.Create(n); err != nil {
			t.Fatal(err)
		}
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	s := base64.StdEncoding.EncodeToString(buf.Bytes())
	var b strings.Builder
	for len(s) > 76 {
		b.WriteString(s[:76] + "\r\n")
		s = s[76:]
	}
	return b.String() + s + "\r\n"
}

// spamMessage is a MIME message dated now: a non-ASCII Subject folded over
// many lines, a text and an HTML part with body, and a zip attachment
// holding files of these names.
func spamMessage(t testing.TB, from, subject, body string, files ...string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "From: %s\r\nTo: info@example.test\r\nDate: %s\r\nMessage-ID: <%d@example.org>\r\n",
		from, time.Now().Format(time.RFC1123Z), time.Now().UnixNano())
	b.WriteString("Subject: " + subject + "\r\n")
	b.WriteString("X-Long: " + strings.Repeat("folded header text ", 200) + "\r\n")
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"mix\"\r\n\r\n")
	b.WriteString("--mix\r\nContent-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n")
	b.WriteString("--alt\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
		"Caf=C3=A9 cr=C3=A8me: " + body + "\r\n")
	b.WriteString("--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>Café crème: " + body + "</p></body></html>\r\n--alt--\r\n")
	if len(files) > 0 {
		b.WriteString("--mix\r\nContent-Type: application/zip; name=\"docs.zip\"\r\nContent-Disposition: attachment; filename=\"docs.zip\"\r\n" +
			"Content-Transfer-Encoding: base64\r\n\r\n" + zipBase64(t, files...))
	}
	b.WriteString("--mix--\r\n")
	return []byte(b.String())
}

// The real plugins/spam module through the host's chain, with the
// gateway's DNS and a message read through the host functions: what it
// declares, its findings, the X-Spam fields, quarantine and reject.
func TestSpamPluginThroughChain(t *testing.T) {
	h := dnsHost(t, dnstest.Start(t, spamZone))
	p := load(t, h, spamSpec(t, "quarantine = 10\nreject = 20\n"))
	if p.Stages() != abi.StageSetOf(abi.StageData) {
		t.Errorf("spam is called at %s, want data only", stageList(p.Stages()))
	}
	if want := abi.MayAddHeaders | abi.MayRemoveHeaders | abi.MayQuarantine | abi.MayReject; p.Permissions() != want {
		t.Errorf("spam permissions = %b, want %b", p.Permissions(), want)
	}
	c := NewChain(p)
	ctx := context.Background()
	header := func(o Outcome, name string) string {
		for _, f := range o.AddHeaders {
			if f.Name == name {
				return f.Value
			}
		}
		return ""
	}
	symbols := func(o Outcome) []string {
		var s []string
		for _, f := range o.Findings {
			s = append(s, f.Symbol)
		}
		return s
	}

	// A clean message: nothing found but SPF's pass, an X-Spam-Flag: NO.
	clean := spamMessage(t, "Alice <alice@example.org>", "=?utf-8?Q?R=C3=A9union_jeudi?=", "see https://www.example.org/agenda", "agenda.pdf")
	o := c.Run(ctx, spamData("mail.example.org", "pass"), NewMessage(clean))
	if o.Action != abi.Continue || o.Quarantine != "" || !slices.Equal(symbols(o), []string{"R_SPF_ALLOW"}) ||
		header(o, "X-Spam-Flag") != "NO" || header(o, "X-Spam-Score") != "-0.2" {
		t.Errorf("clean: outcome %+v", o)
	}

	// A URIBL listing, a link to an address, an executable in the zip,
	// no reverse DNS and a HELO that does not exist: quarantined, the
	// Subject tagged.
	bad := spamMessage(t, "Alice <alice@example.org>", "=?utf-8?Q?Facture_impay=C3=A9e?=",
		"pay at https://www.listed.example/pay", "invoice.pdf.exe")
	o = c.Run(ctx, spamData("nowhere.example.org", "none"), NewMessage(bad))
	want := []string{"R_SPF_ALLOW", "RDNS_NONE", "HFILTER_HELO_NORES_A_OR_MX", "MIME_DOUBLE_BAD_EXTENSION", "URIBL_TEST"}
	if o.Action != abi.Continue || !strings.HasPrefix(o.Quarantine, "spam score 16.8 (URIBL_TEST=7.5, MIME_DOUBLE_BAD_EXTENSION=6") ||
		!slices.Equal(symbols(o), want) || header(o, "Subject") != "[SPAM] =?utf-8?Q?Facture_impay=C3=A9e?=" ||
		header(o, "X-Spam-Flag") != "YES" || !slices.Contains(o.RemoveHeaders, "Subject") {
		t.Errorf("quarantine: outcome %+v, symbols %v", o, symbols(o))
	}

	// More of it, and a forged display name: rejected, naming the top
	// symbols.
	worse := spamMessage(t, `"billing@bank.example" <x@mailer.example>`, "PAY YOUR INVOICE NOW",
		"pay at http://198.51.100.9/pay and https://www.listed.example/pay", "invoice.pdf.exe")
	o = c.Run(ctx, spamData("[198.51.100.9]", "none"), NewMessage(worse))
	if o.Action != abi.Reject || o.Reply == nil || o.Reply.Code != 550 || o.Reply.EnhancedCode != [3]int{5, 7, 1} ||
		!strings.HasPrefix(o.Reply.Message, "Message rejected as spam, score 29.8 (URIBL_TEST=7.5, SPOOF_DISPLAY_NAME=6, MIME_DOUBLE_BAD_EXTENSION=6, ...)") {
		t.Errorf("reject: outcome %+v, reply %+v", o, o.Reply)
	}
	if len(o.Verdicts) != 1 || o.Verdicts[0].Err != nil {
		t.Errorf("records %+v, want one clean record", o.Verdicts)
	}
}

// The built module acts on the total: a plugin before it in the chain
// that finds something pushes a message over its quarantine threshold,
// and its fields show the total; alone, the same message passes.
func TestSpamPluginWeighsEarlierFindings(t *testing.T) {
	h := dnsHost(t, dnstest.Start(t, spamZone))
	spam := load(t, h, spamSpec(t, "quarantine = 6\n"))
	listed := load(t, h, scriptedSpec(t, "dnsbl", "finding = \"DNSBL_LISTED\"\nfinding_score = 4\n"))
	ctx := context.Background()
	header := func(o Outcome, name string) string {
		for _, f := range o.AddHeaders {
			if f.Name == name {
				return f.Value
			}
		}
		return ""
	}
	// No reverse DNS and a zip with an executable: RDNS_NONE=2,
	// MIME_BAD_EXTENSION=4 and R_SPF_ALLOW=-0.2, 5.8 of its own.
	msg := spamMessage(t, "Alice <alice@example.org>", "=?utf-8?Q?Facture_impay=C3=A9e?=", "see the attachment", "setup.exe")
	alone := NewChain(spam).Run(ctx, spamData("mail.example.org", "none"), NewMessage(msg))
	if alone.Quarantine != "" || header(alone, "X-Spam-Score") != "5.8" || header(alone, "Subject") != "" {
		t.Fatalf("alone: outcome %+v, want 5.8 and no quarantine", alone)
	}
	c := NewChain(listed, spam)
	defer c.Close(ctx)
	o := c.Run(ctx, spamData("mail.example.org", "none"), NewMessage(msg))
	const symbols = "DNSBL_LISTED=4, MIME_BAD_EXTENSION=4, RDNS_NONE=2, R_SPF_ALLOW=-0.2"
	if o.Quarantine != "spam score 9.8 ("+symbols+")" || header(o, "Subject") != "[SPAM] =?utf-8?Q?Facture_impay=C3=A9e?=" ||
		header(o, "X-Spam-Score") != "9.8" || header(o, "X-Spam-Symbols") != symbols || header(o, "X-Spam-Flag") != "YES" {
		t.Errorf("after a finding of 4: outcome %+v, want quarantined at 9.8 with the Subject tagged", o)
	}
	// The outcome's findings are each plugin's own: the gateway adds them
	// up once.
	var found []string
	for _, f := range o.Findings {
		found = append(found, f.Symbol)
	}
	if want := []string{"DNSBL_LISTED", "R_SPF_ALLOW", "RDNS_NONE", "MIME_BAD_EXTENSION"}; !slices.Equal(found, want) {
		t.Errorf("findings %v, want %v", found, want)
	}
}

// A hostile message cannot take the plugin past its memory limit or its
// timeout: a megabyte of nested parts, links and tags within 32 MiB of
// memory is scored like any other.
func TestSpamPluginHostileMessage(t *testing.T) {
	h := dnsHost(t, dnstest.Start(t, spamZone))
	s := spamSpec(t, "max_bytes = 1048576\n")
	s.MemoryLimit = 32 << 20
	c := NewChain(load(t, h, s))
	var b strings.Builder
	b.WriteString("Subject: x\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n")
	for b.Len() < 1<<20 {
		b.WriteString("--b\r\nContent-Type: text/html\r\n\r\n<div style=\"display:none\"><a href=\"http://192.0.2.1/\">https://bank.example/</a>\r\n")
	}
	for range 3 {
		o := c.Run(context.Background(), spamData("mail.example.org", "pass"), NewMessage([]byte(b.String())))
		if len(o.Verdicts) != 1 || o.Verdicts[0].Err != nil || o.Action != abi.Continue || len(o.Findings) == 0 {
			t.Fatalf("outcome %+v", o)
		}
	}
}

// benchmarkSpam scores a message of about size bytes (a text and an HTML
// version with links, a zip attachment) through the built module, its
// HELO and URIBL lookups answered by the test DNS server through the
// resolver's cache: the records have a TTL here, so that the time is the
// plugin's rather than a wait for the server on every call.
func benchmarkSpam(b *testing.B, size int) {
	h := dnsHost(b, dnstest.Start(b, "$TTL 300\n"+spamZone))
	c := NewChain(load(b, h, spamSpec(b, "")))
	para := "The quarterly figures are in; see https://www.example.com/report and " +
		"<a href=\"https://click.example.com/r/1\">the summary</a> before the meeting. "
	msg := spamMessage(b, "Alice <alice@example.org>", "Quarterly figures", strings.Repeat(para, max(1, (size-2000)/(2*len(para)))),
		"report.pdf", "figures.xlsx")
	req := spamData("mail.example.org", "pass")
	ctx := context.Background()
	if o := c.Run(ctx, req, NewMessage(msg)); len(o.Verdicts) != 1 || o.Verdicts[0].Err != nil || o.Action != abi.Continue {
		b.Fatalf("outcome %+v", o)
	}
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		c.Run(ctx, req, NewMessage(msg))
	}
}

// The spam plugin per message, through the host and the built module.
func BenchmarkChainSpamData4KiB(b *testing.B)  { benchmarkSpam(b, 4<<10) }
func BenchmarkChainSpamData64KiB(b *testing.B) { benchmarkSpam(b, 64<<10) }
