package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/sluice-mail/sluice/gateway/internal/login"
)

// sluice passwd prints a hash that verifies the password it read, and
// that the configuration accepts.
func TestPasswd(t *testing.T) {
	for _, c := range []struct {
		args   []string
		prefix string
	}{
		{nil, "$argon2id$v=19$m=65536,t=3,p=4$"},
		{[]string{"-bcrypt"}, "$2a$10$"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), append([]string{"passwd"}, c.args...), strings.NewReader("sluice-demo\n"), &stdout, &stderr)
		hash := strings.TrimSpace(stdout.String())
		if code != 0 || stderr.Len() > 0 || !strings.HasPrefix(hash, c.prefix) {
			t.Fatalf("sluice passwd %v: exit %d, stdout %q, stderr %q; want a hash starting %q", c.args, code, hash, stderr.String(), c.prefix)
		}
		if !login.Verify(hash, "sluice-demo") || login.Verify(hash, "sluice-demo\n") {
			t.Errorf("sluice passwd %v: %q does not verify the password read (without its newline)", c.args, hash)
		}
		if err := login.CheckHash(hash); err != nil {
			t.Errorf("sluice passwd %v: %q: %v", c.args, hash, err)
		}
	}
	for _, c := range []struct {
		args  []string
		stdin string
		code  int
	}{
		{nil, "\n", 1},
		{nil, "", 1},
		{[]string{"secret"}, "", 2}, // not as an argument: it would be in the shell's history
	} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), append([]string{"passwd"}, c.args...), strings.NewReader(c.stdin), &stdout, &stderr); code != c.code || stdout.Len() > 0 || stderr.Len() == 0 {
			t.Errorf("sluice passwd %v with stdin %q: exit %d, stdout %q, stderr %q; want %d and an error", c.args, c.stdin, code, stdout.String(), stderr.String(), c.code)
		}
	}
}

// sluice passwd's help, and sluice help's line for it, name both tables
// whose password_hash it prints.
func TestPasswdHelpNamesItsUsers(t *testing.T) {
	for _, args := range [][]string{{"passwd", "-h"}, {"help"}} {
		var stdout, stderr bytes.Buffer
		run(context.Background(), args, strings.NewReader(""), &stdout, &stderr)
		help := strings.Join(strings.Fields(stdout.String()+stderr.String()), " ")
		for _, want := range []string{"[[console.user]]", "[[submission.user]]"} {
			if !strings.Contains(help, want) {
				t.Errorf("sluice %s does not mention %s:\n%s", strings.Join(args, " "), want, help)
			}
		}
	}
}
