package main

// sluice plugin test: a plugin's stages run through the gateway's plugin
// host, outside a server, with the verdicts printed.

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sluice-mail/sluice/gateway/internal/plugin"
	"github.com/sluice-mail/sluice/gateway/internal/resolver"
	"github.com/sluice-mail/sluice/sdk/abi"
)

// Exit statuses of sluice plugin test.
const (
	exitPassed  = 0 // no stage was refused
	exitRefused = 1 // a stage was refused: reject, tempfail, or a failure
	exitError   = 2 // the plugin could not be run: bad flags, files or load
)

// envelope is what one SMTP session brings to sluice plugin test.
type envelope struct {
	clientIP, clientName, helo string
	tls                        bool
	from                       string
	user                       string // logged in to the submission service; "" at the MX
	rcpts                      []string
	message                    []byte
	auth                       abi.Auth
}

// listFlag collects a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// hostFlags are the settings of the host that runs a plugin outside a
// server, shared by sluice plugin test and check.
type hostFlags struct {
	config, name, caps, dnsServer, cacheDir string
	dnsRecords, httpHosts                   listFlag
	verbose                                 bool

	// Set by sluice plugin check: the settings to use instead of the
	// config file's, the pool size (default 1), and the wall clock the
	// plugin reads (nil: the system's).
	configText []byte
	instances  int
	walltime   func() time.Time
}

// settings returns the plugin's [plugin.config] table as TOML text.
func (h *hostFlags) settings() ([]byte, error) {
	if h.configText != nil || h.config == "" {
		return h.configText, nil
	}
	return os.ReadFile(h.config)
}

func (h *hostFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&h.config, "config", "", "the plugin's settings: a TOML `file` holding its [plugin.config] table")
	fs.StringVar(&h.name, "name", "", "the plugin's `name` (default: the file name without .wasm)")
	fs.StringVar(&h.caps, "capabilities", strings.Join(abi.CapabilityNames(), ","), "host functions to grant, as in gateway.toml: a comma-separated `list`, or \"\" for none")
	fs.StringVar(&h.dnsServer, "dns-server", "", "the nameserver (`ip:port`) for the plugin's DNS lookups (default: /etc/resolv.conf)")
	fs.Var(&h.dnsRecords, "dns-record", "a DNS record the plugin's lookups find, as a zone-file `line` (repeatable)")
	fs.Var(&h.httpHosts, "http-host", "a `host:port` the plugin's HTTP requests may reach, as http_hosts in gateway.toml (repeatable)")
	fs.StringVar(&h.cacheDir, "cache-dir", "", "keep compiled modules in this `directory` between runs")
	fs.BoolVar(&h.verbose, "v", false, "print what the plugin logs")
}

// load starts a host and loads the plugin at path with it. The caller
// closes both.
func (h *hostFlags) load(ctx context.Context, path string, log io.Writer) (*plugin.Host, *plugin.Plugin, error) {
	spec := plugin.Spec{Name: h.name, Path: path, Hostname: "mx.plugin-test.test", Instances: max(h.instances, 1), HTTPHosts: h.httpHosts}
	if spec.Name == "" {
		spec.Name = strings.TrimSuffix(filepath.Base(path), ".wasm")
	}
	cfg, err := h.settings()
	if err != nil {
		return nil, nil, err
	}
	spec.Config = cfg
	for _, name := range strings.Split(h.caps, ",") {
		if name = strings.TrimSpace(name); name == "" {
			continue
		}
		c, ok := abi.ParseCapability(name)
		if !ok {
			return nil, nil, fmt.Errorf("-capabilities: %q is not one of %s", name, strings.Join(abi.CapabilityNames(), ", "))
		}
		spec.Capabilities |= c
	}
	// Failures are printed with the verdicts; the log adds only what the
	// plugin logs at error, or everything with -v.
	level := slog.LevelError
	if h.verbose {
		level = slog.LevelDebug
	}
	rc := resolver.Config{Static: h.dnsRecords}
	if h.dnsServer != "" {
		rc.Nameservers = []string{h.dnsServer}
	}
	res, err := resolver.New(rc)
	if err != nil {
		return nil, nil, fmt.Errorf("-dns-record: %w", err)
	}
	host, err := plugin.NewHost(ctx, plugin.HostConfig{
		CacheDir: h.cacheDir,
		Logger:   slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: level})),
		Resolver: res,
		Walltime: h.walltime,
	})
	if err != nil {
		return nil, nil, err
	}
	p, err := host.Load(ctx, spec)
	if err != nil {
		host.Close(ctx)
		return nil, nil, err
	}
	return host, p, nil
}

const pluginTestUsage = `usage: sluice plugin test PLUGIN.wasm [flags]

Runs the plugin's stages through the gateway's plugin host, in the order of
an SMTP session with the given envelope and message, and prints each
verdict. Exit status: 0 if nothing was refused, 1 if a stage was refused
(reject, tempfail or a failure of the plugin), 2 if it could not run.

`

func pluginTest(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("plugin test", pluginTestUsage, stderr)
	var hf hostFlags
	hf.register(fs)
	var e envelope
	var rcpts listFlag
	eml := fs.String("eml", "", "the message `file` for the data stage (\"-\" reads stdin; default: a short message made from the envelope)")
	fs.StringVar(&e.from, "from", "", "the envelope sender (MAIL FROM); \"\" is the null sender")
	fs.Var(&rcpts, "rcpt", "a recipient (RCPT TO; repeatable; default postmaster@example.test)")
	fs.StringVar(&e.clientIP, "ip", "192.0.2.1", "the client's IP `address`")
	fs.StringVar(&e.clientName, "client-name", "", "the client's verified reverse DNS `name`")
	fs.StringVar(&e.helo, "helo", "client.example", "what the client says in EHLO")
	fs.BoolVar(&e.tls, "tls", false, "the session is encrypted")
	fs.StringVar(&e.user, "user", "", "the `name` the client logged in as, as on the submission service: requests from mail on carry it as authenticated_user (default: none, as at the MX)")
	auth := fs.String("auth", "", "what the gateway found about the message, for the data stage: a comma-separated `list` of spf=, dkim=, arc=, dmarc= and dmarc.policy= results (default: not checked)")
	files, err := parseWithArgs(fs, args, stdout)
	if err != nil {
		return usageStatus(err)
	}
	if len(files) != 1 {
		fs.Usage()
		return exitError
	}
	e.rcpts = rcpts
	if len(e.rcpts) == 0 {
		e.rcpts = []string{"postmaster@example.test"}
	}
	if e.auth, err = parseAuth(*auth); err != nil {
		fmt.Fprintf(stderr, "sluice plugin test: -auth: %v\n", err)
		return exitError
	}
	e.message, err = readMessageFile(*eml, stdin, e)
	if err != nil {
		fmt.Fprintf(stderr, "sluice plugin test: %v\n", err)
		return exitError
	}
	host, p, err := hf.load(ctx, files[0], stderr)
	if err != nil {
		fmt.Fprintf(stderr, "sluice plugin test: %v\n", err)
		return exitError
	}
	defer host.Close(ctx)
	chain := plugin.NewChain(p)
	defer chain.Close(ctx)

	refused := false
	runSession(e, func(req *abi.Request, msg *plugin.Message) bool {
		if !p.Stages().Has(req.Stage) {
			return false
		}
		o := chain.Run(ctx, req, msg)
		fmt.Fprintln(stdout, describeOutcome(req, o))
		r := o.Action == abi.Reject || o.Action == abi.Tempfail
		refused = refused || r
		return r
	})
	if refused {
		return exitRefused
	}
	return exitPassed
}

// readMessageFile reads the message for the data stage, or makes a short
// one from the envelope.
func readMessageFile(name string, stdin io.Reader, e envelope) ([]byte, error) {
	switch name {
	case "":
		return []byte("From: <" + e.from + ">\r\nTo: <" + e.rcpts[0] + ">\r\nSubject: test\r\n\r\ntest\r\n"), nil
	case "-":
		return io.ReadAll(stdin)
	}
	return os.ReadFile(name)
}

// parseAuth reads -auth: "spf=pass,dkim=fail,dmarc=fail,dmarc.policy=reject".
// A dkim result stands for one signature; arc is the chain's status.
func parseAuth(list string) (abi.Auth, error) {
	var a abi.Auth
	for _, item := range strings.Split(list, ",") {
		if item = strings.TrimSpace(item); item == "" {
			continue
		}
		key, value, ok := strings.Cut(item, "=")
		if !ok || value == "" {
			return a, fmt.Errorf("%q is not key=result", item)
		}
		switch key {
		case "spf":
			a.SPF.Result = value
		case "dkim":
			a.DKIM = append(a.DKIM, abi.DKIM{Result: value})
		case "arc":
			a.ARC.Result = value
		case "dmarc":
			a.DMARC.Result = value
		case "dmarc.policy":
			a.DMARC.Policy, a.DMARC.Pct = value, 100
		default:
			return a, fmt.Errorf("unknown key %q (spf, dkim, arc, dmarc, dmarc.policy)", key)
		}
	}
	return a, nil
}

// runSession calls run at each stage of an SMTP session that brings e:
// connect, helo, mail, rcpt for each recipient, data, and close, which
// always comes last. run says whether the stage was refused. Like the
// gateway, it goes no further after a refused connect, helo or mail,
// leaves refused recipients out of the requests that follow, and skips
// data when every recipient was refused. sdk/sdktest's Session does the
// same natively.
func runSession(e envelope, run func(*abi.Request, *plugin.Message) (refused bool)) {
	req := &abi.Request{SessionID: "plugin-test", ClientIP: e.clientIP, ClientName: e.clientName}
	defer func() {
		req.Stage, req.Rcpt = abi.StageClose, ""
		run(req, nil)
	}()
	if req.Stage = abi.StageConnect; run(req, nil) {
		return
	}
	req.Helo, req.TLS = e.helo, e.tls
	if req.Stage = abi.StageHelo; run(req, nil) {
		return
	}
	req.MailFrom, req.AuthenticatedUser = e.from, e.user // a client logs in after EHLO
	if req.Stage = abi.StageMail; run(req, nil) {
		return
	}
	for _, rcpt := range e.rcpts {
		req.Stage, req.Rcpt = abi.StageRcpt, rcpt
		if !run(req, nil) {
			req.Rcpts = append(req.Rcpts, rcpt)
		}
	}
	req.Rcpt = ""
	if len(req.Rcpts) == 0 {
		return
	}
	msg := plugin.NewMessage(e.message)
	req.Stage, req.Size, req.Auth = abi.StageData, uint64(len(msg.Header.Bytes())+2+len(msg.Body)), e.auth
	run(req, msg)
}

// describeOutcome writes one stage's outcome as sdk/sdktest's Step does:
// the stage, then the plugin's action with the reply the client gets, then
// each change.
func describeOutcome(req *abi.Request, o plugin.Outcome) string {
	what := req.Stage.String()
	if req.Stage == abi.StageRcpt {
		what += " <" + req.Rcpt + ">"
	}
	if len(o.Verdicts) == 0 {
		return what + ": not called"
	}
	rec := o.Verdicts[0]
	if rec.Err != nil {
		what += ": failed: " + rec.Err.Error()
		if o.Reply != nil {
			what += "; on_failure tempfail: " + smtpReply(o.Reply)
		}
		return what
	}
	if req.Stage == abi.StageClose {
		return what + ": told"
	}
	v := abi.Verdict{
		Action: rec.Action, Destinations: o.Destinations,
		AddHeaders: o.AddHeaders, RemoveHeaders: o.RemoveHeaders, Findings: o.Findings,
	}
	if rec.Action == abi.Quarantine {
		v.Text = o.Quarantine
	}
	if r := o.Reply; r != nil {
		// The reply the client gets, the host's defaults filled in.
		e := r.EnhancedCode
		v.Code, v.Enhanced, v.Text = uint16(r.Code), fmt.Sprintf("%d.%d.%d", e[0], e[1], e[2]), r.Message
	}
	return what + ": " + abi.Describe(rec.Name, &v)
}

func smtpReply(r *smtp.SMTPError) string {
	e := r.EnhancedCode
	return fmt.Sprintf("%d %d.%d.%d %s", r.Code, e[0], e[1], e[2], r.Message)
}
