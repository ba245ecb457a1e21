package inbox

import (
	"net"
	"os"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"
)

func TestInboxStoresWithEnvelope(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	in := &Inbox{Dir: t.TempDir()}
	go in.Serve(l)
	t.Cleanup(func() { in.Close() })

	msg := "Subject: hello\r\n\r\nbody\r\n"
	c, err := smtp.Dial(l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SendMail("a@example.org", []string{"me@inbox.test", "you@inbox.test"}, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	files, err := Messages(in.Dir)
	if err != nil || len(files) != 1 {
		t.Fatalf("stored files: %v, %v", files, err)
	}
	got, _ := os.ReadFile(files[0])
	want := "Return-Path: <a@example.org>\r\nDelivered-To: me@inbox.test\r\nDelivered-To: you@inbox.test\r\n" + msg
	if string(got) != want {
		t.Errorf("stored %q, want %q", got, want)
	}
}
