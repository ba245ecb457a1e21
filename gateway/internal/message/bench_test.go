package message

import (
	"strings"
	"testing"
)

// benchHeader is the header block of a message that came through a few
// hops and a mailing list: 30 fields, some folded, about 3 KiB.
func benchHeader() []byte {
	var h strings.Builder
	for i := range 30 {
		switch i % 3 {
		case 0:
			h.WriteString("Received: from relay.example.net (relay.example.net [192.0.2.1])\r\n\tby mx.example.org with ESMTPS id abc; Thu, 26 Nov 2026 10:00:00 +0000\r\n")
		case 1:
			h.WriteString("X-Field: a value of a typical length for a header field\r\n")
		default:
			h.WriteString("Subject: a subject line of a typical length\r\n")
		}
	}
	return []byte(h.String())
}

func benchMessage(lineEnd string) []byte {
	body := strings.Repeat("The quick brown fox jumps over the lazy dog, again and again. 0123456789"+lineEnd, 55)
	return []byte(strings.ReplaceAll(string(benchHeader()), "\r\n", lineEnd) + lineEnd + body)
}

func BenchmarkFields(b *testing.B) {
	header := benchHeader()
	b.SetBytes(int64(len(header)))
	b.ReportAllocs()
	for b.Loop() {
		Fields(header)
	}
}

// BenchmarkParseHeader is what deliver does once per message: parse the
// header, and look a name up, which makes the index.
func BenchmarkParseHeader(b *testing.B) {
	header := benchHeader()
	b.SetBytes(int64(len(header)))
	b.ReportAllocs()
	for b.Loop() {
		ParseHeader(header).Count("Received")
	}
}

func BenchmarkSplit(b *testing.B) {
	msg := benchMessage("\r\n")
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		Split(msg)
	}
}

func BenchmarkRemove(b *testing.B) {
	header := benchHeader()
	b.SetBytes(int64(len(header)))
	b.ReportAllocs()
	for b.Loop() {
		Remove(header, []string{"X-Field"})
	}
}

// BenchmarkNormalizeLineEndings: a message with CRLF line ends only, as
// nearly all are (nothing to do), and one with bare LFs (a copy).
func BenchmarkNormalizeLineEndings(b *testing.B) {
	for _, bench := range []struct{ name, end string }{{"crlf", "\r\n"}, {"lf", "\n"}} {
		b.Run(bench.name, func(b *testing.B) {
			msg := benchMessage(bench.end)
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				NormalizeLineEndings(msg)
			}
		})
	}
}

func BenchmarkFormatField(b *testing.B) {
	value := "from client.example.org ([192.0.2.1]) by mx.example.test (Sluice) with ESMTPS id 0123456789ab for <info@example.test>; Thu, 26 Nov 2026 10:00:00 +0000"
	b.ReportAllocs()
	for b.Loop() {
		FormatField("Received", value)
	}
}
