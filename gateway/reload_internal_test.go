package gateway

import (
	"slices"
	"testing"

	"github.com/sluice-mail/sluice/gateway/internal/config"
)

func parseConfig(t *testing.T, src string) *config.Config {
	t.Helper()
	c, err := config.Parse("/etc/sluice/gateway.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

const restartOnlyBase = `
hostname = "mx.ours.test"
domains = ["ours.test"]
[srs]
secrets = ["test-secret-0123456789abcdef"]
`

// A reload keeps the running value of each setting it does not apply,
// names it by its dotted key, and takes the rest from the new file.
// Turning STARTTLS off is not applied: the server keeps offering it, with
// the running settings' certificate.
func TestKeepRestartOnly(t *testing.T) {
	running := parseConfig(t, restartOnlyBase+`[smtp]
listen = ["127.0.0.1:25"]
tls_self_signed = true
[scoring]
reject = 10.0
`)
	loaded := parseConfig(t, restartOnlyBase+`[smtp]
listen = ["127.0.0.1:2525"]
[scoring]
reject = 5.0
[log]
level = "debug"
format = "json"
`)
	got, kept := keepRestartOnly(running, loaded)
	if want := []string{"smtp.listen", "smtp.tls_self_signed", "log.format"}; !slices.Equal(kept, want) {
		t.Errorf("kept %v, want %v", kept, want)
	}
	if !slices.Equal(got.SMTP.Listen, running.SMTP.Listen) || !got.SMTP.TLSSelfSigned || got.Log.Format != running.Log.Format {
		t.Errorf("restart-only settings not kept: listen %v, tls_self_signed %v, log.format %q", got.SMTP.Listen, got.SMTP.TLSSelfSigned, got.Log.Format)
	}
	if got.Scoring.Reject != 5 || got.Log.Level != "debug" {
		t.Errorf("reloadable settings not applied: scoring.reject %v, log.level %q", got.Scoring.Reject, got.Log.Level)
	}
	if loaded.SMTP.Listen[0] != "127.0.0.1:2525" {
		t.Error("keepRestartOnly changed the loaded configuration")
	}

	// While STARTTLS stays on, its certificate settings apply.
	loaded = parseConfig(t, restartOnlyBase+`[smtp]
listen = ["127.0.0.1:25"]
tls_cert = "new.pem"
tls_key = "new.key"
[scoring]
reject = 10.0
`)
	got, kept = keepRestartOnly(running, loaded)
	if len(kept) != 0 || got.SMTP.TLSCert != "new.pem" || got.SMTP.TLSSelfSigned {
		t.Errorf("a new certificate while STARTTLS stays on: kept %v, tls_cert %q, tls_self_signed %v", kept, got.SMTP.TLSCert, got.SMTP.TLSSelfSigned)
	}
}

// [tls] and [https] are restart-only, and while ACME stays on so does
// where STARTTLS's certificate comes from; [mta_sts] reloads.
func TestKeepRestartOnlyACME(t *testing.T) {
	running := parseConfig(t, restartOnlyBase+`[tls]
acme = true
[https]
listen = ["127.0.0.1:443"]
[mta_sts]
mode = "testing"
`)
	loaded := parseConfig(t, restartOnlyBase+`[smtp]
tls_cert = "new.pem"
tls_key = "new.key"
[https]
listen = ["127.0.0.1:8443"]
[mta_sts]
mode = "enforce"
`)
	got, kept := keepRestartOnly(running, loaded)
	if want := []string{"smtp.tls_cert", "smtp.tls_key", "tls.acme", "https.listen"}; !slices.Equal(kept, want) {
		t.Errorf("kept %v, want %v", kept, want)
	}
	if !got.TLS.ACME || got.SMTP.TLSCert != "" || got.HTTPS.Listen[0] != "127.0.0.1:443" {
		t.Errorf("restart-only settings not kept: acme %v, tls_cert %q, https.listen %v", got.TLS.ACME, got.SMTP.TLSCert, got.HTTPS.Listen)
	}
	if got.MTASTS.Mode != "enforce" {
		t.Errorf("mta_sts.mode %q, want the reloaded enforce", got.MTASTS.Mode)
	}
}

// [queue] is restart-only: the queue and its scheduler are the process's,
// opened once by Listen, not a generation's.
func TestQueueRestartOnly(t *testing.T) {
	running := parseConfig(t, restartOnlyBase)
	loaded := parseConfig(t, restartOnlyBase+`[queue]
dir = "/srv/queue"
max_age = "24h"
min_backoff = "1m"
domain_concurrency = 2
`)
	got, kept := keepRestartOnly(running, loaded)
	if want := []string{"queue.dir", "queue.max_age", "queue.min_backoff", "queue.domain_concurrency"}; !slices.Equal(kept, want) {
		t.Errorf("kept %v, want %v", kept, want)
	}
	if got.QueueDir() != running.QueueDir() || got.Queue.MaxAge != running.Queue.MaxAge {
		t.Errorf("queue settings applied by a reload: dir %s, max_age %s", got.QueueDir(), got.Queue.MaxAge.D())
	}
}
