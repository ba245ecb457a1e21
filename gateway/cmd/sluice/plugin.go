package main

import (
	"context"
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

// pluginCommands are the subcommands of `sluice plugin`.
var pluginCommands = map[string]command{
	"new": pluginNew, "test": pluginTest, "check": pluginCheck,
}

// pluginCmd runs the tools for plugin authors.
func pluginCmd(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, pluginUsage)
		return 2
	}
	cmd, ok := pluginCommands[args[0]]
	if !ok {
		if isHelp(args[0]) {
			fmt.Fprint(stdout, pluginUsage)
			return 0
		}
		fmt.Fprintf(stderr, "sluice plugin: unknown command %q\n\n%s", args[0], pluginUsage)
		return 2
	}
	return cmd(ctx, args[1:], stdin, stdout, stderr)
}
