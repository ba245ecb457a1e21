package submission

import (
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The fail2ban filter shipped in deploy/ finds the client of each failed
// login in the log lines Users write, in both [log] formats, and nothing
// else: not a success, not a throttled login, not another part's line
// with a client, and not an address a guesser put in the user name.
func TestFail2banFilter(t *testing.T) {
	bin, err := exec.LookPath("fail2ban-regex")
	if err != nil {
		t.Skip("fail2ban-regex is not installed (Debian: fail2ban)")
	}
	filter, err := filepath.Abs("../../../deploy/fail2ban/filter.d/sluice-submission.conf")
	if err != nil {
		t.Fatal(err)
	}
	// The handlers as cmd/sluice's newLogger makes them, at debug so
	// that the throttled login's line is there too.
	for format, handler := range map[string]func(io.Writer) slog.Handler{
		"text": func(w io.Writer) slog.Handler {
			return slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})
		},
		"json": func(w io.Writer) slog.Handler {
			return slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})
		},
	} {
		t.Run(format, func(t *testing.T) {
			logFile := filepath.Join(t.TempDir(), "sluice.log")
			f, err := os.Create(logFile)
			if err != nil {
				t.Fatal(err)
			}
			log := slog.New(handler(f))
			u := newUsers(t, Config{Logger: log, MaxFailuresPerIP: 2, MaxFailuresPerUser: 100}, nil)
			u.Authenticate(ctx, ip("192.0.2.1"), "bob", "guess")
			u.Authenticate(ctx, ip("192.0.2.1"), "bob", "guess")
			u.Authenticate(ctx, ip("192.0.2.1"), "bob", "bob-pw") // throttled
			u.Authenticate(ctx, ip("2001:db8:1:2::7"), `x" client=10.6.6.6 msg="submission login failed`, "guess")
			u.Authenticate(ctx, ip("192.0.2.4"), "x\nlevel=WARN msg=\"submission login failed\" client=10.7.7.7", "guess")
			u.Authenticate(ctx, ip("192.0.2.5"), "bob", "bob-pw")                                    // success
			log.Warn("connection refused", "reason", "max_connections_per_ip", "client", "10.8.8.8") // smtpd's
			f.Close()
			lines, _ := os.ReadFile(logFile)

			out, err := exec.Command(bin, "-o", "ip", logFile, filter).CombinedOutput()
			if err != nil {
				t.Fatalf("fail2ban-regex: %v\n%s", err, out)
			}
			got := strings.Fields(string(out))
			want := []string{"192.0.2.1", "192.0.2.1", "2001:db8:1:2::7", "192.0.2.4"}
			if !slices.Equal(got, want) {
				t.Fatalf("fail2ban found %q, want %q, in:\n%s", got, want, lines)
			}
		})
	}
}
