package main

import (
	"bytes"
	"context"
	"io"
	"sort"
	"strings"
	"testing"
)

// Every command and subcommand answers -h, -help and --help with its usage
// on stdout, naming itself, and exit status 0; nothing on stderr.
func TestHelpOnEveryCommand(t *testing.T) {
	var names []string
	for name := range commands {
		names = append(names, name)
	}
	for name := range pluginCommands {
		names = append(names, "plugin "+name)
	}
	for name := range queueCommands {
		names = append(names, "queue "+name)
	}
	sort.Strings(names)
	if len(names) < 9 {
		t.Fatalf("only %d commands: %v", len(names), names)
	}
	names = append(names, "") // sluice itself
	for _, name := range names {
		for _, help := range []string{"-h", "-help", "--help"} {
			args := append(strings.Fields(name), help)
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), args, nil, &stdout, &stderr)
			want := strings.TrimSpace("usage: sluice " + name)
			if name == "" || name == "plugin" || name == "queue" {
				want += " <command>"
			}
			if code != 0 || !strings.HasPrefix(stdout.String(), want) || stderr.Len() > 0 {
				t.Errorf("sluice %s: exit %d, stdout %q, stderr %q; want 0 and a usage starting %q", strings.Join(args, " "), code, firstLine(stdout.String()), stderr.String(), want)
			}
		}
	}
}

// "sluice help CMD" and "sluice plugin help CMD" print what CMD -h
// prints, with exit status 0, for every command; help for a command that
// does not exist, or a subcommand of one that has none, is a mistake (and
// runs nothing).
func TestHelpCommand(t *testing.T) {
	help := map[string][]string{"": {"help"}} // the help form, by command
	for name := range commands {
		help[name] = []string{"help", name}
	}
	for name := range pluginCommands {
		help["plugin "+name] = []string{"help", "plugin", name}
	}
	for name := range queueCommands {
		help["queue "+name] = []string{"help", "queue", name}
	}
	for name, args := range help {
		var want, stdout, stderr bytes.Buffer
		run(context.Background(), append(strings.Fields(name), "-h"), nil, &want, io.Discard)
		code := run(context.Background(), args, nil, &stdout, &stderr)
		if code != 0 || stdout.String() != want.String() || stderr.Len() > 0 || want.Len() == 0 {
			t.Errorf("sluice %s: exit %d, stdout %q, stderr %q; want 0 and %q", strings.Join(args, " "), code, firstLine(stdout.String()), stderr.String(), firstLine(want.String()))
		}
		if g, sub, ok := strings.Cut(name, " "); ok {
			stdout.Reset()
			args := []string{g, "help", sub}
			if code := run(context.Background(), args, nil, &stdout, &stderr); code != 0 || stdout.String() != want.String() || stderr.Len() > 0 {
				t.Errorf("sluice %s: exit %d, stdout %q, stderr %q; want 0 and %q", strings.Join(args, " "), code, firstLine(stdout.String()), stderr.String(), firstLine(want.String()))
			}
		}
	}
	for _, args := range [][]string{{"help", "nosuch"}, {"help", "serve", "-c", "nosuch.toml"}, {"plugin", "help", "nosuch"}, {"help", "plugin", "nosuch"}, {"queue", "help", "nosuch"}} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), args, nil, &stdout, &stderr)
		if code != 2 || stdout.Len() > 0 || !strings.Contains(stderr.String(), "help: ") {
			t.Errorf("sluice %s: exit %d, stdout %q, stderr %q; want 2 and the mistake on stderr", strings.Join(args, " "), code, stdout.String(), stderr.String())
		}
	}
}

// A flag that does not exist is still a mistake: the error and the usage
// on stderr, exit status 2.
func TestUnknownFlagIsAMistake(t *testing.T) {
	for _, args := range [][]string{{"serve", "-frobnicate"}, {"plugin", "test", "-frobnicate"}, {"version", "-frobnicate"}, {"version", "extra"}} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), args, nil, &stdout, &stderr)
		if code != 2 || stdout.Len() > 0 || !strings.Contains(stderr.String(), "usage: sluice "+args[0]) {
			t.Errorf("sluice %s: exit %d, stdout %q, stderr %q", strings.Join(args, " "), code, stdout.String(), stderr.String())
		}
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
