package main

import (
	"strings"
	"testing"

	"github.com/sluice-mail/sluice/sdk/abi"
	"github.com/sluice-mail/sluice/sdk/sdktest"
)

// benchMessage is a typical message of about size bytes: a text and an
// HTML version with links, and a zip attachment, the text padded with
// prose to the size. The host's benchmark of the built module
// (gateway/internal/plugin) uses the same shape.
func benchMessage(t testing.TB, size int) string {
	para := "The quarterly figures are in; see https://www.example.com/report for details and " +
		"<a href=\"https://click.example.com/r/1\">the summary</a> before the meeting.\n"
	head := compose("x\n", "Content-Type: multipart/mixed; boundary=\"mix\"")
	attach := "--mix\nContent-Type: application/zip; name=\"report.zip\"\nContent-Disposition: attachment; filename=\"report.zip\"\n" +
		"Content-Transfer-Encoding: base64\n\n" + zipOf(t, "report.pdf", "figures.xlsx")
	frame := strings.TrimSuffix(head, "x\n") + "--mix\nContent-Type: multipart/alternative; boundary=\"alt\"\n\n" +
		"--alt\nContent-Type: text/plain; charset=utf-8\n\n%TEXT%--alt\nContent-Type: text/html; charset=utf-8\n\n<html><body>%HTML%</body></html>\n--alt--\n" +
		attach + "--mix--\n"
	n := max(1, (size-len(frame))/(2*len(para)))
	text := strings.Repeat(para, n)
	html := strings.Repeat("<p>"+para+"</p>", n)
	return strings.Replace(strings.Replace(frame, "%TEXT%", text, 1), "%HTML%", html, 1)
}

func benchmarkScan(b *testing.B, size int) {
	config := "[[uribl]]\nzone = \"uribl.test\"\nsymbol = \"URIBL_TEST\"\nscore = 7.5\n"
	p := newPlugin(b, config, sdktest.Record(abi.TypeA, "mail.example.org", "192.0.2.25"))
	msg := benchMessage(b, size)
	req := request(b, "spf=pass dkim=pass dmarc=pass fcrdns=pass helo=mail.example.org")
	p.SetMessage([]byte(msg))
	if v := p.Handle(b, req); v.Action != abi.Continue {
		b.Fatalf("got %s", describe(v))
	}
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		p.Handle(b, req)
	}
}

// The cost of scoring one message natively (no WebAssembly), with a HELO
// lookup and URIBL lookups answered from memory.
func BenchmarkScan4KiB(b *testing.B)  { benchmarkScan(b, 4<<10) }
func BenchmarkScan64KiB(b *testing.B) { benchmarkScan(b, 64<<10) }
