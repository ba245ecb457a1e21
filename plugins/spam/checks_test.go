package main

import (
	"archive/zip"
	"bytes"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/sluice-mail/sluice/sdk/abi"
	"github.com/sluice-mail/sluice/sdk/sdktest"
)

// zipOf is a zip archive holding empty files of these names, base64 in
// lines of 76 as mail carries it.
func zipOf(t testing.TB, names ...string) string {
	t.Helper()
	var buf bytes.Buffer
	z := zip.NewWriter(&buf)
	for _, n := range names {
		w, err := z.Create(n)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte("MZ not really a program"))
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	return wrap(base64.StdEncoding.EncodeToString(buf.Bytes()))
}

func wrap(s string) string {
	var b strings.Builder
	for len(s) > 76 {
		b.WriteString(s[:76] + "\n")
		s = s[76:]
	}
	return b.String() + s + "\n"
}

// mixed is a multipart/mixed body of a text part and one attachment.
func mixed(ctype, disposition, content string) string {
	return "Content-Type: multipart/mixed; boundary=\"b1\"\n\n" +
		"--b1\nContent-Type: text/plain; charset=utf-8\n\nPlease find the document attached.\n" +
		"--b1\nContent-Type: " + ctype + "\nContent-Transfer-Encoding: base64\nContent-Disposition: " + disposition + "\n\n" +
		content + "--b1--\n"
}

// htmlOnlyBody is a text/html body alone.
func htmlOnlyBody(doc string) string {
	return "Content-Type: text/html; charset=utf-8\n\n<html><body>" + doc + "</body></html>\n"
}

// alternative is a multipart/alternative body with a text and an HTML
// version.
func alternative(text, doc string) string {
	return "Content-Type: multipart/alternative; boundary=\"alt\"\n\n" +
		"--alt\nContent-Type: text/plain; charset=utf-8\n\n" + text + "\n" +
		"--alt\nContent-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n" + doc + "\n--alt--\n"
}

// Each check, one message at a time: the symbol a message earns, and those
// a near-miss does not.
func TestChecks(t *testing.T) {
	p := newPlugin(t, "", sdktest.Record(abi.TypeA, "mail.example.org", "192.0.2.25"),
		sdktest.Record(abi.TypeMX, "mx-only.example.org", "10 mail.example.org"))
	const good = "spf=pass dkim=pass dmarc=pass fcrdns=pass helo=mail.example.org"
	cases := []struct {
		name  string
		words string
		msg   string
		want  []string
		not   []string
	}{
		{"a good message", good, compose("Hi Bob, lunch at noon?\n"),
			[]string{spfAllow, dkimAllow, dmarcAllow}, []string{missingDate, missingMID, htmlOnly, rdnsNone, heloNoRes, missingFrom, fromInvalid}},
		{"SPF fail", "spf=fail", compose("x\n"), []string{spfFail}, []string{spfAllow, dkimNone}}, // R_DKIM_NA weighs 0: off
		{"SPF softfail", "spf=softfail", compose("x\n"), []string{spfSoftfail}, nil},
		{"a broken signature beside a good one", "spf=pass dkim=fail dkim=pass", compose("x\n"), []string{dkimAllow}, []string{dkimReject}},
		{"DKIM fail", "spf=pass dkim=fail", compose("x\n"), []string{dkimReject}, nil},
		{"DMARC reject", "dmarc=fail p=reject", compose("x\n"), []string{dmarcReject}, []string{dmarcQuarantine}},
		{"DMARC quarantine", "dmarc=fail p=quarantine", compose("x\n"), []string{dmarcQuarantine}, nil},
		{"DMARC fail under p=none", "dmarc=fail p=none", compose("x\n"), []string{dmarcSoftfail}, nil},
		{"DMARC permerror about the record", "dmarc=permerror policydomain=example.org", compose("x\n"), []string{dmarcBadPolicy}, []string{fromInvalid}},
		{"DMARC permerror about the From field", "dmarc=permerror", compose("x\n"), []string{fromInvalid}, []string{dmarcBadPolicy}},
		{"DMARC permerror for a missing From", "dmarc=permerror", compose("x\n", "-From"), []string{missingFrom}, []string{fromInvalid, dmarcBadPolicy}},
		{"ARC fail", "arc=fail", compose("x\n"), []string{arcReject}, nil},
		{"ARC pass", "arc=pass", compose("x\n"), []string{arcAllow}, nil},
		{"no reverse DNS", "fcrdns=none", compose("x\n"), []string{rdnsNone}, nil},
		{"reverse DNS not confirmed", "fcrdns=fail", compose("x\n"), []string{rdnsFail}, []string{rdnsNone}},
		{"HELO an address", "helo=192.0.2.25", compose("x\n"), []string{heloBareIP}, []string{heloNoRes}},
		{"HELO an address literal", "helo=[IPv6:2001:db8::1]", compose("x\n"), []string{heloBareIP}, nil},
		{"HELO that does not exist", "helo=nowhere.example.org", compose("x\n"), []string{heloNoRes}, nil},
		{"HELO with an MX only", "helo=mx-only.example.org", compose("x\n"), nil, []string{heloNoRes}},
		{"HELO without a dot", "helo=localhost", compose("x\n"), nil, []string{heloNoRes, heloBareIP}},
		{"no Date", "", compose("x\n", "-Date"), []string{missingDate}, []string{invalidDate}},
		{"a Date that does not parse", "", compose("x\n", "Date: yesterday at noon"), []string{invalidDate}, nil},
		{"a Date in the future", "", compose("x\n", "Date: Sat, 15 Mar 2025 12:00:00 +0000"), []string{dateFuture}, nil},
		{"a Date an hour ahead", "", compose("x\n", "Date: Fri, 14 Mar 2025 13:00:00 +0000"), nil, []string{dateFuture}},
		{"a Date long past", "", compose("x\n", "Date: Mon, 13 Jan 2025 12:00:00 +0000"), []string{datePast}, nil},
		{"no Message-ID", "", compose("x\n", "-Message-ID"), []string{missingMID}, nil},
		{"a Message-ID without brackets", "", compose("x\n", "Message-ID: 1234@example.org"), []string{invalidMID}, nil},
		{"a Message-ID without @", "", compose("x\n", "Message-ID: <1234>"), []string{invalidMID}, nil},
		{"a display name with another address", "", compose("x\n", `From: "service@bank.example" <noreply@mailer.example>`),
			[]string{spoofName}, nil},
		{"a display name with its own address", "", compose("x\n", `From: "alice@example.org" <Alice@Example.org>`),
			nil, []string{spoofName}},
		{"an encoded display name with another address", "", compose("x\n", `From: =?utf-8?B?c2VydmljZUBiYW5rLmV4YW1wbGU=?= <noreply@mailer.example>`),
			[]string{spoofName}, nil},
		{"an unquoted display name with another address", "", compose("x\n", `From: support@paypal.com <x@evil.example>`),
			[]string{spoofName, fromInvalid}, nil},
		{"an unquoted encoded display name with another address", "", compose("x\n", `From: =?utf-8?B?c2VydmljZUBiYW5rLmV4YW1wbGU=?= Team, Support <x@evil.example>`),
			[]string{spoofName}, nil},
		{"an unquoted display name with its own address", "", compose("x\n", `From: x@evil.example <x@evil.example>`),
			[]string{fromInvalid}, []string{spoofName}},
		{"a malformed From, Reply-To at a freemail", "", compose("x\n", `From: Billing, Bank <billing@bank.example>`, "Reply-To: <claims.dept@gmail.com>"),
			[]string{fromInvalid, freemailRTo}, []string{spoofName}},
		{"a From of two addresses", "", compose("x\n", `From: a@example.org, support@bank.example`), []string{fromInvalid}, []string{spoofName, missingFrom}},
		{"a From without an address", "", compose("x\n", `From: Alice Example`), []string{fromInvalid}, []string{missingFrom}},
		{"two From fields", "", strings.Replace(compose("x\n"), "To:", "From: Mallory <m@evil.example>\nTo:", 1), []string{fromInvalid}, nil},
		{"no From", "", compose("x\n", "-From"), []string{missingFrom}, []string{fromInvalid}},
		{"an empty From", "", compose("x\n", "From: "), []string{missingFrom}, []string{fromInvalid}},
		{"Reply-To at a freemail", "", compose("x\n", "Reply-To: <claims.dept@gmail.com>"), []string{freemailRTo}, nil},
		{"Reply-To at a freemail, from there", "", compose("x\n", "From: Bob <bob@gmail.com>", "Reply-To: <bob.other@gmail.com>"),
			nil, []string{freemailRTo}},
		{"Reply-To elsewhere", "", compose("x\n", "Reply-To: <sales@example.net>"), nil, []string{freemailRTo}},
		{"a shouting Subject", "", compose("x\n", "Subject: URGENT: CLAIM YOUR PRIZE NOW!!!"), []string{subjAllCaps}, nil},
		{"a shouting encoded Subject", "", compose("x\n", "Subject: =?utf-8?Q?GRATUIT_=C3=89T=C3=89_OFFRE?="), []string{subjAllCaps}, nil},
		{"a short capital Subject", "", compose("x\n", "Subject: RE: FYI"), nil, []string{subjAllCaps}},
		{"a Subject in non-Latin letters", "", compose("x\n", "Subject: =?utf-8?B?5piO5pel44Gu5Lya6K2w?="), nil, []string{subjAllCaps, emptySubject}},
		{"an empty Subject", "", compose("x\n", "Subject: "), []string{emptySubject}, nil},
		{"no Subject", "", compose("x\n", "-Subject"), []string{noSubject}, nil},
		{"HTML only", "", compose(htmlOnlyBody("<p>Hello</p>")), []string{htmlOnly}, nil},
		{"HTML with a text version", "", compose(alternative("Hello", "<p>Hello</p>")), nil, []string{htmlOnly}},
		{"hidden by display:none", "", compose(htmlOnlyBody(`<p>Hi</p><div style="display: none">lorem ipsum dolor sit amet consectetur adipiscing</div>`)),
			[]string{hiddenText}, nil},
		{"hidden by font-size:0", "", compose(htmlOnlyBody(`<span style="font-size:0px">lorem ipsum dolor sit amet consectetur</span>`)),
			[]string{hiddenText}, nil},
		{"hidden by visibility", "", compose(htmlOnlyBody(`<p style="visibility:hidden">lorem ipsum dolor sit amet consectetur</p>`)),
			[]string{hiddenText}, nil},
		{"white on white", "", compose(htmlOnlyBody(`<table bgcolor="#FFFFFF"><tr><td><font color="white">lorem ipsum dolor sit amet consectetur</font></td></tr></table>`)),
			[]string{hiddenText}, nil},
		{"colour equal to background in CSS", "", compose(htmlOnlyBody(`<p style="background-color: rgb(0,0,0); color:#000">lorem ipsum dolor sit amet consectetur</p>`)),
			[]string{hiddenText}, nil},
		{"a hidden spacer", "", compose(htmlOnlyBody(`<p>Hello</p><div style="display:none">&nbsp;</div>`)), nil, []string{hiddenText}},
		{"visible coloured text", "", compose(htmlOnlyBody(`<table bgcolor="#ffffff"><tr><td style="color:#333">lorem ipsum dolor sit amet consectetur</td></tr></table>`)),
			nil, []string{hiddenText}},
		{"hidden text after a hidden element closed", "", compose(htmlOnlyBody(`<div style="display:none">x</div><p>lorem ipsum dolor sit amet consectetur adipiscing</p>`)),
			nil, []string{hiddenText}},
		{"a link to an address", "", compose("Log in at http://198.51.100.7/login now\n"), []string{urlIP}, nil},
		{"a link to a decimal address", "", compose(htmlOnlyBody(`<a href="http://3325256711/x">here</a>`)), []string{urlIP}, nil},
		{"a shortened link", "", compose("See https://bit.ly/3xYz now\n"), []string{urlShort}, nil},
		{"a link that shows another domain", "", compose(htmlOnlyBody(`<a href="https://login.evil.example/bank">https://www.bank.example/login</a>`)),
			[]string{phishing}, nil},
		{"a link that shows its own domain", "", compose(htmlOnlyBody(`<a href="https://www.bank.example/a?b=c">bank.example</a>`)),
			nil, []string{phishing}},
		{"a link that shows its own site under a country", "", compose(htmlOnlyBody(`<a href="https://shop.example.co.uk/">www.example.co.uk</a>`)),
			nil, []string{phishing}},
		{"a link with words", "", compose(htmlOnlyBody(`<a href="https://track.mailer.example/c/1">Visit bank.example today</a>`)),
			nil, []string{phishing}},
		{"an executable", "", compose(mixed(`application/octet-stream; name="setup.exe"`, `attachment; filename="setup.exe"`, "TVo=\n")),
			[]string{badExt}, []string{doubleExt}},
		{"an executable dressed as a document", "", compose(mixed(`application/octet-stream`, `attachment; filename="Invoice 2025.pdf  .exe"`, "TVo=\n")),
			[]string{doubleExt}, nil},
		{"an executable named in RFC 2231", "", compose(mixed(`application/octet-stream`, `attachment; filename*=UTF-8''Rechnung%C3%BC.pdf.scr`, "TVo=\n")),
			[]string{doubleExt}, nil},
		{"an executable named in encoded words", "", compose(mixed(`application/octet-stream; name="=?utf-8?Q?fa=C3=A7ture.js?="`, `attachment`, "TVo=\n")),
			[]string{badExt}, nil},
		{"a document", "", compose(mixed(`application/pdf; name="invoice.pdf"`, `attachment; filename="invoice.pdf"`, "JVBERi0=\n")),
			nil, []string{badExt, doubleExt}},
		{"a zip with an executable", "", compose(mixed(`application/zip; name="docs.zip"`, `attachment; filename="docs.zip"`, zipOf(t, "readme.txt", "docs/invoice.pdf.exe"))),
			[]string{doubleExt}, nil},
		{"a zip of documents", "", compose(mixed(`application/octet-stream; name="docs.zip"`, `attachment; filename="docs.zip"`, zipOf(t, "a.pdf", "b.docx"))),
			nil, []string{badExt, doubleExt}},
		{"a zip that is not one", "", compose(mixed(`application/zip`, `attachment; filename="docs.zip"`, "bm90IGEgemlw\n")),
			nil, []string{badExt, doubleExt}},
	}
	for _, c := range cases {
		v := scan(t, p, c.words, c.msg)
		checkSymbols(t, c.name, symbols(v), c.want, c.not)
	}
}

// A message attached to a message is looked into, as its parts are.
func TestAttachedMessage(t *testing.T) {
	p := newPlugin(t, "")
	inner := "From: x@example.net\nSubject: fwd\nContent-Type: text/html\n\n<a href=\"http://203.0.113.9/\">here</a>\n"
	msg := compose("Content-Type: multipart/mixed; boundary=\"m\"\n\n--m\nContent-Type: text/plain\n\nSee below.\n--m\nContent-Type: message/rfc822\n\n" + inner + "--m--\n")
	checkSymbols(t, "attached message", symbols(scan(t, p, "", msg)), []string{urlIP}, nil)
}

// Non-ASCII text, long folded fields and 8-bit bodies are read as the
// plain kind are.
func TestInternational(t *testing.T) {
	p := newPlugin(t, "")
	long := "Subject: =?utf-8?Q?R=C3=A9union_du_comit=C3=A9?=" + strings.Repeat("\n =?utf-8?Q?_tr=C3=A8s_longue_ligne_de_sujet?=", 40)
	msg := compose("Bonjour à tous, le café est prêt. Voir https://bit.ly/caf%C3%A9\n",
		long, "From: =?iso-8859-1?Q?Ren=E9_Dupont?= <rene@example.org>", "Content-Type: text/plain; charset=utf-8",
		"Content-Transfer-Encoding: 8bit")
	got := symbols(scan(t, p, "", msg))
	checkSymbols(t, "international", got, []string{urlShort}, []string{subjAllCaps, emptySubject, spoofName, invalidDate, missingMID})
}
