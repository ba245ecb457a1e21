package smtpd

import (
	"errors"
	"testing"
)

// LOGIN asks for the user name, then the password; a user name sent with
// AUTH LOGIN itself (an initial response) skips the first question.
func TestLoginServer(t *testing.T) {
	errBad := errors.New("bad")
	check := func(user, password string) error {
		if user == "alice" && password == "secret" {
			return nil
		}
		return errBad
	}
	type step struct {
		response  []byte
		challenge string
		done      bool
		err       error
	}
	for name, steps := range map[string][]step{
		"asked for both": {{nil, "Username:", false, nil}, {[]byte("alice"), "Password:", false, nil}, {[]byte("secret"), "", true, nil}},
		"initial user":   {{[]byte("alice"), "Password:", false, nil}, {[]byte("secret"), "", true, nil}},
		"wrong password": {{nil, "Username:", false, nil}, {[]byte("alice"), "Password:", false, nil}, {[]byte("guess"), "", true, errBad}},
	} {
		l := &loginServer{authenticate: check}
		for i, s := range steps {
			challenge, done, err := l.Next(s.response)
			if string(challenge) != s.challenge || done != s.done || !errors.Is(err, s.err) {
				t.Errorf("%s, step %d: %q %v %v, want %q %v %v", name, i, challenge, done, err, s.challenge, s.done, s.err)
			}
		}
	}
}

// A user name goes into Authentication-Results as a token, or quoted,
// never with a line break.
func TestPvalue(t *testing.T) {
	for name, want := range map[string]string{
		"alice":            "alice",
		"info@custom.test": "info@custom.test",
		"Alice Smith":      `"Alice Smith"`,
		"a\"b\\c":          `"a\"b\\c"`,
		"x\r\nX-Evil: 1":   `"xX-Evil: 1"`,
		"":                 `""`,
	} {
		if got := pvalue(name); got != want {
			t.Errorf("pvalue(%q) = %s, want %s", name, got, want)
		}
	}
}
