package main

import (
	"net/netip"
	"net/url"
	"path"
	"strings"
	"unicode"
)

// urlHost returns the host of an http(s) URL (or one without a scheme,
// //host/...), in lower case without a final dot.
func urlHost(raw string) (string, bool) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || u.Host == "" {
		return "", false
	}
	switch strings.ToLower(u.Scheme) {
	case "http", "https", "":
	default:
		return "", false
	}
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	return host, host != ""
}

// isIPHost reports whether a URL's host is an address rather than a name:
// dotted, bracketed IPv6, or the decimal and hex forms (http://3232235777/,
// http://0xc0a80001/) that browsers accept and that hide it.
func isIPHost(host string) bool {
	// Only an IPv6 address has a colon, and only with one can netip accept
	// what the forms below refuse: a name, nearly every host, is told
	// without the error netip would make of it.
	if strings.Contains(host, ":") {
		_, err := netip.ParseAddr(host)
		return err == nil
	}
	if strings.HasPrefix(host, "0x") {
		return strings.Trim(host[2:], "0123456789abcdef.") == ""
	}
	return strings.Trim(host, "0123456789.") == ""
}

// siteOf is the registrable domain of a host name, near enough: its last
// two labels (example.com for www.example.com), or three under a
// country's common second level (example.co.uk). The public suffix list
// would be exact, but Go's package for it brings net/http along, which
// would double the module's size.
func siteOf(host string) string {
	labels := strings.Split(host, ".")
	n := 2
	if len(labels) >= 3 && len(labels[len(labels)-1]) == 2 && secondLevels[labels[len(labels)-2]] {
		n = 3
	}
	if len(labels) <= n {
		return host
	}
	return strings.Join(labels[len(labels)-n:], ".")
}

// secondLevels are the labels under which countries register names:
// co.uk, com.au, ne.jp, gob.mx.
var secondLevels = map[string]bool{
	"ac": true, "co": true, "com": true, "edu": true, "gob": true, "gov": true, "go": true,
	"mil": true, "ne": true, "net": true, "or": true, "org": true, "ltd": true, "plc": true,
}

// shownDomain returns the domain an anchor's text claims to lead to: the
// text is a URL or a bare domain name (with or without a path), such as
// "https://www.bank.example/login" or "www.bank.example". Text that is not
// just that ("click here", "Visit bank.example") claims nothing. (Not a
// regular expression: compiling the one for a label of 1 to 63 characters
// nests 61 levels deep, more stack at start than the gateway gives.)
func shownDomain(text string) (string, bool) {
	if strings.ContainsFunc(text, unicode.IsSpace) {
		return "", false
	}
	lower := strings.ToLower(text)
	for _, scheme := range []string{"https://", "http://"} {
		lower = strings.TrimPrefix(lower, scheme)
	}
	if i := strings.IndexAny(lower, ":/?#"); i >= 0 {
		lower = lower[:i]
	}
	d, ok := domainName(lower)
	if !ok {
		return "", false
	}
	tld := d[strings.LastIndexByte(d, '.')+1:]
	if len(tld) < 2 || strings.Trim(tld, "abcdefghijklmnopqrstuvwxyz") != "" {
		return "", false
	}
	return d, true
}

// phishingLink reports whether an HTML link shows a domain in its text
// other than the one it leads to.
func phishingLink(l link) bool {
	if l.text == "" || isIPHost(l.host) {
		return false
	}
	shown, ok := shownDomain(l.text)
	return ok && siteOf(shown) != siteOf(l.host)
}

// shortener reports whether host is one of the URL shorteners, or a name
// under one.
func (c *config) shortener(host string) bool {
	for d := host; ; {
		if c.shorteners[d] {
			return true
		}
		_, rest, ok := strings.Cut(d, ".")
		if !ok {
			return false
		}
		d = rest
	}
}

// badExtensions are the extensions of files that run when opened, on
// Windows mostly: the payload of malware mail.
var badExtensions = map[string]bool{
	"exe": true, "scr": true, "pif": true, "com": true, "bat": true, "cmd": true, "cpl": true,
	"vbs": true, "vbe": true, "js": true, "jse": true, "wsf": true, "wsh": true, "hta": true,
	"msi": true, "msp": true, "jar": true, "ps1": true, "lnk": true, "reg": true, "dll": true,
	"scf": true, "iso": true, "img": true, "vhd": true, "appx": true, "apk": true,
}

// decoyExtensions are the extensions of documents, which a name that ends
// in a bad extension puts before it to pass for one: invoice.pdf.exe.
var decoyExtensions = map[string]bool{
	"pdf": true, "doc": true, "docx": true, "xls": true, "xlsx": true, "ppt": true, "pptx": true,
	"txt": true, "rtf": true, "odt": true, "jpg": true, "jpeg": true, "png": true, "gif": true,
	"zip": true, "rar": true, "htm": true, "html": true, "csv": true, "mp3": true, "mp4": true,
}

// attachmentSymbol is the finding for a file name: badExt for an
// executable, doubleExt for one dressed as a document, "" for neither.
// Spaces and dots around the extensions, which hide the last one in a
// narrow column, are ignored.
func attachmentSymbol(name string) string {
	name = strings.ToLower(strings.TrimRight(strings.TrimSpace(name), ". "))
	name = path.Base(strings.ReplaceAll(name, `\`, "/"))
	parts := strings.Split(name, ".")
	if len(parts) < 2 || !badExtensions[strings.TrimSpace(parts[len(parts)-1])] {
		return ""
	}
	if len(parts) >= 3 && decoyExtensions[strings.TrimSpace(parts[len(parts)-2])] {
		return doubleExt
	}
	return badExt
}
