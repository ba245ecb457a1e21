package dkim

import (
	"slices"
	"strings"
	"testing"

	"github.com/sluice-mail/sluice/gateway/internal/dkimpy"
)

// utf8Message has UTF-8 header fields (RFC 6532), folded, with runs of
// whitespace, as an SMTPUTF8 client sends them.
const utf8Message = "From: Pelé  <pelé@exemple.test>\r\n" +
	"To: Piñata <piñata@piñata.example>\r\n" +
	"Subject: ¡Feliz\r\n cumpleaños,  piñata!\r\n" +
	"Date: Tue, 02 Jun 2026 10:00:00 +0000\r\n" +
	"Message-ID: <eai@exemple.test>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"\r\n" +
	"Olá!  \r\n\r\n"

// UTF-8 header fields are signed and verified byte for byte, with both
// canonicalizations: dkimpy verifies our signatures of a UTF-8 message,
// and we verify dkimpy's.
func TestUTF8HeaderInterop(t *testing.T) {
	keys := testKeys(t)
	signed := signMessage(t, newTestSigner(t, keys), utf8Message)
	records := txtRecords(t, testDomain, keys)
	if got := dkimpy.Check(t, []byte(signed), records).DKIM; !slices.Equal(got, []bool{true, true}) {
		t.Errorf("dkimpy on our signatures of a UTF-8 message: %v, want both verified", got)
	}
	changed := strings.Replace(signed, "cumpleaños", "cumpleanos", 1)
	if got := dkimpy.Check(t, []byte(changed), records).DKIM; !slices.Equal(got, []bool{false, false}) {
		t.Errorf("dkimpy on a changed UTF-8 Subject: %v, want both failed", got)
	}

	dir := conformanceDir + "dkimpy/"
	_, lookup := startDNS(t, txtZone(map[string]string{
		"test._domainkey.example.com": strings.TrimSpace(readConformance(t, "dkimpy/test.txt")),
		"test._domainkey.example.net": "v=DKIM1; k=ed25519; p=yi50DjK5O9pqbFpNHklsv9lqaS0ArSYu02qp1S0DW1Y=",
	}))
	file := dkimpy.WriteFile(t, "utf8.eml", []byte(utf8Message))
	var jobs []dkimpyJob
	for _, canon := range []string{"simple/simple", "relaxed/relaxed"} {
		jobs = append(jobs,
			dkimpyJob{Message: file, Key: dir + "test.private", Selector: "test", Domain: "example.com", Canon: canon, Algorithm: "rsa-sha256"},
			dkimpyJob{Message: file, Key: dir + "ed25519test.key", Selector: "test", Domain: "example.net", Canon: canon, Algorithm: "ed25519-sha256"})
	}
	for i, sig := range dkimpySign(t, jobs) {
		if got := resultWords(verifyString(t, sig+utf8Message, lookup)); !slices.Equal(got, []string{"pass"}) {
			t.Errorf("dkimpy's %s %s signature of a UTF-8 message: %v, want pass", jobs[i].Algorithm, jobs[i].Canon, got)
		}
		if got := resultWords(verifyString(t, sig+strings.Replace(utf8Message, "Pelé", "Pele", 1), lookup)); !slices.Equal(got, []string{"fail"}) {
			t.Errorf("dkimpy's %s %s signature, From changed: %v, want fail", jobs[i].Algorithm, jobs[i].Canon, got)
		}
	}
}
