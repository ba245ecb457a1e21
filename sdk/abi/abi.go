// Package abi is the contract between the Sluice host and its WebAssembly
// filter plugins: the names of the functions each side provides, the
// stages and verdicts, and the binary encoding of what crosses the
// boundary. The host and the Go SDK both use this package, so they cannot
// disagree; sdk/ABI.md describes the same contract for other languages.
package abi

// Version is the ABI version this package speaks. A guest declares it by
// importing VersionMarker; a host refuses a module that imports a marker
// of a version it does not speak.
const Version = 1

// Names of the imports the host provides, all in module HostModule.
const (
	HostModule = "sluice"
	// VersionMarker is a no-op function. Importing it is how a guest says
	// which ABI version it was built for.
	VersionMarker = "abi_version_1"
	// FuncLog writes a line to the gateway's log: (level i32, ptr i32, len i32).
	FuncLog = "log"
)

// Names of the functions a guest exports.
const (
	// ExportBuffer (size i32) -> ptr i32 returns a guest-owned buffer of at
	// least size bytes. The host writes each request there; the guest
	// reuses the buffer from call to call.
	ExportBuffer = "sluice_buffer"
	// ExportConfigure (len i32) -> i64 reads a ConfigureRequest of len
	// bytes from the buffer and returns a ConfigureResponse.
	ExportConfigure = "sluice_configure"
	// ExportHandle (len i32) -> i64 reads a Request of len bytes from the
	// buffer and returns a Verdict.
	ExportHandle = "sluice_handle"
)

// PackResult packs a guest memory region as an export's i64 result: the
// pointer in the high 32 bits, the length in the low 32 bits.
func PackResult(ptr, length uint32) uint64 { return uint64(ptr)<<32 | uint64(length) }

// UnpackResult is the inverse of PackResult.
func UnpackResult(v uint64) (ptr, length uint32) { return uint32(v >> 32), uint32(v) }

// Log levels for FuncLog, matching log/slog's numeric levels.
const (
	LogDebug int32 = -4
	LogInfo  int32 = 0
	LogWarn  int32 = 4
	LogError int32 = 8
)

// Stage is a point of the SMTP session at which the host calls plugins.
type Stage uint8

const (
	StageConnect Stage = 1 // a client connected
	StageHelo    Stage = 2 // HELO or EHLO
	StageMail    Stage = 3 // MAIL FROM
	StageRcpt    Stage = 4 // RCPT TO, once per recipient
	StageData    Stage = 5 // the whole message has arrived
	StageClose   Stage = 6 // the session ended; the verdict is ignored
)

var stageNames = map[Stage]string{
	StageConnect: "connect", StageHelo: "helo", StageMail: "mail",
	StageRcpt: "rcpt", StageData: "data", StageClose: "close",
}

func (s Stage) String() string {
	if n, ok := stageNames[s]; ok {
		return n
	}
	return "stage(" + itoa(uint64(s)) + ")"
}

// ParseStage returns the stage with the given name.
func ParseStage(name string) (Stage, bool) {
	for s, n := range stageNames {
		if n == name {
			return s, true
		}
	}
	return 0, false
}

// Stages lists every stage in session order.
func Stages() []Stage {
	return []Stage{StageConnect, StageHelo, StageMail, StageRcpt, StageData, StageClose}
}

// StageSet is a set of stages, one bit per stage.
type StageSet uint32

// StageSetOf returns the set holding the given stages.
func StageSetOf(stages ...Stage) StageSet {
	var s StageSet
	for _, st := range stages {
		s |= 1 << st
	}
	return s
}

// Has reports whether st is in the set.
func (s StageSet) Has(st Stage) bool { return s&(1<<st) != 0 }

// Action is what a plugin decides.
type Action uint8

const (
	// Continue passes the decision to the next plugin in the chain.
	Continue Action = 0
	// Accept ends the chain for this stage: later plugins are not asked.
	Accept Action = 1
	// Reject refuses with a 5xx reply.
	Reject Action = 2
	// Tempfail refuses with a 4xx reply, so that the client retries.
	Tempfail Action = 3
	// Discard accepts and drops: the recipient (at rcpt) or the whole
	// message (at data) is answered 250 and never delivered.
	Discard Action = 4
	// Quarantine marks the message with a header and delivers it.
	Quarantine Action = 5
)

var actionNames = map[Action]string{
	Continue: "continue", Accept: "accept", Reject: "reject",
	Tempfail: "tempfail", Discard: "discard", Quarantine: "quarantine",
}

func (a Action) String() string {
	if n, ok := actionNames[a]; ok {
		return n
	}
	return "action(" + itoa(uint64(a)) + ")"
}

// Permissions is the set of actions and changes a plugin declares at
// configure time that it may take. The host treats any other verdict from
// it as a plugin failure.
type Permissions uint32

const (
	MayAccept         Permissions = 1 << Accept
	MayReject         Permissions = 1 << Reject
	MayTempfail       Permissions = 1 << Tempfail
	MayDiscard        Permissions = 1 << Discard
	MayQuarantine     Permissions = 1 << Quarantine
	MayAddHeaders     Permissions = 1 << 16
	MayRemoveHeaders  Permissions = 1 << 17
	MaySetDestination Permissions = 1 << 18
)

// Allows reports whether the permissions cover a verdict's action and changes.
func (p Permissions) Allows(v *Verdict) bool {
	if v.Action != Continue && p&(1<<v.Action) == 0 {
		return false
	}
	if len(v.AddHeaders) > 0 && p&MayAddHeaders == 0 {
		return false
	}
	if len(v.RemoveHeaders) > 0 && p&MayRemoveHeaders == 0 {
		return false
	}
	if (v.Destination != "" || len(v.Destinations) > 0) && p&MaySetDestination == 0 {
		return false
	}
	return true
}

// ConfigureRequest is sent once to each new instance, before any Request.
type ConfigureRequest struct {
	Version  uint32 // the host's ABI version
	Name     string // the plugin's name in gateway.toml
	Hostname string // the gateway's hostname
	Config   []byte // the plugin's [plugin.config] table, encoded as TOML
	// Domains are the domains the gateway is the MX for, as A-labels in
	// lower case: mail forwarded to one would come back (a routing loop).
	// Empty from hosts older than this field.
	Domains []string
}

// ConfigureResponse is the guest's answer to ConfigureRequest.
type ConfigureResponse struct {
	Error       string // not empty: the configuration is refused, and so is the load
	Stages      StageSet
	Permissions Permissions
	// ErrorKey is the setting of the config that Error is about, as a
	// dotted path ("rule.1.to", entries of a list of tables numbered from
	// 0, or left out when unknown: "rule.to", which the host places at the
	// first entry that has the key); "" for none. The host reports the
	// error at that setting's line.
	ErrorKey string
}

// Request is what the host sends at each stage: the whole session and
// transaction so far, so that any instance of a plugin can answer it.
type Request struct {
	Stage      Stage
	SessionID  string
	ClientIP   string
	ClientName string // the client's verified reverse DNS name, or ""
	Helo       string
	TLS        bool
	MailFrom   string // "" for the null reverse-path
	UTF8       bool   // the client asked for SMTPUTF8
	Rcpts      []string
	Rcpt       string // StageRcpt: the recipient being decided
	Size       uint64 // StageData: the message size in bytes
	// Auth is what the host found about the message's authenticity, set at
	// the data stage. (SPF runs from MAIL FROM on, in the background; the
	// data stage is where every result is known.)
	Auth Auth
	// ClientNameResult is how ClientName was found (forward-confirmed
	// reverse DNS): pass (ClientName is set), fail (the PTR names do not
	// resolve back to ClientIP), none (no PTR record), temperror (DNS
	// failed), or "" from a host that does not look it up.
	ClientNameResult string
	// Findings are what plugins reported before this call: at the earlier
	// stages of the transaction, and by the plugins before this one at
	// this stage, in the order they were reported, each symbol once with
	// its last score (as the host adds them up; see AddFindings). At most
	// MaxRequestFindings. Empty from a host older than this field.
	Findings []PluginFinding
	// AuthenticatedUser is the user logged in to the submission service
	// (SMTP AUTH) that sends this mail; "" for mail arriving from other
	// servers, and from a host older than this field.
	AuthenticatedUser string
}

// PluginFinding is a finding of a Request: which plugin reported it.
type PluginFinding struct {
	Plugin string
	Symbol string
	Score  float64
}

// MaxRequestFindings bounds a Request's Findings: symbols found beyond it
// are left out of requests (the host still counts them in its score).
const MaxRequestFindings = 256

// AddFindings adds the findings of plugin to list as the host adds up a
// transaction's score: a symbol counts once, so one already in the list
// keeps its place and takes the new score (and plugin); a new one is
// appended, unless the list holds MaxRequestFindings already. It changes
// list's items in place.
func AddFindings(list []PluginFinding, plugin string, found []Finding) []PluginFinding {
	for _, f := range found {
		i := 0
		for i < len(list) && list[i].Symbol != f.Symbol {
			i++
		}
		switch {
		case i < len(list):
			list[i].Plugin, list[i].Score = plugin, f.Score
		case len(list) < MaxRequestFindings:
			list = append(list, PluginFinding{Plugin: plugin, Symbol: f.Symbol, Score: f.Score})
		}
	}
	return list
}

// Auth holds the host's authentication results. Result words are those of
// RFC 8601 (Authentication-Results); "" means not checked (yet).
type Auth struct {
	SPF   SPF
	DKIM  []DKIM // one per DKIM-Signature, in message order
	ARC   ARC
	DMARC DMARC
}

// SPF is the RFC 7208 check of the client's address.
type SPF struct {
	// Result for the MAIL FROM identity (or, for the null sender, the HELO
	// identity as RFC 7208 §2.4 says): pass, fail, softfail, neutral,
	// none, temperror or permerror.
	Result string
	Domain string // the domain checked
	// Helo is the result of checking the HELO identity on its own.
	Helo string
}

// DKIM is the verification of one DKIM-Signature.
type DKIM struct {
	Result   string // pass, fail, neutral, policy, temperror or permerror
	Domain   string // its d=
	Selector string // its s=
	Reason   string // why, when it did not pass
}

// ARC is the validation of the message's ARC chain (RFC 8617).
type ARC struct {
	Result     string // none, pass or fail: the chain validation status
	Instances  uint32 // how many ARC sets the message carries
	OldestPass uint32 // the oldest instance whose ARC-Message-Signature still verifies; 0 if none
	// Sealers are the d= domains of the ARC-Seals, instance 1 first.
	Sealers []string
	Reason  string
}

// DMARC is the evaluation of the message's From domain (RFC 9989, or RFC
// 7489 when the gateway is configured so). The host finds the facts; a
// plugin decides what to do about them.
type DMARC struct {
	Result       string // pass, fail, none, temperror or permerror
	FromDomain   string // the RFC5322.From domain
	PolicyDomain string // where the record was found: the From, organizational or public suffix domain
	// Policy is the one that applies to FromDomain: none, quarantine or
	// reject (p, or sp for subdomains, or np for names that do not exist).
	Policy string
	// Pct is the share of failing mail Policy is for, 0 to 100, the rest
	// getting the next milder policy: under RFC 9989 0 for a policy in
	// test mode (t=y) and 100 otherwise; under RFC 7489 the record's pct.
	Pct         uint32
	SPFAligned  bool
	DKIMAligned bool
	Reason      string
}

// Header is a header field to add.
type Header struct {
	Name  string
	Value string
}

// Finding is something a plugin noticed, kept apart from its verdict so
// that scores can add up across plugins.
type Finding struct {
	Symbol string
	Score  float64
}

// Verdict is a plugin's answer to a Request.
type Verdict struct {
	Action Action
	// Code, Enhanced and Text make the SMTP reply for Reject and Tempfail
	// (the host picks defaults for those left empty) and the reason for
	// Quarantine.
	Code     uint16
	Enhanced string // "5.7.1"
	Text     string
	// Destination, at StageRcpt, is where this recipient's mail goes.
	// Destinations are more places it goes, after Destination: a host
	// older than the field reads only Destination, so a guest that
	// forwards to several puts the first there (DestinationList).
	Destination   string
	Destinations  []string
	AddHeaders    []Header
	RemoveHeaders []string
	Findings      []Finding
	// Failure, if not empty, says that the guest failed to decide (the Go
	// SDK: a stage method panicked): the host treats the call as a failure
	// of the plugin, with this text, and ignores the rest. A host that
	// predates the field acts on the rest instead.
	Failure string
}

// MaxDestinations bounds the destinations of one verdict: each is a
// copy of the message, relayed or queued, for one recipient.
const MaxDestinations = 20

// DestinationList is every destination a verdict names: Destination, if
// set, then Destinations.
func (v *Verdict) DestinationList() []string {
	if v.Destination == "" {
		return v.Destinations
	}
	if len(v.Destinations) == 0 {
		return []string{v.Destination}
	}
	return append([]string{v.Destination}, v.Destinations...)
}

func itoa(v uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			return string(b[i:])
		}
	}
}
