package main

import (
	"context"
	"io"
)

const pluginUsage = `usage: sluice plugin <command> [flags]

commands:
  new    NAME [-dir DIR]                 write a new plugin's folder: code, README and test
  test   PLUGIN.wasm [flags]             run a plugin's stages on one message and print its verdicts
  check  PLUGIN.wasm [--config FILE]     run the ABI conformance checks on a plugin

Run "sluice plugin help <command>" or "sluice plugin <command> -h" for a
command's usage.
`

// pluginCommands are the subcommands of `sluice plugin`.
var pluginCommands = map[string]command{
	"new": pluginNew, "test": pluginTest, "check": pluginCheck,
}

// pluginGroup is `sluice plugin`.
var pluginGroup = &group{name: "sluice plugin", usage: pluginUsage, cmds: pluginCommands}

// pluginCmd runs the tools for plugin authors.
func pluginCmd(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return pluginGroup.run(ctx, args, stdin, stdout, stderr)
}
