//go:build !linux

package main

import (
	"errors"
	"os"
)

// Elsewhere than Linux the password is read as a line, echo and all.
func isTerminal(*os.File) bool { return false }

func readNoEcho(*os.File) (string, error) {
	return "", errors.New("reading without echo is only done on Linux")
}
