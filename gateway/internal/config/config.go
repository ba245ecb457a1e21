// Package config reads gateway.toml once, fills in defaults, and validates
// it, reporting every problem as "file:line: what is wrong". The result is
// a plain value that the rest of the gateway only reads.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/sluice-mail/sluice/gateway/internal/mtasts"
	"github.com/sluice-mail/sluice/sdk/tomlkeys"
)

// Config is the whole gateway configuration.
type Config struct {
	// Hostname is the name in the greeting, EHLO, Received and
	// Authentication-Results.
	Hostname string `toml:"hostname"`
	// Domains are the custom domains Sluice is the MX for. Mail to any
	// other domain (but the SRS domain) is refused: Sluice is no open relay.
	Domains []string `toml:"domains"`
	// DataDir holds what the gateway keeps on disk: ACME account and
	// certificates, the queue, report data. Relative to the file; default
	// DefaultDataDir.
	DataDir string `toml:"data_dir"`

	SMTP   SMTP     `toml:"smtp"`
	Relay  Relay    `toml:"relay"`
	SRS    SRS      `toml:"srs"`
	DKIM   DKIM     `toml:"dkim"`
	Auth   Auth     `toml:"auth"`
	ARC    ARC      `toml:"arc"`
	DNS    DNS      `toml:"dns"`
	Log    Log      `toml:"log"`
	Plugin []Plugin `toml:"plugin"`
	WASM   WASM     `toml:"wasm"`
	Dev    Dev      `toml:"dev"`
	Admin  Admin    `toml:"admin"`

	// TLS gets the listeners' certificate from an ACME CA (issue 11).
	TLS TLS `toml:"tls"`
	// HTTPS is the listener for MTA-STS policies and ACME TLS-ALPN-01.
	HTTPS HTTPS `toml:"https"`
	// MTASTS is the policy published for our domains (RFC 8461).
	MTASTS MTASTS `toml:"mta_sts"`
	// Records are what `sluice dns` prints and `sluice doctor` checks
	// beyond what the rest of the config implies; serving ignores them.
	Records Records `toml:"records"`

	// Scoring maps the findings of plugins to an action.
	Scoring Scoring `toml:"scoring"`

	// Queue keeps what one session cannot settle (issue 12).
	Queue Queue `toml:"queue"`
	// Reports are the DMARC aggregate and TLS reports Sluice sends.
	Reports Reports `toml:"reports"`
	// Console is the activity console on the admin listener (issue 13).
	Console Console `toml:"console"`
	// Cluster makes the gateway one node of several sharing state (issue 14).
	Cluster Cluster `toml:"cluster"`
	// Submission is the message submission service: the owners of the
	// custom addresses send as them (issue 15).
	Submission Submission `toml:"submission"`

	// File is the path the configuration was read from.
	File  string `toml:"-"`
	lines lineIndex
}

// SMTP configures the inbound listener.
type SMTP struct {
	Listen              []string `toml:"listen"`
	MaxMessageSize      Size     `toml:"max_message_size"`
	MaxRecipients       int      `toml:"max_recipients"`
	MaxErrors           int      `toml:"max_errors"`
	MaxConnections      int      `toml:"max_connections"`
	MaxConnectionsPerIP int      `toml:"max_connections_per_ip"`
	CommandTimeout      Duration `toml:"command_timeout"`
	DataTimeout         Duration `toml:"data_timeout"`
	StressTimeout       Duration `toml:"stress_timeout"`
	MaxLineLength       int      `toml:"max_line_length"`
	MaxHops             int      `toml:"max_hops"`
	MaxHeaderFields     int      `toml:"max_header_fields"`
	TLSCert             string   `toml:"tls_cert"`
	TLSKey              string   `toml:"tls_key"`
	TLSSelfSigned       bool     `toml:"tls_self_signed"`

	// BareLineEndings is what happens to a message with a CR or an LF
	// that is not part of a CRLF: "normalize" (the default) turns each
	// into CRLF, "reject" refuses the message.
	BareLineEndings string `toml:"bare_line_endings"`
}

// Relay configures connections to destination MX hosts.
type Relay struct {
	Helo           string   `toml:"helo"`
	Port           int      `toml:"port"`
	SourceIPv4     string   `toml:"source_ipv4"`
	SourceIPv6     string   `toml:"source_ipv6"`
	IPv6           *bool    `toml:"ipv6"`
	ConnectTimeout Duration `toml:"connect_timeout"`
	CommandTimeout Duration `toml:"command_timeout"`
	DataTimeout    Duration `toml:"data_timeout"`
	MaxIdle        *int     `toml:"max_idle"`
	IdleTimeout    Duration `toml:"idle_timeout"`

	// Sources are the outbound addresses, each with its EHLO name; a
	// connection uses one of the destination address's family. They
	// replace source_ipv4/source_ipv6 (both at once is an error). Once
	// loaded, they are the whole list: source_ipv4 and source_ipv6 are
	// in it, each helo is set and each address is in canonical form.
	Sources []Source `toml:"source"`

	// TLSSecurity is the least a destination gets when no MTA-STS or
	// DANE policy asks for more: "may" (the default: STARTTLS when
	// offered, unverified, plaintext after a failed handshake, like
	// Postfix's "may"), "encrypt" (TLS required, unverified) or
	// "verify" (TLS required, certificate valid for the MX name).
	TLSSecurity string `toml:"tls_security"`
	// TLSCAFile adds PEM roots to the system's for verifying destinations
	// (verify, MTA-STS, DANE-TA is separate); "" = system roots only.
	TLSCAFile string `toml:"tls_ca_file"`
	// MTASTS honours destinations' MTA-STS policies (RFC 8461); default true.
	MTASTS *bool `toml:"mta_sts"`
	// DANE honours destinations' TLSA records (RFC 7672) when the
	// resolver's answers are validated ([dns] dnssec); default true.
	DANE *bool `toml:"dane"`
}

// Source is one outbound address.
type Source struct {
	Address string `toml:"address"` // an IPv4 or IPv6 address on this machine
	Helo    string `toml:"helo"`    // EHLO name; default relay.helo

	key string // where it is set, for errors found after loading
}

// SourceError is an error about the i-th outbound address (one that is
// not on this machine), at the line that names it and saying which key
// that is: relay.source[1].address, relay.source_ipv4.
func (c *Config) SourceError(i int, format string, args ...any) *Error {
	key := c.Relay.Sources[i].key
	return c.ErrorAt(key, "%s: %s", tomlkeys.String(strings.Split(key, ".")), fmt.Sprintf(format, args...))
}

// SRS configures sender rewriting.
type SRS struct {
	Domain      string   `toml:"domain"`
	Secrets     []string `toml:"secrets"`
	SecretsFile string   `toml:"secrets_file"`
	MaxAgeDays  int      `toml:"max_age_days"`
	HashLength  int      `toml:"hash_length"`
}

// DKIM configures signing of forwarded mail.
type DKIM struct {
	Domain  string    `toml:"domain"` // the gateway's signing domain; default domains[0]
	Headers []string  `toml:"headers"`
	Keys    []DKIMKey `toml:"key"`
	// SignRecipientDomain adds, to forwarded mail, the signatures of the
	// served domain it was addressed to when that domain has keys of its
	// own; default false: the gateway's signatures only.
	SignRecipientDomain bool `toml:"sign_recipient_domain"`
}

// DKIMKey is one signing key; each key makes one signature.
type DKIMKey struct {
	// Domain is the d= domain the key signs for: the gateway's ([dkim]
	// domain, the default) or one of domains, for mail From there.
	Domain   string `toml:"domain"`
	Selector string `toml:"selector"`
	File     string `toml:"file"`
}

// Auth configures the checks of incoming mail: SPF, DKIM, ARC and DMARC.
// Their results go into Authentication-Results and to the plugins, which
// decide what to do about them.
type Auth struct {
	Enabled *bool    `toml:"enabled"` // default true
	Timeout Duration `toml:"timeout"` // bound on one message's checks; default 30s
	// DMARCDiscovery is how the DMARC policy and organizational domain
	// are found: "rfc9989" (the DNS tree walk, the default) or "rfc7489"
	// (the public suffix list).
	DMARCDiscovery string `toml:"dmarc_discovery"`
}

// ARC configures sealing of forwarded mail (RFC 8617).
type ARC struct {
	Seal *bool `toml:"seal"` // default true when a DKIM key is configured
	// Selector names the [[dkim.key]] that seals; default the first RSA
	// key, since every ARC verifier must support rsa-sha256.
	Selector string `toml:"selector"`
}

// DNS configures the resolver.
type DNS struct {
	Nameservers []string `toml:"nameservers"`
	Timeout     Duration `toml:"timeout"`
	Static      []string `toml:"static"`
	// ClientNameTimeout bounds the lookup of a client's verified name
	// (PTR, then A/AAAA back); default 5s (smtpd).
	ClientNameTimeout Duration `toml:"client_name_timeout"`
	// DNSSEC trusts the AD bit of the nameservers' answers: set it only
	// when they are validating resolvers reached over a trusted path (a
	// local unbound). DANE needs it. Default false.
	DNSSEC bool `toml:"dnssec"`
}

// Log configures logging.
type Log struct {
	Format string `toml:"format"` // text or json
	Level  string `toml:"level"`  // debug, info, warn, error
}

// WASM configures the WebAssembly runtime shared by all plugins.
type WASM struct {
	// CacheDir keeps compiled plugins between runs; "" picks a directory
	// under the user's cache directory.
	CacheDir string `toml:"cache_dir"`
}

// Plugin is one [[plugin]] entry of the filter chain, in chain order.
type Plugin struct {
	Name        string         `toml:"name"`
	Path        string         `toml:"path"`
	Stages      []string       `toml:"stages"`
	Timeout     Duration       `toml:"timeout"`
	MemoryLimit Size           `toml:"memory_limit"`
	StackLimit  Size           `toml:"stack_limit"` // of the call stack, by the frames' estimate; 0: 4MiB
	Instances   int            `toml:"instances"`
	OnFailure   string         `toml:"on_failure"`
	Config      map[string]any `toml:"config"`

	// Capabilities are the host functions granted to the plugin beyond
	// log: headers, body, dns, kv, metrics, http.
	Capabilities []string `toml:"capabilities"`

	// Services are where the plugin runs: "mx" (mail arriving for our
	// domains, on smtp.listen) and "submission" (mail our users send,
	// on the submission listeners); default ["mx"].
	Services []string `toml:"services"`

	// HTTPHosts are the host:port pairs a plugin granted "http" may send
	// requests to, and nothing else.
	HTTPHosts []string `toml:"http_hosts"`
	// HTTPTimeout bounds each of its HTTP requests, within the call's
	// deadline; 0 means the host's default (5s).
	HTTPTimeout Duration `toml:"http_timeout"`
	// HTTPMaxResponse bounds the body of an HTTP response; 0 means the
	// host's default (1 MiB).
	HTTPMaxResponse Size `toml:"http_max_response"`
}

// Admin configures the operator's HTTP listener (health, metrics, reload,
// the loaded chain) and how often plugin files and gateway.toml are
// checked for changes.
type Admin struct {
	// Listen is ip:port; "" turns the listener off. Default
	// DefaultAdminListen, on loopback: the listener has no authentication.
	Listen *string `toml:"listen"`
	// WatchInterval is how often the files are checked; 0 means the
	// gateway's default (2s).
	WatchInterval Duration `toml:"watch_interval"`
	// MetricsToken, if set, is the bearer token /metrics and /healthz
	// ask for.
	MetricsToken string `toml:"metrics_token"`
}

// DefaultAdminListen is the admin listener's address when none is set.
const DefaultAdminListen = "127.0.0.1:8025"

// AdminListen returns the admin listener's address, "" for none.
func (c *Config) AdminListen() string {
	if c.Admin.Listen == nil {
		return DefaultAdminListen
	}
	return *c.Admin.Listen
}

// Scoring maps the total score of a message's findings (every plugin's,
// at every stage of its transaction) to an action. A threshold of 0 is
// off; with none, scores are only recorded (X-Sluice-Score, the log).
type Scoring struct {
	// Reject refuses a message scoring this or more with 550 5.7.1.
	Reject float64 `toml:"reject"`
	// Quarantine marks a message scoring this or more (and less than
	// Reject) with an X-Sluice-Quarantine field.
	Quarantine float64 `toml:"quarantine"`
}

// TLS configures automatic certificates (ACME, RFC 8555).
type TLS struct {
	// ACME gets and renews the certificate for hostname (and the
	// mta-sts.<domain> names when MTA-STS is published) from an ACME CA,
	// answering TLS-ALPN-01 challenges on [https] listen. It excludes
	// smtp.tls_cert and smtp.tls_self_signed.
	ACME bool `toml:"acme"`
	// ACMEEmail is the account's contact address.
	ACMEEmail string `toml:"acme_email"`
	// ACMEDirectory is the CA's directory URL; default Let's Encrypt's.
	ACMEDirectory string `toml:"acme_directory"`
	// ACMECAFile is PEM roots to trust for the directory's HTTPS (a
	// private ACME CA); "" = system roots.
	ACMECAFile string `toml:"acme_ca_file"`
	// ACMERenewBefore renews a certificate this long before it expires,
	// at most 30 days; default a third of its lifetime, at most 30 days
	// (30 days for a 90-day certificate), which stays right as CAs
	// shorten lifetimes.
	ACMERenewBefore Duration `toml:"acme_renew_before"`
}

// HTTPS configures the HTTPS listener, which serves MTA-STS policies and
// ACME TLS-ALPN-01 challenges.
type HTTPS struct {
	Listen []string `toml:"listen"` // default none: off
}

// MTASTS is the MTA-STS policy published for every served domain at
// https://mta-sts.<domain>/.well-known/mta-sts.txt.
type MTASTS struct {
	Mode   string   `toml:"mode"`    // "" (not published), "none", "testing" or "enforce"
	MX     []string `toml:"mx"`      // MX patterns; default records.mx
	MaxAge Duration `toml:"max_age"` // default 1 week
}

// Records says what `sluice dns` prints beyond what the rest of the
// configuration implies.
type Records struct {
	// MX are the domains' MX hosts in preference order (10, 20, ...);
	// default [hostname].
	MX []string `toml:"mx"`
	// SPFInclude, if set, is the SPF include the domains use instead of
	// listing the outbound addresses.
	SPFInclude string `toml:"spf_include"`
	// DMARCPolicy is the p= of the suggested DMARC record; default "none".
	DMARCPolicy string `toml:"dmarc_policy"`
	// ReportAddress receives DMARC aggregate (rua) and TLS-RPT reports;
	// default postmaster@ the first domain.
	ReportAddress string `toml:"report_address"`
}

// Queue is the durable queue of mail that one SMTP session cannot
// settle: copies for further destinations, DSNs, notices and reports.
type Queue struct {
	// Dir holds the queue; default data_dir/queue.
	Dir string `toml:"dir"`
	// MaxAge is how long a message is retried before it expires and its
	// sender gets a failure DSN; default 5 days.
	MaxAge Duration `toml:"max_age"`
	// DelayWarning is when the sender gets a delay DSN for a message
	// still queued; default 4h (set before decoding, in Parse), "0s" =
	// never.
	DelayWarning Duration `toml:"delay_warning"`
	// MinBackoff and MaxBackoff bound the exponential backoff between
	// attempts (with jitter); default 5m and 1h.
	MinBackoff Duration `toml:"min_backoff"`
	MaxBackoff Duration `toml:"max_backoff"`
	// Concurrency is how many deliveries run at once; DomainConcurrency
	// how many of them to one destination domain. Default 50 and 10.
	Concurrency       int `toml:"concurrency"`
	DomainConcurrency int `toml:"domain_concurrency"`
	// MultipleDestinations is what happens when a transaction's
	// destinations are in more than one domain: "first_in_session"
	// (default: the first domain is relayed in session, the others
	// queued) or "queue_all".
	MultipleDestinations string `toml:"multiple_destinations"`
	// DSNLimit is how many DSNs go to one recipient domain per hour;
	// default 100. More are not sent (logged and counted).
	DSNLimit int `toml:"dsn_limit"`
	// OwnerNotices sends the destination mailbox a notice when mail for
	// one of its addresses could not be delivered; default false.
	OwnerNotices bool `toml:"owner_notices"`
}

// Console records every transaction in a database and shows it on the
// admin listener, behind a login.
type Console struct {
	// Enabled records transactions and serves the console and
	// /api/v1/; default false.
	Enabled bool `toml:"enabled"`
	// Database is the SQLite file (default data_dir/activity.db), or a
	// postgres:// or postgresql:// URL: one PostgreSQL database that
	// several nodes share.
	Database string `toml:"database"`
	// Retention is how long a transaction is kept; default 720h (30 days).
	Retention Duration `toml:"retention"`
	// RecordSubject keeps each message's Subject; default true. Off for
	// privacy.
	RecordSubject *bool `toml:"record_subject"`
	// Users may log in; at least one when enabled.
	Users []ConsoleUser `toml:"user"`
}

// Cluster makes this gateway one node of several behind the same MX
// records. The nodes share the plugins' key-value store in Redis or
// Valkey, so that a rate limit or a greylist holds across them; without
// redis, each node keeps that store in its own memory. Read at start only.
type Cluster struct {
	// Node names this node in activity records, so that one console
	// showing every node's mail says which node took each; default the
	// hostname.
	Node string `toml:"node"`
	// Redis is where the key-value store lives: one host:port, the seed
	// nodes of a Redis Cluster, or, with redis_sentinel_master, the
	// Sentinels. None: each node's memory.
	Redis []string `toml:"redis"`
	// RedisSentinelMaster is the master's name the Sentinels watch.
	RedisSentinelMaster string `toml:"redis_sentinel_master"`
	// RedisSentinelUsername and the password in
	// RedisSentinelPasswordFile log in to the Sentinels, whose users are
	// their own, not the master's; none by default.
	RedisSentinelUsername     string `toml:"redis_sentinel_username"`
	RedisSentinelPasswordFile string `toml:"redis_sentinel_password_file"`
	// RedisUsername and the password in RedisPasswordFile (its first
	// line) log in to Redis (ACL, or requirepass with no username).
	RedisUsername     string `toml:"redis_username"`
	RedisPasswordFile string `toml:"redis_password_file"`
	// RedisDB is the database number; 0 by default, and only 0 in a
	// Redis Cluster.
	RedisDB int `toml:"redis_db"`
	// RedisTLS connects with TLS, verifying the server against the
	// system's roots or RedisTLSCAFile.
	RedisTLS       bool   `toml:"redis_tls"`
	RedisTLSCAFile string `toml:"redis_tls_ca_file"`
	// RedisKeyPrefix begins every key, so that one Redis can serve other
	// programs too; default "sluice:".
	RedisKeyPrefix string `toml:"redis_key_prefix"`
	// RedisTimeout bounds each key-value call; past it the plugin gets a
	// temporary error and its on_failure decides. Default 200ms.
	RedisTimeout Duration `toml:"redis_timeout"`
}

// Submission is the message submission service (RFC 6409, RFC 8314):
// the owners of the custom addresses log in and send as them, through
// the same relay as forwarded mail, signed with their domain's own key.
// Off unless a listener is set.
type Submission struct {
	// Listen are ip:port listeners where a client must start TLS
	// (STARTTLS) before it may log in: port 587. None by default.
	Listen []string `toml:"listen"`
	// ListenTLS are ip:port listeners speaking TLS from the first byte
	// (implicit TLS, RFC 8314): port 465. None by default.
	ListenTLS []string `toml:"listen_tls"`
	// Users may log in and send; at least one when a listener is set.
	Users []SubmissionUser `toml:"user"`
	// MaxFailuresPerIP failed logins from one client address, or
	// MaxFailuresPerUser for one user name from anywhere, within
	// FailureWindow make further logins wait (454 4.7.0) until the
	// window ends. Default 10, 30 and 15m.
	MaxFailuresPerIP   int      `toml:"max_failures_per_ip"`
	MaxFailuresPerUser int      `toml:"max_failures_per_user"`
	FailureWindow      Duration `toml:"failure_window"`
	// HideClient leaves the client's name and address out of the
	// Received field of submitted mail, so that a message sent from home
	// does not show the home address; default false (RFC 6409 §8).
	HideClient bool `toml:"hide_client"`
}

// Enabled says whether the submission service has a listener.
func (s *Submission) Enabled() bool { return len(s.Listen)+len(s.ListenTLS) > 0 }

// SubmissionUser is one login of the submission service.
type SubmissionUser struct {
	Name         string `toml:"name"`
	PasswordHash string `toml:"password_hash"` // bcrypt or argon2id, from sluice passwd
	// Senders are the addresses the user may send as, in the envelope
	// and in From: "info@example.com", or "*@example.com" for every
	// address of a domain. Each is at one of domains.
	Senders []string `toml:"senders"`
}

// ConsoleUser is one login of the console: `sluice passwd` prints a
// password hash.
type ConsoleUser struct {
	Name         string `toml:"name"`
	PasswordHash string `toml:"password_hash"` // bcrypt ($2a$/$2b$) or argon2id ($argon2id$)
}

// Reports are the reports Sluice sends to other domains, through the
// queue, signed with the gateway's DKIM key.
type Reports struct {
	// DMARC sends DMARC aggregate reports (RFC 9990) to the rua of the
	// domains seen; default false.
	DMARC bool `toml:"dmarc"`
	// TLS sends TLS reports (RFC 8460) to the rua of the destination
	// domains that publish _smtp._tls; default false.
	TLS bool `toml:"tls"`
	// From is the reports' sender (envelope and From field); default
	// postmaster@ the DKIM domain, so that the reports align for DMARC.
	From string `toml:"from"`
	// OrgName names the reporting organization; default the hostname.
	OrgName string `toml:"org_name"`
}

// DefaultDataDir is where the gateway keeps its files when data_dir is unset.
const DefaultDataDir = "/var/lib/sluice"

// Dev configures the capture inbox used by the demo: an SMTP server that
// stores what it receives as files, standing in for a real mailbox.
type Dev struct {
	InboxListen string `toml:"inbox_listen"`
	InboxDir    string `toml:"inbox_dir"`
}

// Duration is a time.Duration written as a Go duration string ("30s").
type Duration time.Duration

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("not a duration (like \"30s\" or \"5m\"): %q", b)
	}
	if v < 0 {
		return fmt.Errorf("duration must not be negative: %q", b)
	}
	*d = Duration(v)
	return nil
}

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Error is one problem in a configuration file.
type Error struct {
	File string
	Line int
	Msg  string
}

func (e *Error) Error() string {
	if e.Line == 0 { // about the whole file: it cannot be read
		return e.File + ": " + e.Msg
	}
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
}

// Errors is every problem found in a configuration, in file order.
type Errors []*Error

func (es Errors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Load reads, defaults and validates the configuration file at path. On
// failure the error is an Errors value listing every problem found.
func Load(path string) (*Config, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, Errors{{File: path, Msg: readError(err)}}
	}
	return Parse(path, src)
}

// readError says why the configuration file could not be read, without
// repeating its name.
func readError(err error) string {
	if errors.Is(err, fs.ErrNotExist) {
		return "no such file"
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return "cannot read the configuration: " + err.Error()
}

// Parse is Load on a configuration already read; path is used for errors
// and to resolve relative file names.
func Parse(path string, src []byte) (*Config, error) {
	c := &Config{File: path, lines: indexLines(string(src))}
	// Set before decoding, not in setDefaults: "0s" is the operator's
	// "never", which a default for zero would undo.
	c.Queue.DelayWarning = Duration(4 * time.Hour) // as Postfix's delay_warning_time when set
	md, err := toml.Decode(string(src), c)
	if err != nil {
		return nil, Errors{c.decodeError(err, src)}
	}
	v := &validator{c: c}
	reported := map[string]bool{}
	for _, key := range md.Undecoded() {
		// A plugin's own table is the plugin's to judge, at load time; the
		// keys of an unknown table are reported with it.
		if len(key) > 2 && key[0] == "plugin" && key[1] == "config" || reported[key.String()] ||
			len(key) > 1 && reported[key[:len(key)-1].String()] {
			reported[key.String()] = true
			continue
		}
		reported[key.String()] = true
		msg := unknownKey(key, md.Type(key...) == "Hash")
		for _, line := range c.lines.linesOfUnnumbered(key) {
			v.errs = append(v.errs, &Error{File: path, Line: line, Msg: msg})
		}
	}
	c.setDefaults()
	v.validate()
	if len(v.errs) > 0 {
		sort.SliceStable(v.errs, func(i, j int) bool { return v.errs[i].Line < v.errs[j].Line })
		return nil, v.errs
	}
	return c, nil
}

// fileLine keeps a line number from toml within the file: toml says line
// 0 for some errors on the first line (a string broken by CRLF).
func fileLine(line int, src []byte) int {
	return min(max(line, 1), bytes.Count(src, []byte("\n"))+1)
}

// Where returns "file:line" for a key path such as "plugin.0.path", for
// errors found after loading (a key file that cannot be read, a plugin
// that fails to load).
func (c *Config) Where(path string) string {
	return fmt.Sprintf("%s:%d", c.File, c.lines.lookup(path))
}

// ErrorAt makes an Error for a key path.
func (c *Config) ErrorAt(path string, format string, args ...any) *Error {
	return &Error{File: c.File, Line: c.lines.lookup(path), Msg: fmt.Sprintf(format, args...)}
}

// PluginError places an error of loading the i-th plugin at the line of
// the setting it is about, when it names one (with a ConfigKey method, as
// plugin.KeyError has: "capabilities", "config.rule.1.to"), else at the
// plugin's [[plugin]] line.
func (c *Config) PluginError(i int, err error) *Error {
	path := fmt.Sprintf("plugin.%d", i)
	var k interface{ ConfigKey() string }
	if errors.As(err, &k) && k.ConfigKey() != "" {
		path += "." + k.ConfigKey()
	}
	return &Error{File: c.File, Line: c.lines.lookupLoose(path), Msg: err.Error()}
}

// Path resolves a file name from the configuration relative to the
// configuration file's directory.
func (c *Config) Path(name string) string {
	if name == "" || filepath.IsAbs(name) {
		return name
	}
	return filepath.Join(filepath.Dir(c.File), name)
}

// MXHosts are the domains' MX hosts in preference order: records.mx, or
// the hostname.
func (c *Config) MXHosts() []string {
	if len(c.Records.MX) > 0 {
		return c.Records.MX
	}
	return []string{c.Hostname}
}

// DefaultMTASTSMaxAge is a published policy's max_age when none is set:
// a week, long enough to protect, short enough to change (RFC 8461 §3.2
// suggests weeks).
const DefaultMTASTSMaxAge = 7 * 24 * time.Hour

// MTASTSPolicy is the policy published for every served domain, and
// whether one is published at all (mta_sts.mode set).
func (c *Config) MTASTSPolicy() (mtasts.Policy, bool) {
	m := c.MTASTS
	if m.Mode == "" {
		return mtasts.Policy{}, false
	}
	p := mtasts.Policy{Mode: m.Mode, MX: m.MX, MaxAge: m.MaxAge.D()}
	if len(p.MX) == 0 {
		p.MX = c.MXHosts()
	}
	if p.MaxAge == 0 {
		p.MaxAge = DefaultMTASTSMaxAge
	}
	return p, true
}

// DataPath is name inside the data directory (data_dir, relative to the
// file, or DefaultDataDir).
func (c *Config) DataPath(name string) string {
	dir := c.DataDir
	if dir == "" {
		dir = DefaultDataDir
	}
	return filepath.Join(c.Path(dir), name)
}

// ACMEDir is where ACME keeps its account key and certificates, in
// autocert's DirCache layout (one file per host name: key, then chain).
func (c *Config) ACMEDir() string { return c.DataPath("acme") }

// ConsoleDatabase is the activity database: console.database as it is
// when a PostgreSQL URL, else relative to the file, or
// data_dir/activity.db.
func (c *Config) ConsoleDatabase() string {
	switch d := c.Console.Database; {
	case d == "":
		return c.DataPath("activity.db")
	case ConsoleDatabaseIsURL(d):
		return d
	}
	return c.Path(c.Console.Database)
}

// ConsoleDatabaseIsURL says whether console.database names PostgreSQL
// rather than an SQLite file, as activity.Open reads it.
func ConsoleDatabaseIsURL(database string) bool {
	return strings.HasPrefix(database, "postgres://") || strings.HasPrefix(database, "postgresql://")
}

// RedisPasswordPath is cluster.redis_password_file relative to the file.
func (c *Config) RedisPasswordPath() string { return c.Path(c.Cluster.RedisPasswordFile) }

// RedisSentinelPasswordPath is cluster.redis_sentinel_password_file
// relative to the file.
func (c *Config) RedisSentinelPasswordPath() string {
	return c.Path(c.Cluster.RedisSentinelPasswordFile)
}

// RedisTLSCAPath is cluster.redis_tls_ca_file relative to the file.
func (c *Config) RedisTLSCAPath() string { return c.Path(c.Cluster.RedisTLSCAFile) }

// ConsoleRecordSubject says whether the console records subjects.
func (c *Config) ConsoleRecordSubject() bool {
	return c.Console.RecordSubject == nil || *c.Console.RecordSubject
}

// QueueDir is where the queue lives: queue.dir, relative to the file, or
// data_dir/queue.
func (c *Config) QueueDir() string {
	if c.Queue.Dir == "" {
		return c.DataPath("queue")
	}
	return c.Path(c.Queue.Dir)
}
