package main

import (
	"context"
	"flag"
	"fmt"
	"io"
)

const pluginUsage = `usage: sluice plugin <command> [flags]

commands:
  new    NAME [-dir DIR]                 write a new plugin's folder: code, README and test
  test   PLUGIN.wasm [flags]             run a plugin's stages on one message and print its verdicts
  check  PLUGIN.wasm [--config FILE]     run the ABI conformance checks on a plugin

Run "sluice plugin <command> -h" for a command's flags.
`

// pluginCmd runs the tools for plugin authors.
func pluginCmd(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmds := map[string]func(context.Context, []string, io.Reader, io.Writer, io.Writer) int{
		"new": pluginNew, "test": pluginTest, "check": pluginCheck,
	}
	if len(args) == 0 {
		fmt.Fprint(stderr, pluginUsage)
		return 2
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		if args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
			fmt.Fprint(stdout, pluginUsage)
			return 0
		}
		fmt.Fprintf(stderr, "sluice plugin: unknown command %q\n\n%s", args[0], pluginUsage)
		return 2
	}
	return cmd(ctx, args[1:], stdin, stdout, stderr)
}

// parseWithArgs parses flags that may come before or after the positional
// arguments (sluice plugin test x.wasm --config c.toml), and returns the
// positional ones.
func parseWithArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
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
