package smtpd

import (
	"testing"

	"github.com/sluice-mail/sluice/gateway/internal/message"
)

// The record keeps the Message-ID and the Subject as a reader sees them:
// unfolded, encoded words decoded; the Subject only when asked to.
func TestReadHeader(t *testing.T) {
	header := message.ParseHeader([]byte("From: a@example.org\r\nSubject: =?utf-8?q?Caf=C3=A9?= and\r\n more\r\nMessage-ID:\r\n <x.1@example.org>\r\nSubject: second\r\n"))
	var txn transaction
	txn.readHeader(header, true)
	if txn.subject != "Café and more" || txn.messageID != "<x.1@example.org>" {
		t.Errorf("subject %q, message-id %q", txn.subject, txn.messageID)
	}
	txn = transaction{}
	txn.readHeader(header, false)
	if txn.subject != "" || txn.messageID != "<x.1@example.org>" {
		t.Errorf("without subjects: subject %q, message-id %q", txn.subject, txn.messageID)
	}
	// An empty Message-ID names nothing: the next one does.
	txn = transaction{}
	txn.readHeader(message.ParseHeader([]byte("Message-ID:\r\nmessage-id: <y@example.org>\r\n")), false)
	if txn.messageID != "<y@example.org>" {
		t.Errorf("after an empty Message-ID: %q", txn.messageID)
	}
}
