package arc

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/sluice-mail/sluice/gateway/internal/dkim"
	"github.com/sluice-mail/sluice/gateway/internal/message"
)

// The ValiMail ARC test suite (see testdata/conformance/README.md).
const (
	suiteDir         = "../../../testdata/conformance/arc/tests/"
	validationSuite  = suiteDir + "arc-draft-validation-tests.yml"
	signingSuite     = suiteDir + "arc-draft-sign-tests.yml"
	validationCases  = 171 // so that a parsing slip that loses cases cannot pass
	signingCases     = 17
	suiteAuthServID  = "lists.example.org"
	suiteKeyPEMBlock = "RSA PRIVATE KEY"
)

// knownValidationDifferences and knownSigningDifferences are the suite's
// cases Sluice does not pass, each with the reason. The tests fail if any
// other case fails, and if one of these starts to pass, so the lists stay
// true.
var (
	knownValidationDifferences = map[string]string{}
	knownSigningDifferences    = map[string]string{}
)

// cases reads a YAML mapping of test cases in file order. The validation
// suite repeats four case names within one scenario; like the suite's own
// (PyYAML) harness, the later case replaces the earlier one, which is how
// the suite counts 171 cases.
type cases[T any] struct {
	names  []string
	byName map[string]T
}

func (c *cases[T]) UnmarshalYAML(n *yaml.Node) error {
	c.byName = map[string]T{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		name := n.Content[i].Value
		var v T
		if err := n.Content[i+1].Decode(&v); err != nil {
			return err
		}
		if _, seen := c.byName[name]; !seen {
			c.names = append(c.names, name)
		}
		c.byName[name] = v
	}
	return nil
}

type validationScenario struct {
	Description string
	Tests       cases[validationCase]
	TXTRecords  map[string]string `yaml:"txt-records"`
}

type validationCase struct {
	Description string
	Message     string
	CV          string
}

type signingScenario struct {
	Description string
	Tests       cases[signingCase]
	Domain      string
	Sel         string
	PrivateKey  string            `yaml:"privatekey"`
	TXTRecords  map[string]string `yaml:"txt-records"`
}

type signingCase struct {
	Description string
	Message     string
	T           int64
	SigHeaders  string `yaml:"sig-headers"`
	SrvID       string `yaml:"srv-id"`
	AS          string `yaml:"AS"`
	AMS         string `yaml:"AMS"`
	AAR         string `yaml:"AAR"`
}

// readScenarios decodes every YAML document of a suite file.
func readScenarios[S any](t *testing.T, path string) []S {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var all []S
	dec := yaml.NewDecoder(f)
	for {
		var s S
		err := dec.Decode(&s)
		if err == io.EOF {
			return all
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		all = append(all, s)
	}
}

// suiteLookup serves a scenario's TXT records, as the suite's harness does
// from its DNS stub.
func suiteLookup(records map[string]string) TXTLookup {
	return func(_ context.Context, name string) ([]string, error) {
		if r, ok := records[name]; ok {
			return []string{r}, nil
		}
		return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
	}
}

// crlf turns the suite's LF messages into what arrives over SMTP.
func crlf(msg string) []byte {
	return []byte(strings.ReplaceAll(msg, "\n", "\r\n"))
}

// TestValidationSuite runs every case of the suite's validation file and
// checks the chain validation status. All cases share one cache of parsed
// keys, as the messages of a running gateway do: its keys must change no
// result.
func TestValidationSuite(t *testing.T) {
	keys := dkim.NewKeyCache()
	passed, total := 0, 0
	for _, sc := range readScenarios[validationScenario](t, validationSuite) {
		lookup := suiteLookup(sc.TXTRecords)
		for _, name := range sc.Tests.names {
			tc := sc.Tests.byName[name]
			total++
			want := strings.ToLower(strings.TrimSpace(tc.CV))
			if want == "" {
				// Three cases (a chain whose newest seal says cv=fail)
				// leave cv blank. RFC 8617 §5.2 step 2 makes such a chain
				// fail, and no other result exists.
				want = CVFail
			}
			msg := crlf(tc.Message)
			got := Verify(context.Background(), msg, VerifyOptions{Lookup: lookup, Keys: keys})
			// The gateway verifies the header it parsed once.
			header, body := message.Split(message.NormalizeLineEndings(msg))
			if parsed := VerifyHeader(context.Background(), message.ParseHeader(header), dkim.NewBody(body), VerifyOptions{Lookup: lookup, Keys: keys}); message.BareLineEndings(msg) == 0 && !reflect.DeepEqual(parsed, got) {
				t.Errorf("%s: VerifyHeader = %+v, Verify = %+v", name, parsed, got)
			}
			ok := got.CV == want
			if ok {
				passed++
			}
			reason, known := knownValidationDifferences[name]
			switch {
			case !ok && !known:
				t.Errorf("%s (%s): cv=%s (%s), want %s", name, tc.Description, got.CV, got.Reason, want)
			case ok && known:
				t.Errorf("%s now passes; remove it from knownValidationDifferences (%s)", name, reason)
			}
		}
	}
	if total != validationCases {
		t.Errorf("read %d validation cases, want %d", total, validationCases)
	}
	t.Logf("ARC validation: %d/%d", passed, total)
}

// TestSigningSuite seals each case's message with the case's key, selector,
// domain, time and header list, and compares the three fields with the
// expected ones as the suite says: whitespace removed, as sets of
// ";"-separated tags. The signatures are deterministic (RSA PKCS#1 v1.5), so
// b= must match exactly. The suite's signatures were made over fields
// written on one line (its README's standard format), so the test seals
// with folding off; Seal differs only in where lines break.
func TestSigningSuite(t *testing.T) {
	passed, total := 0, 0
	for _, sc := range readScenarios[signingScenario](t, signingSuite) {
		block, _ := pem.Decode([]byte(sc.PrivateKey))
		if block == nil || block.Type != suiteKeyPEMBlock {
			t.Fatalf("scenario %q: no %s PEM block", sc.Description, suiteKeyPEMBlock)
		}
		key, err := x509.ParsePKCS1PrivateKey(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		lookup := suiteLookup(sc.TXTRecords)
		for _, name := range sc.Tests.names {
			tc := sc.Tests.byName[name]
			total++
			err := checkSigningCase(tc, sc, key, lookup)
			if err == "" {
				passed++
			}
			reason, known := knownSigningDifferences[name]
			switch {
			case err != "" && !known:
				t.Errorf("%s (%s): %s", name, tc.Description, err)
			case err == "" && known:
				t.Errorf("%s now passes; remove it from knownSigningDifferences (%s)", name, reason)
			}
		}
	}
	if total != signingCases {
		t.Errorf("read %d signing cases, want %d", total, signingCases)
	}
	t.Logf("ARC signing: %d/%d", passed, total)
}

// checkSigningCase seals one case and returns what differs, "" if nothing.
func checkSigningCase(tc signingCase, sc signingScenario, key crypto.Signer, lookup TXTLookup) string {
	msg := crlf(tc.Message)
	chain := Verify(context.Background(), msg, VerifyOptions{Lookup: lookup})
	c := SealConfig{
		Domain:   sc.Domain,
		Selector: sc.Sel,
		Key:      key,
		Headers:  strings.Split(tc.SigHeaders, ":"),
		Now:      func() time.Time { return time.Unix(tc.T, 0) },
	}
	results := consolidateResults(msg, tc.SrvID)
	msgFields, body := dkim.SplitMessage(msg)
	out, err := seal(msgFields, dkim.NewBody(body), tc.SrvID, results, chain, c, 0)
	if err != nil {
		return "Seal: " + err.Error()
	}
	// The gateway seals the header it parsed once: the same set.
	if message.BareLineEndings(msg) == 0 {
		header, _ := message.Split(msg)
		if parsed, _ := seal(dkim.FieldsOf(message.ParseHeader(header)), dkim.NewBody(body), tc.SrvID, results, chain, c, 0); !bytes.Equal(parsed, out) {
			return "sealed from the parsed header:\n" + string(parsed) + "\nfrom the message:\n" + string(out)
		}
	}
	if strings.TrimSpace(tc.AS+tc.AMS+tc.AAR) == "" {
		if out != nil {
			return "sealed a chain whose newest seal says cv=fail:\n" + string(out)
		}
		return ""
	}
	fields, _ := dkim.SplitMessage(append(out, "\r\n"...))
	if len(fields) != 3 {
		return "Seal did not return three fields:\n" + string(out)
	}
	var problems []string
	for i, want := range []struct{ name, value string }{{asName, tc.AS}, {amsName, tc.AMS}, {aarName, tc.AAR}} {
		f := fields[i]
		if f.Name() != want.name {
			problems = append(problems, "field "+strconv.Itoa(i+1)+" is "+f.Name()+", want "+want.name)
			continue
		}
		if got := tagSet(fieldValue(f.Raw())); !slices.Equal(got, tagSet(want.value)) {
			problems = append(problems, want.name+":\n got  "+strings.Join(got, ";")+"\n want "+strings.Join(tagSet(want.value), ";"))
		}
	}
	// What Sluice sealed must verify: pass on a good chain, and on a
	// failed one, fail because the new seal says so.
	sealed := append(out, msg...)
	v := Verify(context.Background(), sealed, VerifyOptions{Lookup: lookup})
	wantCV := CVPass
	if chain.CV == CVFail {
		wantCV = CVFail
	}
	if v.CV != wantCV {
		problems = append(problems, "Verify of the sealed message: cv="+v.CV+" ("+v.Reason+"), want "+wantCV)
	}
	return strings.Join(problems, "\n")
}

// tagSet is the suite's comparison: whitespace removed, split at ";",
// sorted.
func tagSet(value string) []string {
	set := strings.Split(removeFWS(value), ";")
	slices.Sort(set)
	return set
}

// consolidateResults gathers the results of every Authentication-Results
// field of authServID, in message order, one result each: the suite's "AR
// consolidation" rule for the AAR.
func consolidateResults(msg []byte, authServID string) string {
	fields, _ := dkim.SplitMessage(msg)
	var results []string
	for _, f := range fields {
		if !strings.EqualFold(f.Name(), "Authentication-Results") {
			continue
		}
		id, rest, _ := strings.Cut(fieldValue(f.Raw()), ";")
		if trimFWS(id) != authServID {
			continue
		}
		for _, r := range strings.Split(rest, ";") {
			if r = strings.Join(strings.Fields(r), " "); r != "" {
				results = append(results, r)
			}
		}
	}
	return strings.Join(results, "; ")
}
