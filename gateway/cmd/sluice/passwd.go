package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/sluice-mail/sluice/gateway/internal/login"
)

// passwd prints the hash of a password, for a [[console.user]] or a
// [[submission.user]].
func passwd(_ context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("passwd", `usage: sluice passwd [-bcrypt]

Reads a password and prints its hash for password_hash in a
[[console.user]] or a [[submission.user]] of gateway.toml: argon2id by
default. On a terminal it asks twice, without echo; otherwise it reads
the first line of standard input (echo -n pw | sluice passwd).

`, stderr)
	useBcrypt := fs.Bool("bcrypt", false, "print a bcrypt hash instead of argon2id")
	if err := parseFlags(fs, args, stdout); err != nil {
		return usageStatus(err)
	}
	if fs.NArg() > 0 {
		fmt.Fprintln(stderr, "sluice passwd: the password is read from standard input, not taken as an argument (it would be in the shell's history)")
		return 2
	}
	password, err := readPassword(stdin, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "sluice passwd: %v\n", err)
		return 1
	}
	hash := login.HashArgon2id
	if *useBcrypt {
		hash = login.HashBcrypt
	}
	h, err := hash(password)
	if err != nil {
		fmt.Fprintf(stderr, "sluice passwd: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, h)
	return 0
}

// readPassword asks for the password twice without echo on a terminal,
// or reads a line from stdin otherwise.
func readPassword(stdin io.Reader, stderr io.Writer) (string, error) {
	if f, ok := stdin.(*os.File); ok && isTerminal(f) {
		fmt.Fprint(stderr, "Password: ")
		p, err := readNoEcho(f)
		fmt.Fprintln(stderr)
		if err != nil {
			return "", err
		}
		fmt.Fprint(stderr, "Again: ")
		again, err := readNoEcho(f)
		fmt.Fprintln(stderr)
		if err != nil {
			return "", err
		}
		if p != again {
			return "", errors.New("the passwords differ")
		}
		return checkPassword(p)
	}
	if stdin == nil {
		return "", errors.New("no standard input to read the password from")
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && err != io.EOF {
		return "", err
	}
	return checkPassword(strings.TrimRight(line, "\r\n"))
}

func checkPassword(p string) (string, error) {
	if p == "" {
		return "", errors.New("empty password")
	}
	return p, nil
}
