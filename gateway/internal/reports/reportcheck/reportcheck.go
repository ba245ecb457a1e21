// Package reportcheck reads DMARC and TLS reports as their receivers
// would, for tests: the message with Python's email package, the DMARC
// XML against RFC 9990's schema with xmllint (Debian's libxml2-utils).
package reportcheck

import (
	_ "embed"
	"encoding/json"
	"os/exec"
	"testing"

	"github.com/sluice-mail/sluice/gateway/internal/dkimpy"
)

// schema is RFC 9990's XML schema (see the file's comment).
//
//go:embed dmarc-2.0.xsd
var schema []byte

// Report is a report message as Python's email package reads it.
type Report struct {
	Headers        map[string]string `json:"headers"` // but DKIM-Signature
	ContentType    string            `json:"content_type"`
	ReportType     string            `json:"report_type"` // the report-type parameter
	Parts          []string          `json:"parts"`       // the content types of the parts
	Filename       string            `json:"filename"`    // the attachment's
	AttachmentType string            `json:"attachment_type"`
	Attachment     string            `json:"attachment"` // gunzipped
}

const parseScript = `
import email, email.policy, gzip, json, sys
msg = email.message_from_binary_file(open(sys.argv[1], 'rb'), policy=email.policy.default)
out = {'headers': {k: str(v) for k, v in msg.items() if k != 'DKIM-Signature'},
       'content_type': msg.get_content_type(), 'report_type': msg.get_param('report-type') or '',
       'parts': [p.get_content_type() for p in msg.iter_parts()]}
for p in msg.iter_attachments():
    out['filename'] = p.get_filename()
    out['attachment_type'] = p.get_content_type()
    out['attachment'] = gzip.decompress(p.get_payload(decode=True)).decode()
print(json.dumps(out))
`

// Parse reads a report message with Python's email package, gunzipping
// its attachment.
func Parse(t testing.TB, msg []byte) Report {
	t.Helper()
	script := dkimpy.WriteFile(t, "parse.py", []byte(parseScript))
	out := dkimpy.Run(t, script, dkimpy.WriteFile(t, "report.eml", msg))
	var r Report
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("parse.py said %q: %v", out, err)
	}
	return r
}

// Validate fails t unless doc validates against RFC 9990's schema.
func Validate(t testing.TB, doc string) {
	t.Helper()
	if _, err := exec.LookPath("xmllint"); err != nil {
		t.Fatal("xmllint is missing: apt-get install -y libxml2-utils")
	}
	xsd := dkimpy.WriteFile(t, "dmarc-2.0.xsd", schema)
	path := dkimpy.WriteFile(t, "report.xml", []byte(doc))
	out, err := exec.Command("xmllint", "--noout", "--schema", xsd, path).CombinedOutput()
	if err != nil {
		t.Fatalf("the report does not validate against RFC 9990's schema: %v\n%s\n%s", err, out, doc)
	}
}
