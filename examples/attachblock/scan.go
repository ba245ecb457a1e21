package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/textproto"
	"path"
	"slices"
	"strings"
)

// policy is what the plugin refuses.
type policy struct {
	extensions []string // lower case, without the dot
	types      []string // lower case media types
}

// maxDepth bounds how deep multiparts and attached messages nest before
// the scan stops looking: far more than any mail program writes.
const maxDepth = 20

// errTooDeep is a scan that stopped at maxDepth.
var errTooDeep = errors.New("parts nest too deep")

// blocked describes the first attachment the policy refuses: ".exe" or
// "type application/x-msdownload", or "" when there is none. header is the
// entity's header, body its body as sent (transfer-encoded). An error says
// the structure could not be read to the end; what was found before counts.
func (p *policy) blocked(header textproto.MIMEHeader, body io.Reader) (string, error) {
	return p.scan(header, body, 0)
}

func (p *policy) scan(header textproto.MIMEHeader, body io.Reader, depth int) (string, error) {
	if depth > maxDepth {
		return "", errTooDeep
	}
	mediaType, params, err := mime.ParseMediaType(header.Get("Content-Type"))
	if err != nil {
		mediaType, params = "text/plain", nil // RFC 2045 §5.2: the default
	}
	if what := p.match(mediaType, fileNames(header, params)); what != "" {
		return what, nil
	}
	switch {
	case strings.HasPrefix(mediaType, "multipart/"):
		if params["boundary"] == "" {
			return "", fmt.Errorf("%s without a boundary", mediaType)
		}
		parts := multipart.NewReader(body, params["boundary"])
		for {
			part, err := parts.NextRawPart()
			if err == io.EOF {
				return "", nil
			}
			if err != nil {
				return "", err
			}
			if what, err := p.scan(part.Header, part, depth+1); what != "" || err != nil {
				return what, err
			}
		}
	case mediaType == "message/rfc822":
		// An attached message: its own header, then its body.
		r := textproto.NewReader(bufio.NewReader(body))
		inner, err := r.ReadMIMEHeader()
		if err != nil && len(inner) == 0 {
			return "", nil // not a message after all
		}
		return p.scan(inner, r.R, depth+1)
	}
	return "", nil
}

// fileNames returns the names an entity gives itself: Content-Disposition's
// filename and Content-Type's older name parameter, with RFC 2231 and RFC
// 2047 encodings decoded.
func fileNames(header textproto.MIMEHeader, typeParams map[string]string) []string {
	var names []string
	if _, params, err := mime.ParseMediaType(header.Get("Content-Disposition")); err == nil && params["filename"] != "" {
		names = append(names, params["filename"])
	}
	if typeParams["name"] != "" {
		names = append(names, typeParams["name"])
	}
	var dec mime.WordDecoder
	for i, n := range names {
		if d, err := dec.DecodeHeader(n); err == nil {
			names[i] = d
		}
	}
	return names
}

// match returns what the policy refuses about an entity of this media
// type and these file names, or "".
func (p *policy) match(mediaType string, names []string) string {
	if slices.Contains(p.types, mediaType) {
		return "type " + mediaType
	}
	for _, n := range names {
		// A name may carry a path, and trailing dots or spaces that
		// Windows drops: "setup.exe." opens as setup.exe.
		n = strings.TrimRight(path.Base(strings.ReplaceAll(n, "\\", "/")), ". ")
		if dot := strings.LastIndexByte(n, '.'); dot >= 0 {
			ext := strings.ToLower(n[dot+1:])
			if slices.Contains(p.extensions, ext) {
				return "." + ext
			}
		}
	}
	return ""
}
