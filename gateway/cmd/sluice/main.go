// Command sluice is the Sluice email routing gateway.
//
//	sluice serve -c gateway.toml     run the gateway (SIGHUP reloads the configuration)
//	sluice check -c gateway.toml     validate a configuration, plugins and keys included
//	sluice send [flags] [file.eml]   send one message, printing the server's replies
//	sluice keygen [flags]            write a DKIM key and print its DNS record
//	sluice passwd [-bcrypt]          print a console user's password hash
//	sluice dns -c gateway.toml       print the DNS records the configuration needs
//	sluice doctor -c gateway.toml    check the published DNS records and the certificate
//	sluice plugin new|test|check     tools for plugin authors
//	sluice queue list|show|retry|... the queue of a running gateway
//	sluice version                   which build this is
//	sluice help COMMAND              a command's usage, as COMMAND -h prints it
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/sluice-mail/sluice/gateway"
	"github.com/sluice-mail/sluice/gateway/internal/config"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

const usage = `usage: sluice <command> [flags]

commands:
  serve   -c FILE            run the gateway
  check   -c FILE            validate a configuration (keys and plugins are loaded)
  send    [flags] [FILE]     send a message through an SMTP server and show its replies
  keygen  [flags]            write a DKIM private key and print the DNS TXT record to publish
  passwd  [-bcrypt]          read a password and print its hash for a [[console.user]] or [[submission.user]]
  dns     -c FILE            print the DNS records the configuration needs, as zone-file lines
  doctor  -c FILE            check the published DNS records and the certificate, with the fix for each problem
  plugin  new|test|check     tools for plugin authors: scaffold, run and check a plugin
  queue   list|show|retry|hold|release|delete
                             list and operate on the queue of a running gateway
  version                    print the version, revision, Go version and plugin ABI version

Run "sluice help <command>" or "sluice <command> -h" for a command's usage.
`

// command is one of sluice's commands: it gets the arguments after its
// name and returns the exit status.
type command func(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int

// commands are sluice's commands, by name.
var commands = map[string]command{
	"serve": serve, "check": check, "send": send, "keygen": keygen, "passwd": passwd, "dns": dnsCmd, "doctor": doctorCmd, "plugin": pluginCmd, "queue": queueCmd, "version": versionCmd,
}

// sluiceGroup is sluice itself: the commands, and the help on them.
var sluiceGroup = &group{name: "sluice", usage: usage, cmds: commands, groups: map[string]*group{"plugin": pluginGroup, "queue": queueGroup}}

// run is main without the process: tests call it.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 0 && (args[0] == "-version" || args[0] == "--version") {
		return versionCmd(ctx, args[1:], stdin, stdout, stderr)
	}
	return sluiceGroup.run(ctx, args, stdin, stdout, stderr)
}

// group is a command made of subcommands: sluice, and sluice plugin.
type group struct {
	name   string // as typed: "sluice plugin"
	usage  string
	cmds   map[string]command
	groups map[string]*group // the subcommands that are groups too
}

// run runs the subcommand args[0] with the rest of args, or answers help.
func (g *group) run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, g.usage)
		return 2
	}
	cmd, ok := g.cmds[args[0]]
	switch {
	case ok:
		return cmd(ctx, args[1:], stdin, stdout, stderr)
	case args[0] == "help":
		return g.help(ctx, args[1:], stdout, stderr)
	case isHelp(args[0]):
		fmt.Fprint(stdout, g.usage)
		return 0
	}
	fmt.Fprintf(stderr, "%s: unknown command %q\n\n%s", g.name, args[0], g.usage)
	return 2
}

// help answers "help [COMMAND...]": the usage COMMAND prints for -h, or
// the group's own without one. Only -h reaches the command, so that help
// never runs it.
func (g *group) help(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stdout, g.usage)
		return 0
	}
	if sub, ok := g.groups[args[0]]; ok {
		return sub.help(ctx, args[1:], stdout, stderr)
	}
	cmd, ok := g.cmds[args[0]]
	switch {
	case !ok:
		fmt.Fprintf(stderr, "%s help: unknown command %q\n\n%s", g.name, args[0], g.usage)
		return 2
	case len(args) > 1:
		fmt.Fprintf(stderr, "%s help: %s has no subcommands\n", g.name, args[0])
		return 2
	}
	return cmd(ctx, []string{"-h"}, nil, stdout, stderr)
}

func configFlag(fs *flag.FlagSet) *string {
	return fs.String("c", "gateway.toml", "configuration `file`")
}

func serve(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("serve", "usage: sluice serve [-c FILE] [flags]\n\nRuns the gateway until SIGINT or SIGTERM; SIGHUP reloads it.\n\n", stderr)
	file := configFlag(fs)
	grace := fs.Duration("grace", 30*time.Second, "how long sessions in flight may finish at shutdown")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile (go tool pprof) to `file` until the gateway stops")
	memProfile := fs.String("memprofile", "", "write the allocations made until the gateway stops (go tool pprof) to `file`")
	if err := parseFlags(fs, args, stdout); err != nil {
		return usageStatus(err)
	}
	if *cpuProfile != "" {
		stop, err := startCPUProfile(*cpuProfile)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		defer stop()
	}
	if *memProfile != "" {
		defer writeAllocsProfile(*memProfile, stderr)
	}
	cfg, err := config.Load(*file)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	log, level := newLogger(cfg.Log, stderr)
	b := gateway.BuildInfo()
	log.Info("starting", "version", b.Version, "revision", b.Revision, "rsa_signer", b.RSASigner)
	// Caught from here on, so that a SIGHUP while the plugins load is a
	// reload once they have, rather than the end of the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	g, err := gateway.New(ctx, cfg, log, level)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if err := g.Listen(); err != nil {
		fmt.Fprintln(stderr, err)
		g.Close()
		return 1
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	go reloadOn(ctx, hup, g, log)
	if err := g.Serve(ctx, *grace); err != nil {
		log.Error("serve", "err", err)
		return 1
	}
	log.Info("stopped")
	return 0
}

// startCPUProfile profiles the whole process, so that a load benchmark
// (bench/load.sh) can show where the time goes; stop writes the profile.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpuprofile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// writeAllocsProfile writes every allocation sampled since the start,
// with where it was made: what the garbage collector has to clean up.
func writeAllocsProfile(path string, stderr io.Writer) {
	f, err := os.Create(path)
	if err == nil {
		err = pprof.Lookup("allocs").WriteTo(f, 0)
		f.Close()
	}
	if err != nil {
		fmt.Fprintln(stderr, "memprofile:", err)
	}
}

// reloadOn reloads the configuration on each SIGHUP until ctx is done.
// Reload logs its own result.
func reloadOn(ctx context.Context, hup <-chan os.Signal, g *gateway.Gateway, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			log.Info("reloading: SIGHUP")
			g.Reload(ctx)
		}
	}
}

func check(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("check", "usage: sluice check [-c FILE]\n\nValidates a configuration, loading its keys and plugins. Exit status: 0 if\nit is good, 1 if not.\n\n", stderr)
	file := configFlag(fs)
	if err := parseFlags(fs, args, stdout); err != nil {
		return usageStatus(err)
	}
	cfg, err := config.Load(*file)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	chain, err := gateway.CheckChain(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		var errs config.Errors
		if !errors.As(err, &errs) {
			err = fmt.Errorf("%s: %v", *file, err)
		}
		fmt.Fprintln(stderr, err)
		return 1
	}
	// Where each plugin runs: a plugin left on the MX only by default
	// does not run on the mail users submit, which is worth seeing.
	for _, p := range chain.Plugins {
		fmt.Fprintf(stdout, "plugin %s: services %s; stages %s\n", p.Name, strings.Join(p.Services, ", "), strings.Join(p.Stages, ", "))
	}
	fmt.Fprintf(stdout, "%s: OK\n", *file)
	return 0
}

// newLogger makes the logger [log] describes. Its level is a LevelVar,
// which a reload sets from [log] level.
func newLogger(c config.Log, w io.Writer) (*slog.Logger, *slog.LevelVar) {
	level := new(slog.LevelVar)
	level.UnmarshalText([]byte(c.Level)) // validated by config
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), level
	}
	return slog.New(slog.NewTextHandler(w, opts)), level
}
