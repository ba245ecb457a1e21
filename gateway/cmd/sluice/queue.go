package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/admin"
	"github.com/sluice-mail/sluice/gateway/internal/config"
	"github.com/sluice-mail/sluice/gateway/internal/queue"
)

const queueUsage = `usage: sluice queue <command> [flags]

Lists and operates on the queue of a running gateway, through its admin
listener (the gateway holds the queue; these commands ask it).

commands:
  list     [-json] [-domain D] [-sender S] [-kind K] [-held]   the queued messages, as a table
  show     ID [-json]                                        one message: recipients, replies, header fields
  retry    ID... | -all                                      try now (-all: every message not held)
  hold     ID...                                             stop trying until released
  release  ID...                                             undo hold: try again now
  delete   ID...                                             drop, without a DSN to anyone

Each takes -c FILE (the admin listener of its [admin] listen) or -admin
HOST:PORT. Run "sluice queue help <command>" or "sluice queue <command> -h"
for a command's usage.
`

// queueCommands are the subcommands of `sluice queue`.
var queueCommands = map[string]command{
	"list": queueList, "show": queueShow, "retry": queueRetry,
	"hold":    queueOp("hold", "Stops trying the messages until they are released; meanwhile they do not expire."),
	"release": queueOp("release", "Lets held messages be tried again, at once."),
	"delete":  queueOp("delete", "Removes the messages from the queue for good. No DSN is sent: the senders are not told."),
}

// queueGroup is `sluice queue`.
var queueGroup = &group{name: "sluice queue", usage: queueUsage, cmds: queueCommands}

// queueCmd operates the queue of a running gateway.
func queueCmd(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return queueGroup.run(ctx, args, stdin, stdout, stderr)
}

// adminClient asks a running gateway's admin listener.
type adminClient struct {
	base   string // http://host:port
	client *http.Client
}

// adminFlags adds -c and -admin to fs; the function it returns, after
// parsing, gives the client for the listener they name.
func adminFlags(fs *flag.FlagSet) func() (*adminClient, error) {
	file := configFlag(fs)
	addr := fs.String("admin", "", "the admin listener's `host:port` (default: [admin] listen of the -c file)")
	return func() (*adminClient, error) {
		a := *addr
		if a == "" {
			cfg, err := config.Load(*file)
			if err != nil {
				return nil, err
			}
			if a = cfg.AdminListen(); a == "" {
				return nil, fmt.Errorf("%s: [admin] listen is off, so there is nothing to ask; turn it on or give -admin", *file)
			}
		}
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			return nil, fmt.Errorf("admin address %q: %v", a, err)
		}
		// A listener on every address is reached on loopback.
		switch host {
		case "", "0.0.0.0":
			host = "127.0.0.1"
		case "::":
			host = "::1"
		}
		return &adminClient{base: "http://" + net.JoinHostPort(host, port), client: &http.Client{Timeout: time.Minute}}, nil
	}
}

// do sends a request and decodes the JSON answer into v; an answer that
// is not 200 is an error saying what the gateway said.
func (c *adminClient) do(ctx context.Context, method, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the gateway's admin listener (is sluice serve running?): %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return errors.New(e.Error)
		}
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(body)))
	}
	return json.Unmarshal(body, v)
}

func queueList(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("queue list", `usage: sluice queue list [-json] [-domain D] [-sender S] [-kind K] [-held] [-c FILE | -admin HOST:PORT]

Lists the queued messages, oldest first: ID, size, arrival, attempts, the
next attempt ("held" if held), the sender ("<>" for none), the recipients
still pending, and the last attempt's reply or error.

`, stderr)
	client := adminFlags(fs)
	asJSON := fs.Bool("json", false, "print the list as JSON, as GET /admin/queue answers")
	domain := fs.String("domain", "", "only the messages to destination `domain`")
	sender := fs.String("sender", "", "only the messages from `address` (the sender as the client gave it)")
	kind := fs.String("kind", "", "only the messages of `kind` forward, dsn, notice or report")
	held := fs.Bool("held", false, "only the held messages")
	if err := parseFlags(fs, args, stdout); err != nil {
		return usageStatus(err)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sluice queue list: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	c, err := client()
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	q := url.Values{}
	for k, v := range map[string]string{"domain": *domain, "sender": *sender, "kind": *kind} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if *held {
		q.Set("held", "true")
	}
	path := "/admin/queue"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var list []queue.Summary
	if err := c.do(ctx, "GET", path, &list); err != nil {
		fmt.Fprintln(stderr, "sluice queue list:", err)
		return 1
	}
	if *asJSON {
		printJSON(stdout, list)
		return 0
	}
	printQueue(stdout, list)
	return 0
}

// printQueue writes list as a table, as mailq does, with a total.
func printQueue(w io.Writer, list []queue.Summary) {
	if len(list) == 0 {
		fmt.Fprintln(w, "The queue is empty.")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSIZE\tARRIVED\tATTEMPTS\tNEXT ATTEMPT\tSENDER\tRECIPIENTS\tLAST ERROR")
	size := 0
	for _, s := range list {
		next := shortTime(s.NextAttempt)
		if s.Held {
			next = "held"
		}
		sender := s.Sender
		if sender == "" {
			sender = "<>"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\t%s\t%s\t%s\n", s.ID, s.Size, shortTime(s.Arrived), s.Attempts, next, sender,
			strings.Join(s.Recipients, ","), oneLine(s.LastError))
		size += s.Size
	}
	tw.Flush()
	fmt.Fprintf(w, "-- %s, %d bytes\n", messages(len(list)), size)
}

// messages is "1 message" or "n messages".
func messages(n int) string {
	if n == 1 {
		return "1 message"
	}
	return fmt.Sprintf("%d messages", n)
}

func shortTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

// oneLine keeps a multiline reply on the table's line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func printJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func queueShow(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("queue show", `usage: sluice queue show ID [-json] [-c FILE | -admin HOST:PORT]

Shows one queued message: its envelope, every recipient with its status and
last reply, and its header fields (not its body).

`, stderr)
	client := adminFlags(fs)
	asJSON := fs.Bool("json", false, "print it as JSON, as GET /admin/queue/ID answers")
	ids, err := parseWithArgs(fs, args, stdout)
	if err != nil {
		return usageStatus(err)
	}
	if len(ids) != 1 {
		fmt.Fprintln(stderr, "sluice queue show: give one message ID")
		return 2
	}
	c, err := client()
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	var m admin.QueueMessage
	if err := c.do(ctx, "GET", "/admin/queue/"+url.PathEscape(ids[0]), &m); err != nil {
		fmt.Fprintf(stderr, "sluice queue show: %s: %v\n", ids[0], err)
		return 1
	}
	if *asJSON {
		printJSON(stdout, m)
		return 0
	}
	printMessage(stdout, m)
	return 0
}

// printMessage writes m for a person to read.
func printMessage(w io.Writer, m admin.QueueMessage) {
	from, sender := m.From, m.Sender
	if from == "" {
		from = "<>"
	}
	if sender == "" {
		sender = "<> (no DSN)"
	} else if !m.MayBounce {
		sender += " (no DSN)"
	}
	next := shortTime(m.NextAttempt)
	if m.Held {
		next = "held"
	}
	fmt.Fprintf(w, "ID:            %s\n", m.ID)
	fmt.Fprintf(w, "Kind:          %s\n", m.Kind)
	fmt.Fprintf(w, "Arrived:       %s from %s (%s), session %s\n", shortTime(m.Arrived), m.ClientIP, m.Helo, m.SessionID)
	fmt.Fprintf(w, "Size:          %d bytes\n", m.Size)
	fmt.Fprintf(w, "Reverse-path:  %s\n", from)
	fmt.Fprintf(w, "Sender:        %s\n", sender)
	fmt.Fprintf(w, "Attempts:      %d\n", m.Attempts)
	fmt.Fprintf(w, "Next attempt:  %s\n", next)
	if m.LastError != "" {
		fmt.Fprintf(w, "Last error:    %s\n", oneLine(m.LastError))
	}
	var flags []string
	for _, f := range []struct {
		on   bool
		name string
	}{{m.UTF8, "SMTPUTF8"}, {m.RequireTLS, "REQUIRETLS"}, {m.Warned, "delay warning sent"}} {
		if f.on {
			flags = append(flags, f.name)
		}
	}
	if len(flags) > 0 {
		fmt.Fprintf(w, "Flags:         %s\n", strings.Join(flags, ", "))
	}
	fmt.Fprintln(w, "Recipients:")
	for _, r := range m.Recipients {
		fmt.Fprintf(w, "  %s", r.To)
		if r.Orig != "" && r.Orig != r.To {
			fmt.Fprintf(w, " (for %s)", r.Orig)
		}
		fmt.Fprintf(w, ": %s", r.Status)
		if r.Reply != "" {
			fmt.Fprintf(w, ", %s", oneLine(r.Reply))
		}
		if r.Remote != "" {
			fmt.Fprintf(w, " (%s)", r.Remote)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "Header:")
	for _, f := range m.Header {
		fmt.Fprintf(w, "  %s\n", strings.ReplaceAll(f, "\r\n", "\n  "))
	}
}

func queueRetry(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("queue retry", `usage: sluice queue retry ID... | -all [-c FILE | -admin HOST:PORT]

Tries the messages now rather than when their backoff says. -all tries
every message that is not held (as postqueue -f).

`, stderr)
	client := adminFlags(fs)
	all := fs.Bool("all", false, "every message not held")
	ids, err := parseWithArgs(fs, args, stdout)
	if err != nil {
		return usageStatus(err)
	}
	if *all == (len(ids) > 0) {
		fmt.Fprintln(stderr, "sluice queue retry: give message IDs or -all")
		return 2
	}
	if !*all {
		return queueEach(ctx, "retry", ids, client, stdout, stderr)
	}
	c, err := client()
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	var a struct {
		Retried int `json:"retried"`
	}
	if err := c.do(ctx, "POST", "/admin/queue/retry", &a); err != nil {
		fmt.Fprintln(stderr, "sluice queue retry:", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s to retry now\n", messages(a.Retried))
	return 0
}

// queueOp is `sluice queue NAME ID...` for hold, release and delete.
func queueOp(name, text string) command {
	return func(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
		fs := newFlagSet("queue "+name, "usage: sluice queue "+name+" ID... [-c FILE | -admin HOST:PORT]\n\n"+text+"\n\n", stderr)
		client := adminFlags(fs)
		ids, err := parseWithArgs(fs, args, stdout)
		if err != nil {
			return usageStatus(err)
		}
		if len(ids) == 0 {
			fmt.Fprintf(stderr, "sluice queue %s: give message IDs\n", name)
			return 2
		}
		return queueEach(ctx, name, ids, client, stdout, stderr)
	}
}

// done says what an operation did, for its line of output.
var done = map[string]string{"retry": "to retry now", "hold": "held", "release": "released", "delete": "deleted"}

// queueEach applies op to each ID, printing one line per ID; the exit
// status is 1 if any failed.
func queueEach(ctx context.Context, op string, ids []string, client func() (*adminClient, error), stdout, stderr io.Writer) int {
	c, err := client()
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	status := 0
	for _, id := range ids {
		method, path := "POST", "/admin/queue/"+url.PathEscape(id)+"/"+op
		if op == "delete" {
			method, path = "DELETE", "/admin/queue/"+url.PathEscape(id)
		}
		var a struct{}
		if err := c.do(ctx, method, path, &a); err != nil {
			fmt.Fprintf(stderr, "sluice queue %s: %s: %v\n", op, id, err)
			status = 1
			continue
		}
		fmt.Fprintf(stdout, "%s: %s\n", id, done[op])
	}
	return status
}
