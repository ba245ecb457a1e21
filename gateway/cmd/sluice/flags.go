package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
)

// newFlagSet makes the flag set of the command `sluice NAME`. Its usage,
// text then the flags, goes to stderr after a mistake, and to stdout when
// asked for with -h, -help or --help (see parseFlags).
func newFlagSet(name, text string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), text)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags is fs.Parse, except that help asked for is an answer, not an
// error: the usage goes to stdout, and usageStatus makes the command exit 0.
// After any other error the usage follows the error on stderr.
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	usage := fs.Usage
	fs.Usage = func() {} // flag would print it to stderr for -h too
	err := fs.Parse(args)
	fs.Usage = usage
	switch {
	case errors.Is(err, flag.ErrHelp):
		stderr := fs.Output()
		fs.SetOutput(stdout)
		fs.Usage()
		fs.SetOutput(stderr)
	case err != nil:
		fs.Usage()
	}
	return err
}

// usageStatus is the exit status after parseFlags failed: 0 if the user
// asked for help, 2 for a mistake in the flags.
func usageStatus(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return 2
}

// parseWithArgs parses flags that may come before or after the positional
// arguments (sluice plugin test x.wasm --config c.toml), and returns the
// positional ones.
func parseWithArgs(fs *flag.FlagSet, args []string, stdout io.Writer) ([]string, error) {
	var positional []string
	for {
		if err := parseFlags(fs, args, stdout); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return positional, nil
		}
		// Parse stopped at a non-flag argument, or after "--".
		positional = append(positional, args[0])
		args = args[1:]
	}
}

// isHelp says whether a command's only argument asks for its usage, for
// the commands that have subcommands rather than flags.
func isHelp(arg string) bool {
	return arg == "help" || arg == "-h" || arg == "-help" || arg == "--help"
}
