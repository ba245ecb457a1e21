package relay

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
)

// replyReader is a client reading replies from input, for tests of the
// parser alone.
func replyReader(input string) *client {
	return &client{r: bufio.NewReaderSize(strings.NewReader(input), ioBufferSize)}
}

func TestReadReply(t *testing.T) {
	for _, tc := range []struct {
		name  string
		input string
		code  int
		text  string
	}{
		{"one line", "250 2.1.0 Ok\r\n", 250, "2.1.0 Ok"},
		{"code alone", "250\r\n", 250, ""},
		{"empty text", "354 \r\n", 354, ""},
		{"multi-line", "250-mx.dest.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n", 250, "mx.dest.test\nPIPELINING\n8BITMIME"},
		{"bare LF", "550-a\n550 b\n", 550, "a\nb"},
		{"continuation with code alone", "250-a\r\n250\r\n", 250, "a\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, text, err := replyReader(tc.input).readReply()
			if err != nil || code != tc.code || text != tc.text {
				t.Errorf("readReply(%q) = %d %q %v, want %d %q", tc.input, code, text, err, tc.code, tc.text)
			}
		})
	}
}

func TestReadReplyRefusesWhatIsNoReply(t *testing.T) {
	for _, tc := range []struct {
		name  string
		input string
	}{
		{"empty line", "\r\n"},
		{"short", "25\r\n"},
		{"letters", "abc def\r\n"},
		{"1xx", "150 go on\r\n"},
		{"6xx", "650 huh\r\n"},
		{"no separator", "250x\r\n"},
		{"codes differ", "250-a\r\n251 b\r\n"},
		{"garbage continuation", "250-a\r\nhello\r\n"},
		{"line too long", "250 " + strings.Repeat("x", maxReplyLine) + "\r\n"},
		{"line longer than the buffer", "250 " + strings.Repeat("x", 2*ioBufferSize) + "\r\n"},
		{"reply too long", strings.Repeat("250-"+strings.Repeat("x", 1000)+"\r\n", maxReplySize/1000+1) + "250 end\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code, text, err := replyReader(tc.input).readReply(); err == nil {
				t.Errorf("readReply(%q) = %d %q, want an error", abbreviate(tc.input), code, abbreviate(text))
			}
		})
	}
}

// A reply cut off by the end of the connection is an error, never a
// reply: "250-a" and then nothing must not read as success.
func TestReadReplyTruncated(t *testing.T) {
	for _, input := range []string{"", "25", "250 ok", "250-a\r\n", "250-a\r\n250 b"} {
		_, _, err := replyReader(input).readReply()
		if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("readReply(%q) error = %v, want EOF", input, err)
		}
	}
}

// Pipelined replies arrive together; each read takes exactly one.
func TestReadReplyOneAtATime(t *testing.T) {
	c := replyReader("250 2.1.0 sender ok\r\n550-5.1.1 no\r\n550 5.1.1 such user\r\n354 go on\r\n")
	for _, want := range []struct {
		code int
		text string
	}{{250, "2.1.0 sender ok"}, {550, "5.1.1 no\n5.1.1 such user"}, {354, "go on"}} {
		code, text, err := c.readReply()
		if err != nil || code != want.code || text != want.text {
			t.Fatalf("readReply = %d %q %v, want %d %q", code, text, err, want.code, want.text)
		}
	}
}

func TestParseExtensions(t *testing.T) {
	ext := parseExtensions("mx.dest.test greets you\npipelining\nSIZE 10240000\n8BITMIME\nAUTH PLAIN LOGIN")
	for k, v := range map[string]string{"PIPELINING": "", "SIZE": "10240000", "8BITMIME": "", "AUTH": "PLAIN LOGIN"} {
		if got, ok := ext[k]; !ok || got != v {
			t.Errorf("ext[%q] = %q, %v; want %q", k, got, ok, v)
		}
	}
	if len(ext) != 4 {
		t.Errorf("%d extensions, want 4 (the first line is the server's name): %v", len(ext), ext)
	}
}

func TestXtext(t *testing.T) {
	if got, want := xtext("a+b=c d\x01é"), "a+2Bb+3Dc+20d+01+C3+A9"; got != want {
		t.Errorf("xtext = %q, want %q", got, want)
	}
}

// FuzzReadReply feeds the reply parser arbitrary bytes: it never panics,
// and what it returns as a reply has a code from 200 to 599 and text no
// longer than the limit.
func FuzzReadReply(f *testing.F) {
	for _, s := range []string{"250 ok\r\n", "250-a\r\n250 b\r\n", "550-5.1.1 x\r\n550 5.1.1 y\r\n", "250-a\r\n", "2\xff0 x\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, input []byte) {
		c := replyReader(string(input))
		for {
			code, text, err := c.readReply()
			if err != nil {
				return
			}
			if code < 200 || code > 599 || len(text) > maxReplySize {
				t.Fatalf("readReply(%q) = %d and %d bytes of text", input, code, len(text))
			}
		}
	})
}

func BenchmarkReadReply(b *testing.B) {
	input := "250-mx.dest.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"
	r := strings.NewReader(input)
	c := &client{r: bufio.NewReaderSize(r, ioBufferSize)}
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(input)
		c.r.Reset(r)
		if _, _, err := c.readReply(); err != nil {
			b.Fatal(err)
		}
	}
}
