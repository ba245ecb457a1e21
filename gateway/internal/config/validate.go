package config

import (
	"bytes"
	"fmt"
	"math"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/sluice-mail/sluice/gateway/internal/address"
	"github.com/sluice-mail/sluice/gateway/internal/dmarc"
	"github.com/sluice-mail/sluice/gateway/internal/login"
	"github.com/sluice-mail/sluice/gateway/internal/mtasts"
	"github.com/sluice-mail/sluice/gateway/internal/plugin/interrupt"
	"github.com/sluice-mail/sluice/gateway/internal/relay"
	"github.com/sluice-mail/sluice/sdk/abi"
)

// setDefaults fills in what depends on other settings. Defaults that are a
// single part's own business (timeouts, pool sizes) stay zero here and are
// chosen by that part, so each default is written down once.
func (c *Config) setDefaults() {
	s := &c.SMTP
	if s.Listen == nil {
		s.Listen = []string{"0.0.0.0:25", "[::]:25"}
	}
	if s.MaxMessageSize == 0 {
		s.MaxMessageSize = 25 << 20
	}
	if s.MaxRecipients == 0 {
		s.MaxRecipients = 100 // RFC 5321 §4.5.3.1.8: at least 100 must be accepted
	}
	if s.MaxErrors == 0 {
		s.MaxErrors = 20 // as Postfix's smtpd_hard_error_limit
	}
	if s.MaxConnections == 0 {
		s.MaxConnections = 1000
	}
	if s.MaxConnectionsPerIP == 0 {
		s.MaxConnectionsPerIP = 20
	}
	if s.CommandTimeout == 0 {
		s.CommandTimeout = Duration(5 * 60e9) // RFC 5321 §4.5.3.2.7
	}
	if s.DataTimeout == 0 {
		s.DataTimeout = Duration(10 * 60e9)
	}
	if s.StressTimeout == 0 {
		s.StressTimeout = Duration(10e9) // as Postfix's smtpd_timeout under stress
	}
	if s.MaxLineLength == 0 {
		s.MaxLineLength = 4096
	}
	if s.MaxHops == 0 {
		s.MaxHops = 50 // as Postfix's hopcount_limit
	}
	if s.MaxHeaderFields == 0 {
		s.MaxHeaderFields = 1000
	}
	if s.BareLineEndings == "" {
		s.BareLineEndings = "normalize"
	}
	if c.Relay.TLSSecurity == "" {
		c.Relay.TLSSecurity = "may"
	}
	q := &c.Queue
	if q.MaxAge == 0 {
		q.MaxAge = Duration(5 * 24 * time.Hour) // as Postfix's maximal_queue_lifetime
	}
	if q.MinBackoff == 0 {
		q.MinBackoff = Duration(5 * time.Minute)
	}
	if q.MaxBackoff == 0 {
		q.MaxBackoff = Duration(time.Hour)
	}
	if q.Concurrency == 0 {
		q.Concurrency = 50
	}
	if q.DomainConcurrency == 0 {
		q.DomainConcurrency = 10
	}
	if q.MultipleDestinations == "" {
		q.MultipleDestinations = "first_in_session"
	}
	if q.DSNLimit == 0 {
		q.DSNLimit = 100
	}
	if c.Console.Retention == 0 {
		c.Console.Retention = Duration(30 * 24 * time.Hour)
	}
	if c.Cluster.Node == "" {
		c.Cluster.Node = c.Hostname
	}
	sub := &c.Submission
	if sub.MaxFailuresPerIP == 0 {
		sub.MaxFailuresPerIP = 10
	}
	if sub.MaxFailuresPerUser == 0 {
		// Higher than per IP: anyone can spend a user's allowance, and
		// the user is then locked out with the guesser.
		sub.MaxFailuresPerUser = 30
	}
	if sub.FailureWindow == 0 {
		sub.FailureWindow = Duration(15 * time.Minute)
	}
	if c.Cluster.RedisKeyPrefix == "" {
		c.Cluster.RedisKeyPrefix = "sluice:"
	}
	if c.Cluster.RedisTimeout == 0 {
		c.Cluster.RedisTimeout = Duration(200 * time.Millisecond)
	}
	if c.Log.Format == "" {
		c.Log.Format = "text"
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	for i := range c.Plugin {
		if c.Plugin[i].OnFailure == "" {
			c.Plugin[i].OnFailure = "tempfail"
		}
		if c.Plugin[i].Services == nil {
			// Only the MX by default: a plugin that judges other servers
			// (a DNSBL, SPF) would refuse a user's mail sent from home.
			c.Plugin[i].Services = []string{ServiceMX}
		}
	}
}

type validator struct {
	c    *Config
	errs Errors
}

func (v *validator) errorf(path, format string, args ...any) {
	v.errs = append(v.errs, v.c.ErrorAt(path, format, args...))
}

func (v *validator) validate() {
	c := v.c
	if c.Hostname == "" {
		v.errorf("hostname", "missing key \"hostname\": the name this gateway greets with")
	} else if name, err := normalizeDomain(c.Hostname); err != nil {
		v.errorf("hostname", "hostname: %v", err)
	} else {
		c.Hostname = name
	}
	if len(c.Domains) == 0 {
		v.errorf("domains", "missing key \"domains\": the custom domains to accept mail for")
	}
	seen := map[string]bool{}
	firstOK := false // domains[0], the default of others, is a name
	for i, d := range c.Domains {
		name, err := normalizeDomain(d)
		if err != nil {
			v.errorf("domains", "domains[%d]: %v", i, err)
			continue
		}
		firstOK = firstOK || i == 0
		if seen[name] {
			v.errorf("domains", "domains[%d]: %q is listed twice", i, d)
		}
		seen[name] = true
		c.Domains[i] = name
	}
	// Defaults derived from the names above, once those are normalised.
	// A default from a name in error is left unset: its error is
	// reported once, at its own line, not again at a key not written.
	if c.Relay.Helo == "" {
		c.Relay.Helo = c.Hostname
	}
	if firstOK {
		if c.SRS.Domain == "" {
			c.SRS.Domain = c.Domains[0]
		}
		if c.DKIM.Domain == "" {
			c.DKIM.Domain = c.Domains[0]
		}
	}
	v.smtp()
	v.relay()
	v.srs()
	v.dkim()
	v.arc()
	v.auth()
	v.dns()
	v.log()
	v.plugins()
	v.scoring()
	v.dev()
	v.admin()
	v.records()
	v.tls()
	v.https()
	v.mtaSTS()
	v.queue()
	v.reports()
	v.console()
	v.cluster()
	v.submission()
}

func (v *validator) cluster() {
	c := &v.c.Cluster
	for i, a := range c.Redis {
		if host, port, err := net.SplitHostPort(a); err != nil || host == "" || port == "" {
			v.errorf(fmt.Sprintf("cluster.redis.%d", i), "cluster.redis: %q is not host:port", a)
		}
	}
	if len(c.Redis) == 0 {
		for _, k := range []struct {
			key string
			set bool
		}{
			{"redis_sentinel_master", c.RedisSentinelMaster != ""},
			{"redis_username", c.RedisUsername != ""},
			{"redis_password_file", c.RedisPasswordFile != ""},
			{"redis_db", c.RedisDB != 0},
			{"redis_tls", c.RedisTLS},
			{"redis_tls_ca_file", c.RedisTLSCAFile != ""},
		} {
			if k.set {
				v.errorf("cluster."+k.key, "cluster.%s: needs cluster.redis, the addresses of Redis", k.key)
			}
		}
	}
	for _, k := range []struct {
		key string
		set bool
	}{
		{"redis_sentinel_username", c.RedisSentinelUsername != ""},
		{"redis_sentinel_password_file", c.RedisSentinelPasswordFile != ""},
	} {
		if k.set && c.RedisSentinelMaster == "" {
			v.errorf("cluster."+k.key, "cluster.%s: needs cluster.redis_sentinel_master", k.key)
		}
	}
	if c.RedisDB < 0 {
		v.errorf("cluster.redis_db", "cluster.redis_db: must not be negative")
	}
	if c.RedisTLSCAFile != "" && !c.RedisTLS {
		v.errorf("cluster.redis_tls_ca_file", "cluster.redis_tls_ca_file: needs redis_tls = true")
	}
	if t := c.RedisTimeout.D(); t <= 0 || t > 10*time.Second {
		v.errorf("cluster.redis_timeout", "cluster.redis_timeout: %s is not between 1ms and 10s", t)
	}
}

func (v *validator) console() {
	c := &v.c.Console
	if c.Retention <= 0 {
		v.errorf("console.retention", "console.retention: must be positive")
	}
	if c.Enabled && len(c.Users) == 0 {
		v.errorf("console.enabled", "console.enabled: at least one [[console.user]] is needed to log in")
	}
	if ConsoleDatabaseIsURL(c.Database) {
		// Not url.Parse's error: it quotes the URL, password and all.
		if _, err := url.Parse(c.Database); err != nil {
			v.errorf("console.database", "console.database: not a URL (postgres://user:password@host:port/database)")
		}
	}
	seen := map[string]bool{}
	for i, u := range c.Users {
		path := fmt.Sprintf("console.user.%d", i)
		if u.Name == "" {
			v.errorf(path, "console.user[%d]: missing name", i)
		} else if seen[u.Name] {
			v.errorf(path, "console.user[%d]: %q is listed twice", i, u.Name)
		}
		seen[u.Name] = true
		v.passwordHash(path, fmt.Sprintf("console.user[%d]", i), u.PasswordHash)
	}
}

// passwordHash checks a user's password_hash: name is how errors call
// the user.
func (v *validator) passwordHash(path, name, hash string) {
	if hash == "" {
		v.errorf(path, "%s: missing key \"password_hash\" (sluice passwd prints one)", name)
	} else if !strings.HasPrefix(hash, "$2a$") && !strings.HasPrefix(hash, "$2b$") && !strings.HasPrefix(hash, "$argon2id$") {
		v.errorf(path, "%s: password_hash must be a bcrypt or argon2id hash (sluice passwd prints one)", name)
	} else if err := login.CheckHash(hash); err != nil {
		v.errorf(path, "%s: password_hash: %v (sluice passwd prints a good one)", name, err)
	}
}

func (v *validator) submission() {
	c := v.c
	s := &c.Submission
	for i, a := range s.Listen {
		if err := checkListen(a); err != nil {
			v.errorf("submission.listen", "submission.listen[%d]: %v", i, err)
		}
	}
	for i, a := range s.ListenTLS {
		if err := checkListen(a); err != nil {
			v.errorf("submission.listen_tls", "submission.listen_tls[%d]: %v", i, err)
		}
	}
	v.positive("submission.max_failures_per_ip", s.MaxFailuresPerIP)
	v.positive("submission.max_failures_per_user", s.MaxFailuresPerUser)
	if s.FailureWindow <= 0 {
		v.errorf("submission.failure_window", "submission.failure_window: must be positive")
	}
	if !s.Enabled() {
		return
	}
	key := "submission.listen"
	if len(s.Listen) == 0 {
		key = "submission.listen_tls"
	}
	if !c.TLS.ACME && c.SMTP.TLSCert == "" && !c.SMTP.TLSSelfSigned {
		// Passwords never cross in clear text: no certificate, no logins.
		v.errorf(key, "%s: submission needs TLS: set tls.acme = true, or smtp.tls_cert and smtp.tls_key", key)
	}
	if len(s.Users) == 0 {
		v.errorf(key, "%s: at least one [[submission.user]] is needed to log in", key)
	}
	domains := map[string]bool{}
	for _, d := range c.Domains {
		domains[d] = true
	}
	seen := map[string]bool{}
	for i, u := range s.Users {
		path := fmt.Sprintf("submission.user.%d", i)
		name := fmt.Sprintf("submission.user[%d]", i)
		// Each problem at the line of its key, or of the user's
		// [[submission.user]] when the key is missing.
		if u.Name == "" {
			v.errorf(path, "%s: missing key \"name\": the user name to log in with", name)
		} else if seen[u.Name] {
			v.errorf(path+".name", "%s: %q is listed twice", name, u.Name)
		}
		seen[u.Name] = true
		v.passwordHash(path+".password_hash", name, u.PasswordHash)
		if len(u.Senders) == 0 {
			v.errorf(path+".senders", "%s: senders: at least one address the user may send as is needed", name)
		}
		for j, sender := range u.Senders {
			norm, err := senderPattern(sender)
			if err != nil {
				v.errorf(path+".senders", "%s: senders[%d]: %v", name, j, err)
				continue
			}
			if d := norm[strings.LastIndexByte(norm, '@')+1:]; !domains[d] {
				// Only our own domains: their keys sign what users send,
				// and their SPF records name our addresses.
				v.errorf(path+".senders", "%s: senders[%d]: %q: %s is not one of domains (%s)", name, j, sender, d, strings.Join(c.Domains, ", "))
				continue
			}
			s.Users[i].Senders[j] = norm
		}
	}
}

// senderPattern checks one of a user's senders, "local@domain" or
// "*@domain", and returns it with its domain normalised as domains are.
func senderPattern(p string) (string, error) {
	at := strings.LastIndexByte(p, '@')
	if at <= 0 || at == len(p)-1 {
		return "", fmt.Errorf("%q is not an address (info@example.com) or a whole domain (*@example.com)", p)
	}
	local := p[:at]
	if strings.Contains(local, "*") && local != "*" {
		return "", fmt.Errorf("%q: \"*\" is a pattern only as the whole local part (*@%s)", p, p[at+1:])
	}
	domain, err := normalizeDomain(p[at+1:])
	if err != nil {
		return "", fmt.Errorf("%q: %v", p, err)
	}
	return local + "@" + domain, nil
}

func (v *validator) queue() {
	q := &v.c.Queue
	for _, d := range []struct {
		key string
		val Duration
	}{{"max_age", q.MaxAge}, {"min_backoff", q.MinBackoff}, {"max_backoff", q.MaxBackoff}} {
		if d.val <= 0 {
			v.errorf("queue."+d.key, "queue.%s: must be positive", d.key)
		}
	}
	if q.DelayWarning < 0 {
		v.errorf("queue.delay_warning", "queue.delay_warning: must not be negative (\"0s\" is never)")
	}
	if q.MinBackoff > 0 && q.MaxBackoff > 0 && q.MaxBackoff < q.MinBackoff {
		v.errorf("queue.max_backoff", "queue.max_backoff (%s) is less than queue.min_backoff (%s)", q.MaxBackoff.D(), q.MinBackoff.D())
	}
	v.positive("queue.concurrency", q.Concurrency)
	v.positive("queue.domain_concurrency", q.DomainConcurrency)
	v.positive("queue.dsn_limit", q.DSNLimit)
	switch q.MultipleDestinations {
	case "first_in_session", "queue_all":
	default:
		v.errorf("queue.multiple_destinations", "queue.multiple_destinations: %q is not first_in_session or queue_all", q.MultipleDestinations)
	}
}

func (v *validator) reports() {
	r := &v.c.Reports
	if r.From == "" && v.c.DKIM.Domain != "" {
		r.From = "postmaster@" + v.c.DKIM.Domain
	}
	if r.From != "" {
		// An address the queue's envelope and the From field can both
		// carry: no display name, no angle brackets.
		if local, domain, err := address.Split(r.From); err != nil || strings.ContainsAny(local, " \t\",;<>") {
			v.errorf("reports.from", "reports.from: %q is not an address like postmaster@example.org", r.From)
		} else {
			r.From = local + "@" + domain
		}
	} else if r.DMARC || r.TLS {
		v.errorf("reports.from", "reports.from: reports need a sender address, and there is no DKIM domain to make postmaster@ one")
	}
	if r.OrgName == "" {
		r.OrgName = v.c.Hostname
	}
}

func (v *validator) smtp() {
	s := &v.c.SMTP
	if len(s.Listen) == 0 {
		v.errorf("smtp.listen", "smtp.listen: at least one address is needed")
	}
	for i, a := range s.Listen {
		if err := checkListen(a); err != nil {
			v.errorf("smtp.listen", "smtp.listen[%d]: %v", i, err)
		}
	}
	v.positive("smtp.max_recipients", s.MaxRecipients)
	v.positive("smtp.max_errors", s.MaxErrors)
	v.positive("smtp.max_connections", s.MaxConnections)
	v.positive("smtp.max_connections_per_ip", s.MaxConnectionsPerIP)
	v.positive("smtp.max_hops", s.MaxHops)
	v.positive("smtp.max_header_fields", s.MaxHeaderFields)
	if s.MaxLineLength < 512 {
		// RFC 5321 §4.5.3.1.4: a command line may be 512 octets long.
		v.errorf("smtp.max_line_length", "smtp.max_line_length: must be at least 512, not %d", s.MaxLineLength)
	}
	if s.BareLineEndings != "normalize" && s.BareLineEndings != "reject" {
		v.errorf("smtp.bare_line_endings", "smtp.bare_line_endings: %q is neither \"normalize\" nor \"reject\"", s.BareLineEndings)
	}
	if (s.TLSCert == "") != (s.TLSKey == "") {
		v.errorf("smtp", "smtp: tls_cert and tls_key go together: set both or neither")
	}
	if s.TLSSelfSigned && s.TLSCert != "" {
		v.errorf("smtp.tls_self_signed", "smtp.tls_self_signed: cannot be used with tls_cert; choose one")
	}
}

func (v *validator) relay() {
	r := &v.c.Relay
	if r.Port < 0 || r.Port > 65535 {
		v.errorf("relay.port", "relay.port: %d is not a port number", r.Port)
	}
	if r.MaxIdle != nil && *r.MaxIdle < 0 {
		v.errorf("relay.max_idle", "relay.max_idle: must not be negative")
	}
	if _, err := relay.ParseSecurity(r.TLSSecurity); err != nil {
		v.errorf("relay.tls_security", "relay.tls_security: %v", err)
	}
	if r.Helo != v.c.Hostname {
		if name, err := normalizeDomain(r.Helo); err != nil {
			v.errorf("relay.helo", "relay.helo: %v", err)
		} else {
			r.Helo = name
		}
	}
	v.sources()
}

// sources checks [[relay.source]] and fills in each one's helo; then it
// adds source_ipv4 and source_ipv6, the older way to name one address of
// each family, so that Sources is the whole list.
func (v *validator) sources() {
	r := &v.c.Relay
	addrs := map[netip.Addr]bool{}
	listed := len(r.Sources) > 0
	for i := range r.Sources {
		s := &r.Sources[i]
		path := fmt.Sprintf("relay.source.%d", i)
		s.key = path + ".address"
		if s.Address == "" {
			v.errorf(path, "relay.source[%d]: missing key \"address\": the outbound IP address", i)
		} else if a, err := sourceAddr(s.Address); err != nil {
			v.errorf(s.key, "relay.source[%d].address: %v", i, err)
		} else if addrs[a] {
			v.errorf(s.key, "relay.source[%d].address: %s is listed twice", i, a)
		} else if a.Is6() && r.IPv6 != nil && !*r.IPv6 {
			// The relay never connects over IPv6: the address would sit
			// in the SPF records and the doctor's checks, unused.
			v.errorf(s.key, "relay.source[%d].address: %s is an IPv6 address, but relay.ipv6 = false: no connection comes from it; remove it, or set ipv6 = true", i, a)
		} else {
			addrs[a] = true
			s.Address = a.String()
		}
		if s.Helo == "" {
			s.Helo = r.Helo
		} else if name, err := normalizeDomain(s.Helo); err != nil {
			v.errorf(path+".helo", "relay.source[%d].helo: %v", i, err)
		} else {
			s.Helo = name
		}
	}
	for _, old := range []struct {
		key, value, family string
		is                 func(netip.Addr) bool
	}{
		{"source_ipv4", r.SourceIPv4, "IPv4", netip.Addr.Is4},
		{"source_ipv6", r.SourceIPv6, "IPv6", netip.Addr.Is6},
	} {
		if old.value == "" {
			continue
		}
		if listed {
			v.errorf("relay."+old.key, "relay.%s: cannot be used with [[relay.source]]: give %s a [[relay.source]] instead", old.key, old.value)
			continue
		}
		a, err := sourceAddr(old.value)
		if err != nil || !old.is(a) {
			v.errorf("relay."+old.key, "relay.%s: %q is not an %s address", old.key, old.value, old.family)
			continue
		}
		if a.Is6() && r.IPv6 != nil && !*r.IPv6 {
			// Never used, as before [[relay.source]]; not a source, so
			// that sluice dns lists no address mail never comes from.
			continue
		}
		r.Sources = append(r.Sources, Source{Address: a.String(), Helo: r.Helo, key: "relay." + old.key})
	}
}

// sourceAddr parses an outbound address: one IPv4 or IPv6 address that a
// connection can come from.
func sourceAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	switch {
	case err != nil:
		return netip.Addr{}, fmt.Errorf("%q is not an IP address", s)
	case a.Zone() != "":
		return netip.Addr{}, fmt.Errorf("%q has a zone: mail to other networks cannot come from a link-local address", s)
	case a.Is4In6():
		return netip.Addr{}, fmt.Errorf("%q is an IPv4 address written as IPv6: write %s", s, a.Unmap())
	case !a.IsGlobalUnicast() && !a.IsLoopback():
		return netip.Addr{}, fmt.Errorf("%q is not a unicast address a connection can come from", s)
	}
	return a, nil
}

func (v *validator) srs() {
	s := &v.c.SRS
	if s.Domain != "" {
		name, err := normalizeDomain(s.Domain)
		if err != nil {
			v.errorf("srs.domain", "srs.domain: %v", err)
		}
		s.Domain = name
	}
	if len(s.Secrets) == 0 && s.SecretsFile == "" {
		v.errorf("srs", "srs: missing key \"secrets\" (or \"secrets_file\"): SRS needs a secret to sign rewritten senders")
	}
	for i, sec := range s.Secrets {
		if len(sec) < 16 {
			v.errorf("srs.secrets", "srs.secrets[%d]: too short (%d bytes); use at least 16 random bytes", i, len(sec))
		}
	}
	if s.MaxAgeDays < 0 {
		v.errorf("srs.max_age_days", "srs.max_age_days: must not be negative")
	}
	if s.HashLength != 0 && (s.HashLength < 4 || s.HashLength > 27) {
		// 27 is the whole base64 HMAC-SHA1; under 4 is too easy to forge.
		v.errorf("srs.hash_length", "srs.hash_length: must be between 4 and 27, not %d", s.HashLength)
	}
}

var selectorRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$`)

func (v *validator) dkim() {
	d := &v.c.DKIM
	if d.Domain != "" {
		name, err := normalizeDomain(d.Domain)
		if err != nil {
			v.errorf("dkim.domain", "dkim.domain: %v", err)
		}
		d.Domain = name
	}
	gatewayKey := false
	selectors := map[string]bool{} // domain + " " + selector
	for i := range d.Keys {
		k := &d.Keys[i]
		path := fmt.Sprintf("dkim.key.%d", i)
		if k.Domain == "" {
			k.Domain = d.Domain
		} else if name, err := normalizeDomain(k.Domain); err != nil {
			v.errorf(path+".domain", "dkim.key[%d].domain: %v", i, err)
		} else if k.Domain = name; name != d.Domain && !slices.Contains(v.c.Domains, name) {
			// A key signs for the gateway or for a domain whose mail
			// passes through it; any other d= would be a signature on
			// behalf of a domain this gateway does not serve.
			v.errorf(path+".domain", "dkim.key[%d].domain: %q is neither the gateway's signing domain (%s) nor one of domains", i, name, d.Domain)
		}
		gatewayKey = gatewayKey || k.Domain == d.Domain
		if k.Selector == "" {
			v.errorf(path, "dkim.key[%d]: missing key \"selector\"", i)
		} else if !selectorRE.MatchString(k.Selector) {
			v.errorf(path+".selector", "dkim.key[%d].selector: %q is not a DNS label", i, k.Selector)
		} else if selectors[k.Domain+" "+k.Selector] {
			v.errorf(path+".selector", "dkim.key[%d].selector: %q is used twice for %s", i, k.Selector, k.Domain)
		}
		selectors[k.Domain+" "+k.Selector] = true
		if k.File == "" {
			v.errorf(path, "dkim.key[%d]: missing key \"file\"", i)
		}
	}
	if len(d.Keys) > 0 && !gatewayKey && d.Domain != "" {
		// The gateway's own key signs what every other signature leans
		// on: forwarded mail, DSNs, reports and the ARC seal.
		v.errorf("dkim.key.0", "dkim.key: no key of the gateway's signing domain %s; the keys of other domains come in addition to one", d.Domain)
	}
	if d.SignRecipientDomain && len(d.Keys) == 0 {
		v.errorf("dkim.sign_recipient_domain", "dkim.sign_recipient_domain: there is no [[dkim.key]] to sign with")
	}
}

func (v *validator) arc() {
	a := v.c.ARC
	if a.Selector == "" {
		return
	}
	for _, k := range v.c.DKIM.Keys {
		if k.Selector == a.Selector && k.Domain == v.c.DKIM.Domain {
			return
		}
	}
	// The seal's d= is the gateway's signing domain, so its key is one
	// of that domain's.
	v.errorf("arc.selector", "arc.selector: %q is not the selector of any [[dkim.key]] of %s", a.Selector, v.c.DKIM.Domain)
}

// AuthEnabled reports whether incoming mail is checked.
func (c *Config) AuthEnabled() bool { return c.Auth.Enabled == nil || *c.Auth.Enabled }

// RelayDANE reports whether the relay honours destinations' TLSA records:
// relay.dane (default true), and only with answers the resolver can
// vouch for, [dns] dnssec.
func (c *Config) RelayDANE() bool {
	return c.DNS.DNSSEC && (c.Relay.DANE == nil || *c.Relay.DANE)
}

// RelayIPv6 reports whether the relay connects over IPv6 ([relay] ipv6,
// default true).
func (c *Config) RelayIPv6() bool { return c.Relay.IPv6 == nil || *c.Relay.IPv6 }

// SourceFamiliesMissing are the address families ("IPv4", "IPv6") the
// relay connects over without a [[relay.source]] of that family: mail to
// them leaves from an address the system picks, which the SPF records
// `sluice dns` prints do not list. With no sources at all the system
// picks every address, the operator's plain choice: none are missing.
// The gateway warns of them at start, and sluice doctor reports them.
func (c *Config) SourceFamiliesMissing() []string {
	srcs := c.Relay.Sources
	if len(srcs) == 0 {
		return nil
	}
	var missing []string
	for _, f := range []struct {
		name string
		used bool
		is   func(netip.Addr) bool
	}{
		{"IPv4", true, netip.Addr.Is4},
		{"IPv6", c.RelayIPv6(), netip.Addr.Is6},
	} {
		has := slices.ContainsFunc(srcs, func(s Source) bool {
			a, err := netip.ParseAddr(s.Address)
			return err == nil && f.is(a)
		})
		if f.used && !has {
			missing = append(missing, f.name)
		}
	}
	return missing
}

// RelayMTASTS reports whether the relay honours destinations' MTA-STS
// policies ([relay] mta_sts, default true).
func (c *Config) RelayMTASTS() bool { return c.Relay.MTASTS == nil || *c.Relay.MTASTS }

// auth checks the checks' settings; dmarc.ParseDiscovery knows the
// discovery names and reads the key again when the checker is built.
func (v *validator) auth() {
	if _, err := dmarc.ParseDiscovery(v.c.Auth.DMARCDiscovery); err != nil {
		v.errorf("auth.dmarc_discovery", "auth.dmarc_discovery: %v", err)
	}
}

func (v *validator) dns() {
	for i, ns := range v.c.DNS.Nameservers {
		addr, err := nameserverAddr(ns)
		if err != nil {
			v.errorf("dns.nameservers", "dns.nameservers[%d]: %v", i, err)
			continue
		}
		v.c.DNS.Nameservers[i] = addr
	}
}

func (v *validator) log() {
	switch v.c.Log.Format {
	case "text", "json":
	default:
		v.errorf("log.format", "log.format: %q is neither \"text\" nor \"json\"", v.c.Log.Format)
	}
	switch v.c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		v.errorf("log.level", "log.level: %q is not one of debug, info, warn, error", v.c.Log.Level)
	}
}

var pluginNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

func (v *validator) plugins() {
	names := map[string]bool{}
	for i, p := range v.c.Plugin {
		path := fmt.Sprintf("plugin.%d", i)
		switch {
		case p.Name == "":
			v.errorf(path, "plugin[%d]: missing key \"name\"", i)
		case !pluginNameRE.MatchString(p.Name):
			v.errorf(path+".name", "plugin[%d].name: %q: use lower-case letters, digits, - and _", i, p.Name)
		case names[p.Name]:
			v.errorf(path+".name", "plugin[%d].name: %q is used twice", i, p.Name)
		}
		names[p.Name] = true
		if p.Path == "" {
			v.errorf(path, "plugin %q: missing key \"path\" (the .wasm file)", p.Name)
		}
		for _, st := range p.Stages {
			if _, ok := abi.ParseStage(st); !ok {
				v.errorf(path+".stages", "plugin %q: unknown stage %q (stages: connect, helo, mail, rcpt, data, close)", p.Name, st)
			}
		}
		switch p.OnFailure {
		case "tempfail", "skip":
		default:
			v.errorf(path+".on_failure", "plugin %q: on_failure %q is neither \"tempfail\" nor \"skip\"", p.Name, p.OnFailure)
		}
		if p.StackLimit != 0 {
			if err := interrupt.CheckStackBudget(uint64(p.StackLimit)); err != nil {
				v.errorf(path+".stack_limit", "plugin %q: stack_limit %v, not %s", p.Name, err, p.StackLimit)
			}
		}
		if p.Instances < 0 {
			v.errorf(path+".instances", "plugin %q: instances must not be negative", p.Name)
		}
		for _, c := range p.Capabilities {
			if _, ok := abi.ParseCapability(c); !ok && c != "log" {
				v.errorf(path+".capabilities", "plugin %q: unknown capability %q (capabilities: %s)",
					p.Name, c, strings.Join(abi.CapabilityNames(), ", "))
			}
		}
		v.pluginServices(path, &p)
		v.pluginHTTP(path, &p)
	}
}

// Services a plugin may run in ([[plugin]] services).
const (
	ServiceMX         = "mx"         // mail arriving for our domains, on smtp.listen
	ServiceSubmission = "submission" // mail our users send, on the submission listeners
)

// pluginServices checks where a plugin runs: each service known, none
// twice, and at least one when the key is written (a plugin that runs
// nowhere is a mistake, not a way to turn it off).
func (v *validator) pluginServices(path string, p *Plugin) {
	if len(p.Services) == 0 {
		v.errorf(path+".services", "plugin %q: services is empty: list where it runs, %q and/or %q", p.Name, ServiceMX, ServiceSubmission)
	}
	seen := map[string]bool{}
	for _, s := range p.Services {
		switch {
		case s != ServiceMX && s != ServiceSubmission:
			v.errorf(path+".services", "plugin %q: unknown service %q (services: %s, %s)", p.Name, s, ServiceMX, ServiceSubmission)
		case seen[s]:
			v.errorf(path+".services", "plugin %q: service %q is listed twice", p.Name, s)
		}
		seen[s] = true
	}
	if slices.Equal(p.Services, []string{ServiceSubmission}) && !v.c.Submission.Enabled() {
		v.errorf(path+".services", "plugin %q: services = [%q], but [submission] has no listen or listen_tls: it would run nowhere", p.Name, ServiceSubmission)
	}
}

// RunsIn reports whether the plugin runs in service (ServiceMX or
// ServiceSubmission).
func (p *Plugin) RunsIn(service string) bool { return slices.Contains(p.Services, service) }

// maxHTTPResponse is the largest http_max_response: a response is copied
// into the plugin's memory (plugin.MaxHTTPMaxResponse).
const maxHTTPResponse = 16 << 20

// pluginHTTP checks the settings of the http capability: a plugin granted
// it reaches only the hosts listed, so it needs some, and the settings of
// a plugin not granted it would do nothing.
func (v *validator) pluginHTTP(path string, p *Plugin) {
	if !p.Granted().Has(abi.CapHTTP) {
		for _, k := range []struct {
			key string
			set bool
		}{{"http_hosts", p.HTTPHosts != nil}, {"http_timeout", p.HTTPTimeout != 0}, {"http_max_response", p.HTTPMaxResponse != 0}} {
			if k.set {
				v.errorf(path+"."+k.key, "plugin %q: %s is set but capabilities does not grant \"http\"", p.Name, k.key)
			}
		}
		return
	}
	if len(p.HTTPHosts) == 0 {
		v.errorf(path+".capabilities", "plugin %q: capability \"http\" needs http_hosts, the host:port pairs it may send requests to (like http_hosts = [\"127.0.0.1:11333\"])", p.Name)
	}
	for i, h := range p.HTTPHosts {
		if err := checkHostPort(h); err != nil {
			v.errorf(path+".http_hosts", "plugin %q: http_hosts[%d]: %v", p.Name, i, err)
		}
	}
	if p.HTTPMaxResponse < 0 || p.HTTPMaxResponse > maxHTTPResponse {
		v.errorf(path+".http_max_response", "plugin %q: http_max_response must be from 1 byte to 16MiB", p.Name)
	}
}

// checkHostPort checks a host:port that a plugin may send HTTP requests
// to: a name or IP address, and a port, as the host compares them
// (plugin.HTTPHost).
func checkHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil || strings.ContainsAny(s, "/?#") {
		return notHostPort(s)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q: the port must be a number from 1 to 65535", s)
	}
	if host == "" || strings.ContainsAny(host, "/@?#%[] ") {
		return fmt.Errorf("%q: not a host name or IP address", s)
	}
	return nil
}

// notHostPort says what is wrong with an http_hosts entry that is not
// host:port, and what to write instead: the usual slips are a whole URL,
// a path, and a host without its port.
func notHostPort(s string) error {
	if strings.Contains(s, "://") {
		// The host:port the gateway compares for this URL, if it is one a
		// plugin may send to.
		if _, hostPort, code := abi.HTTPTarget(s); code == 0 {
			return fmt.Errorf("%q is a URL: http_hosts takes only the host:port it is sent to, %q (the scheme and path go in the plugin's URL)", s, hostPort)
		}
		return fmt.Errorf("%q is a URL: http_hosts takes only host:port (the scheme, http or https, and the path go in the plugin's URL)", s)
	}
	if i := strings.IndexAny(s, "/?#"); i >= 0 {
		if checkHostPort(s[:i]) == nil {
			return fmt.Errorf("%q has a path: http_hosts takes only host:port, %q (the path goes in the plugin's URL)", s, s[:i])
		}
		return fmt.Errorf("%q has a path, which goes in the plugin's URL; and %w", s, notHostPort(s[:i]))
	}
	if ip, err := netip.ParseAddr(s); err == nil && ip.Is6() {
		return fmt.Errorf("%q has no port: an IPv6 address goes in brackets before it, like %q", s, "["+s+"]:11333")
	}
	if host, _, err := net.SplitHostPort(s + ":80"); err == nil && host != "" {
		return fmt.Errorf("%q has no port: add the one the plugin's URL uses, like %q (a URL without a port uses 80 for http, 443 for https)", s, s+":11333")
	}
	return fmt.Errorf("%q is not host:port", s)
}

func (v *validator) scoring() {
	s := v.c.Scoring
	for _, t := range []struct {
		key   string
		value float64
	}{{"reject", s.Reject}, {"quarantine", s.Quarantine}} {
		// A threshold at or below 0 would act on mail nothing found fault with.
		if t.value < 0 || math.IsNaN(t.value) || math.IsInf(t.value, 0) {
			v.errorf("scoring."+t.key, "scoring.%s: must be a positive score (or 0 for off), not %v", t.key, t.value)
		}
	}
	if s.Reject > 0 && s.Quarantine >= s.Reject {
		v.errorf("scoring.quarantine", "scoring.quarantine (%v) must be below scoring.reject (%v), or it would never apply", s.Quarantine, s.Reject)
	}
}

// Granted returns the capabilities the plugin is granted; validation has
// refused unknown names.
func (p *Plugin) Granted() abi.Capability {
	var caps abi.Capability
	for _, name := range p.Capabilities {
		c, _ := abi.ParseCapability(name)
		caps |= c
	}
	return caps
}

func (v *validator) dev() {
	d := v.c.Dev
	if d.InboxListen == "" {
		return
	}
	if err := checkListen(d.InboxListen); err != nil {
		v.errorf("dev.inbox_listen", "dev.inbox_listen: %v", err)
	}
	if d.InboxDir == "" {
		v.errorf("dev", "dev: inbox_listen needs inbox_dir, where captured messages are stored")
	}
}

func (v *validator) admin() {
	a := &v.c.Admin
	if a.Listen != nil && *a.Listen != "" {
		if err := checkListen(*a.Listen); err != nil {
			v.errorf("admin.listen", "admin.listen: %v", err)
		}
	}
}

// MaxACMERenewBefore is the longest acme_renew_before: autocert renews
// no earlier than 30 days before expiry whatever it is asked.
const MaxACMERenewBefore = 30 * 24 * time.Hour

func (v *validator) tls() {
	c := v.c
	t := c.TLS
	if !t.ACME {
		for _, k := range []struct {
			key string
			set bool
		}{{"acme_email", t.ACMEEmail != ""}, {"acme_directory", t.ACMEDirectory != ""},
			{"acme_ca_file", t.ACMECAFile != ""}, {"acme_renew_before", t.ACMERenewBefore != 0}} {
			if k.set {
				v.errorf("tls."+k.key, "tls.%s is set but tls.acme is not true", k.key)
			}
		}
		return
	}
	if c.SMTP.TLSCert != "" {
		v.errorf("tls.acme", "tls.acme: the certificate comes from the ACME CA; remove smtp.tls_cert and smtp.tls_key, or set acme = false")
	}
	if c.SMTP.TLSSelfSigned {
		v.errorf("tls.acme", "tls.acme: cannot be used with smtp.tls_self_signed; choose one")
	}
	if c.Hostname != "" && !strings.Contains(c.Hostname, ".") {
		v.errorf("tls.acme", "tls.acme: a CA issues certificates only for a fully qualified hostname, not %q", c.Hostname)
	}
	if len(c.HTTPS.Listen) == 0 {
		v.errorf("tls.acme", `tls.acme: needs [https] listen, where the CA's TLS-ALPN-01 challenges are answered: port 443, like listen = ["0.0.0.0:443", "[::]:443"]`)
	}
	if d := t.ACMEDirectory; d != "" {
		if u, err := url.Parse(d); err != nil || u.Scheme != "https" || u.Host == "" {
			v.errorf("tls.acme_directory", "tls.acme_directory: %q is not an https:// URL (the CA's directory, like %q)", d, "https://acme-v02.api.letsencrypt.org/directory")
		}
	}
	if e := t.ACMEEmail; e != "" {
		if _, domain, ok := strings.Cut(e, "@"); !ok || domain == "" || strings.ContainsAny(e, " \t<>,") {
			v.errorf("tls.acme_email", "tls.acme_email: %q is not an email address", e)
		}
	}
	if t.ACMERenewBefore.D() > MaxACMERenewBefore {
		v.errorf("tls.acme_renew_before", "tls.acme_renew_before: at most 30 days (\"720h\"), not %s", t.ACMERenewBefore.D())
	}
}

func (v *validator) https() {
	c := v.c
	for i, a := range c.HTTPS.Listen {
		if err := checkListen(a); err != nil {
			v.errorf("https.listen", "https.listen[%d]: %v", i, err)
		}
	}
	if len(c.HTTPS.Listen) == 0 {
		return
	}
	if !c.TLS.ACME && c.SMTP.TLSCert == "" && !c.SMTP.TLSSelfSigned {
		v.errorf("https.listen", "https.listen: the HTTPS listener needs a certificate: set tls.acme = true, or smtp.tls_cert and smtp.tls_key (covering mta-sts.<domain> for every domain)")
	} else if !c.TLS.ACME && c.MTASTS.Mode == "" {
		v.errorf("https.listen", "https.listen: nothing to serve: it serves the MTA-STS policy ([mta_sts] mode) and ACME challenges (tls.acme)")
	}
}

func (v *validator) mtaSTS() {
	m := &v.c.MTASTS
	switch m.Mode {
	case "", mtasts.None, mtasts.Testing, mtasts.Enforce:
	default:
		v.errorf("mta_sts.mode", "mta_sts.mode: %q is not one of none, testing, enforce", m.Mode)
	}
	if m.Mode == "" {
		if len(m.MX) > 0 || m.MaxAge != 0 {
			v.errorf("mta_sts", "mta_sts: mode is not set, so no policy is published; set mode (none, testing or enforce)")
		}
		return
	}
	patternsOK := true
	for i, p := range m.MX {
		host, wild := strings.CutPrefix(p, "*.")
		name, err := normalizeDomain(host)
		if err != nil || strings.Contains(host, "*") {
			v.errorf("mta_sts.mx", "mta_sts.mx[%d]: %q is not a host name or *. and a domain", i, p)
			patternsOK = false
			continue
		}
		if wild {
			name = "*." + name
		}
		m.MX[i] = name
	}
	// Senders that apply the policy deliver only to MX hosts it names:
	// one of ours left out would get no mail from them (in testing mode,
	// a failure report for each message).
	if policy := (mtasts.Policy{MX: m.MX}); patternsOK && len(m.MX) > 0 && m.Mode != mtasts.None {
		for _, host := range v.c.MXHosts() {
			if _, err := normalizeDomain(host); err != nil {
				continue // reported at records.mx (or hostname)
			}
			if !policy.Matches(host) {
				v.errorf("mta_sts.mx", "mta_sts.mx: %s, an MX host of ours (records.mx, or hostname), matches none of its patterns: senders that apply the policy would not deliver to it; add it, or leave mta_sts.mx out to use records.mx", host)
			}
		}
	}
	if d := m.MaxAge.D(); d > mtasts.MaxAge || d%time.Second != 0 || (m.MaxAge != 0 && d < time.Second) {
		v.errorf("mta_sts.max_age", "mta_sts.max_age: whole seconds, at most 31557600s (about a year), not %s", d)
	}
}

func (v *validator) positive(path string, n int) {
	if n <= 0 {
		v.errorf(path, "%s: must be positive, not %d", path, n)
	}
}

// checkListen accepts "ip:port" and ":port"; the IP decides the family,
// so that "0.0.0.0:25" and "[::]:25" can be listed together.
func checkListen(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q: bad port %q", addr, port)
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil {
			return fmt.Errorf("%q: listen on an IP address, not %q", addr, host)
		}
	}
	return nil
}

func nameserverAddr(ns string) (string, error) {
	if a, err := netip.ParseAddr(ns); err == nil {
		return netip.AddrPortFrom(a, 53).String(), nil
	}
	ap, err := netip.ParseAddrPort(ns)
	if err != nil {
		return "", fmt.Errorf("%q is not an IP address or ip:port", ns)
	}
	return ap.String(), nil
}

// normalizeDomain turns a domain or host name of the configuration into
// the form used everywhere: lower-case A-labels, without the final dot
// that a fully qualified name may be written with ("mx.example.com.", as
// in a zone file). One dot only: "example.com.." is an empty label.
func normalizeDomain(d string) (string, error) {
	name, err := address.Domain(strings.TrimSuffix(d, "."))
	if err != nil {
		return "", fmt.Errorf("%q is not a domain name: %v", d, err)
	}
	return name, nil
}

// ConfigTOML returns the plugin's [plugin.config] table as TOML text, the
// form in which plugins receive it.
func (p *Plugin) ConfigTOML() ([]byte, error) {
	if len(p.Config) == 0 {
		return nil, nil
	}
	var b bytes.Buffer
	if err := toml.NewEncoder(&b).Encode(p.Config); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// spfIncludeRE is a DNS name whose labels may start with "_".
var spfIncludeRE = regexp.MustCompile(`^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)*$`)

// records checks [records], what `sluice dns` prints and `sluice doctor`
// checks, and fills in its defaults, which depend on the domains.
func (v *validator) records() {
	r := &v.c.Records
	seen := map[string]bool{}
	for i, mx := range r.MX {
		name, err := normalizeDomain(mx)
		if err != nil {
			v.errorf("records.mx", "records.mx[%d]: %v", i, err)
			continue
		}
		if seen[name] {
			v.errorf("records.mx", "records.mx[%d]: %q is listed twice", i, mx)
		}
		seen[name] = true
		r.MX[i] = name
	}
	// Not a host name: SPF includes are usually names like _spf.example.org.
	if r.SPFInclude != "" {
		r.SPFInclude = strings.TrimSuffix(r.SPFInclude, ".") // a fully qualified name, as normalizeDomain takes it
		if !spfIncludeRE.MatchString(r.SPFInclude) || len(r.SPFInclude) > 253 || !strings.Contains(r.SPFInclude, ".") {
			v.errorf("records.spf_include", "records.spf_include: %q is not a domain name like _spf.example.org", r.SPFInclude)
		}
		r.SPFInclude = strings.ToLower(r.SPFInclude)
	}
	switch r.DMARCPolicy {
	case "":
		// none: receivers report but do not act, which is where a
		// domain starts until the reports show its mail passes.
		r.DMARCPolicy = "none"
	case "none", "quarantine", "reject":
	default:
		v.errorf("records.dmarc_policy", "records.dmarc_policy: %q is not one of none, quarantine, reject", r.DMARCPolicy)
	}
	if r.ReportAddress != "" {
		// The address goes into mailto: URIs of TXT records, where ","
		// separates URIs, "!" starts a size limit and ";" ends the tag.
		if local, domain, err := address.Split(r.ReportAddress); err != nil || strings.ContainsAny(local, " \t\",;<>!") {
			v.errorf("records.report_address", "records.report_address: %q is not an address like postmaster@example.org", r.ReportAddress)
		} else {
			r.ReportAddress = local + "@" + domain
		}
	} else if len(v.c.Domains) > 0 {
		r.ReportAddress = "postmaster@" + v.c.Domains[0]
	}
}
