package main

import (
	"bytes"
	"strconv"
	"strings"
	"unicode"

	"golang.org/x/net/html"
)

// minHiddenLetters is how many letters of hidden text make it a finding:
// a stray hidden space or a one-word label is layout, a hidden paragraph
// is text written for filters, not readers.
const minHiddenLetters = 20

// element is an open HTML element, with what its text inherits.
type element struct {
	name   string
	bg, fg string // background and text colour, normalised; "" unknown
	hidden bool
}

// voidElements have no end tag, so they are never open.
var voidElements = map[string]bool{
	"area": true, "base": true, "br": true, "col": true, "embed": true, "hr": true, "img": true,
	"input": true, "link": true, "meta": true, "param": true, "source": true, "track": true, "wbr": true,
}

// html scans an HTML part for links and hidden text. It follows the
// tokens, not a parsed tree: a tree of a hostile document costs memory,
// and what is needed is the open elements' styles and the text inside.
func (w *walker) html(doc []byte) {
	z := html.NewTokenizer(bytes.NewReader(doc))
	z.SetMaxBuf(len(doc) + 1)
	var open []element
	var anchor *strings.Builder // the text of the <a> being read
	var href string
	hiddenLetters := 0
	for {
		switch z.Next() {
		case html.ErrorToken:
			if hiddenLetters >= minHiddenLetters {
				w.m.hiddenText = true
			}
			return
		case html.StartTagToken, html.SelfClosingTagToken:
			t := z.Token()
			if t.Data == "a" {
				if h := attr(t, "href"); h != "" {
					href, anchor = h, &strings.Builder{}
				}
			}
			if t.Type == html.SelfClosingTagToken || voidElements[t.Data] {
				continue
			}
			e := element{name: t.Data}
			if len(open) > 0 {
				p := open[len(open)-1]
				e.bg, e.fg, e.hidden = p.bg, p.fg, p.hidden
			}
			style(t, &e)
			if len(open) < 256 { // deeper nesting is not real layout
				open = append(open, e)
			}
		case html.EndTagToken:
			t := z.Token()
			if t.Data == "a" && anchor != nil {
				w.addLink(href, anchor.String())
				anchor = nil
			}
			for i := len(open) - 1; i >= 0; i-- {
				if open[i].name == t.Data {
					open = open[:i]
					break
				}
			}
		case html.TextToken:
			if len(open) > 0 {
				switch open[len(open)-1].name {
				case "style", "script", "title", "head":
					continue
				}
			}
			text := z.Text()
			if anchor != nil && anchor.Len() < 512 {
				anchor.Write(text)
			}
			if len(open) > 0 && open[len(open)-1].hidden {
				hiddenLetters += letters(text)
			}
			w.textURLs(text)
		}
	}
}

// style reads what makes an element's text invisible: display:none,
// visibility:hidden, a font size of 0, the hidden attribute, or a text
// colour equal to the background.
func style(t html.Token, e *element) {
	if _, ok := attrOK(t, "hidden"); ok {
		e.hidden = true
	}
	if c := colour(attr(t, "bgcolor")); c != "" {
		e.bg = c
	}
	if t.Data == "font" {
		if c := colour(attr(t, "color")); c != "" {
			e.fg = c
		}
		if s := strings.TrimSpace(attr(t, "size")); s == "0" {
			e.hidden = true
		}
	}
	for decl := range strings.SplitSeq(strings.ToLower(attr(t, "style")), ";") {
		prop, value, ok := strings.Cut(decl, ":")
		if !ok {
			continue
		}
		prop = strings.TrimSpace(prop)
		value = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(value), "!important"))
		switch prop {
		case "display":
			if value == "none" {
				e.hidden = true
			}
		case "visibility":
			if value == "hidden" {
				e.hidden = true
			}
		case "font-size":
			if zeroSize(value) {
				e.hidden = true
			}
		case "color":
			if c := colour(value); c != "" {
				e.fg = c
			}
		case "background-color", "background":
			if c := colour(value); c != "" {
				e.bg = c
			}
		}
	}
	if e.fg != "" && e.fg == e.bg {
		e.hidden = true
	}
}

// zeroSize reports whether a CSS length is zero: 0, 0px, 0pt, 0em, 0%.
func zeroSize(v string) bool {
	v = strings.TrimRight(v, "abcdefghijklmnopqrstuvwxyz%")
	v = strings.TrimLeft(v, "0")
	return v == "" || v == "." || strings.Trim(v, ".0") == ""
}

// colours are the names that spam uses to match text to its background,
// as #rrggbb.
var colours = map[string]string{
	"white": "#ffffff", "black": "#000000", "red": "#ff0000", "blue": "#0000ff",
	"green": "#008000", "yellow": "#ffff00", "gray": "#808080", "grey": "#808080", "silver": "#c0c0c0",
}

// colour normalises a CSS or HTML colour to #rrggbb, or "" if it is not
// one of the forms it knows (names above, #rgb, #rrggbb, rgb(r,g,b)).
func colour(v string) string {
	v = strings.ToLower(strings.TrimSpace(v))
	if c, ok := colours[v]; ok {
		return c
	}
	if strings.HasPrefix(v, "rgb(") && strings.HasSuffix(v, ")") {
		parts := strings.Split(v[4:len(v)-1], ",")
		if len(parts) != 3 {
			return ""
		}
		const hex = "0123456789abcdef"
		out := []byte{'#'}
		for _, p := range parts {
			n, err := strconv.Atoi(strings.TrimSpace(p))
			if err != nil || n < 0 || n > 255 {
				return ""
			}
			out = append(out, hex[n>>4], hex[n&15])
		}
		return string(out)
	}
	if !strings.HasPrefix(v, "#") || strings.Trim(v[1:], "0123456789abcdef") != "" {
		return ""
	}
	switch len(v) {
	case 4:
		return string([]byte{'#', v[1], v[1], v[2], v[2], v[3], v[3]})
	case 7:
		return v
	}
	return ""
}

func attr(t html.Token, name string) string {
	v, _ := attrOK(t, name)
	return v
}

func attrOK(t html.Token, name string) (string, bool) {
	for _, a := range t.Attr {
		if a.Key == name {
			return a.Val, true
		}
	}
	return "", false
}

// letters counts the letters of text.
func letters(text []byte) int {
	n := 0
	for _, r := range string(text) {
		if unicode.IsLetter(r) {
			n++
		}
	}
	return n
}
