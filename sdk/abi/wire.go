package abi

import (
	"encoding/binary"
	"errors"
	"math"
	"unsafe"
)

// The encoding: each message is its fields in a fixed order, with no tags.
// An unsigned integer is a LEB128 varint; a bool is a varint 0 or 1; a
// string or byte string is its length as a varint, then its bytes; a list
// is its count as a varint, then its items; a float is 8 bytes, IEEE 754,
// little-endian. A decoder treats fields missing at the end as zero and
// ignores bytes after the fields it knows, so a later minor version can
// append fields without breaking older peers.

// ErrMalformed is returned for input that is not a valid encoding.
var ErrMalformed = errors.New("abi: malformed message")

type encoder struct{ b []byte }

func (e *encoder) uint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *encoder) bool(v bool) {
	if v {
		e.uint(1)
	} else {
		e.uint(0)
	}
}
func (e *encoder) str(s string) { e.uint(uint64(len(s))); e.b = append(e.b, s...) }
func (e *encoder) bytes(p []byte) {
	e.uint(uint64(len(p)))
	e.b = append(e.b, p...)
}
func (e *encoder) float(f float64) { e.b = binary.LittleEndian.AppendUint64(e.b, math.Float64bits(f)) }

type decoder struct {
	b   []byte
	err error
	// shared makes str return strings that share b's memory rather than
	// copies: see DecodeRequestShared.
	shared bool
}

func (d *decoder) uint() uint64 {
	if d.err != nil || len(d.b) == 0 {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = ErrMalformed
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bool() bool { return d.uint() != 0 }

func (d *decoder) raw() []byte {
	n := d.uint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = ErrMalformed
		return nil
	}
	p := d.b[:n:n]
	d.b = d.b[n:]
	return p
}

func (d *decoder) str() string {
	p := d.raw()
	if d.shared && len(p) > 0 {
		return unsafe.String(&p[0], len(p))
	}
	return string(p)
}

func (d *decoder) bytes() []byte {
	p := d.raw()
	if len(p) == 0 {
		return nil
	}
	return append([]byte(nil), p...)
}

func (d *decoder) float() float64 {
	if d.err != nil || len(d.b) == 0 {
		return 0
	}
	if len(d.b) < 8 {
		d.err = ErrMalformed
		return 0
	}
	f := math.Float64frombits(binary.LittleEndian.Uint64(d.b))
	d.b = d.b[8:]
	// A score that is not a finite number would poison every sum it joins.
	if math.IsNaN(f) || math.IsInf(f, 0) {
		d.err = ErrMalformed
		return 0
	}
	return f
}

// count reads a list length and checks it against the bytes left, each item
// taking at least one byte, so that garbage cannot make us allocate much.
func (d *decoder) count() int {
	n := d.uint()
	if d.err == nil && n > uint64(len(d.b)) {
		d.err = ErrMalformed
		return 0
	}
	return int(n)
}

func (d *decoder) strs() []string {
	n := d.count()
	if n == 0 {
		return nil
	}
	out := make([]string, n)
	for i := range out {
		out[i] = d.str()
	}
	return out
}

func (d *decoder) uint32(max uint64) uint32 {
	v := d.uint()
	if v > max {
		d.err = ErrMalformed
		return 0
	}
	return uint32(v)
}

// AppendConfigureRequest appends the encoding of m to b.
func AppendConfigureRequest(b []byte, m *ConfigureRequest) []byte {
	e := encoder{b}
	e.uint(uint64(m.Version))
	e.str(m.Name)
	e.str(m.Hostname)
	e.bytes(m.Config)
	e.uint(uint64(len(m.Domains)))
	for _, d := range m.Domains {
		e.str(d)
	}
	return e.b
}

// DecodeConfigureRequest decodes b into m.
func DecodeConfigureRequest(b []byte, m *ConfigureRequest) error {
	d := decoder{b: b}
	*m = ConfigureRequest{
		Version:  d.uint32(math.MaxUint32),
		Name:     d.str(),
		Hostname: d.str(),
		Config:   d.bytes(),
		Domains:  d.strs(),
	}
	return d.err
}

// AppendConfigureResponse appends the encoding of m to b.
func AppendConfigureResponse(b []byte, m *ConfigureResponse) []byte {
	e := encoder{b}
	e.str(m.Error)
	e.uint(uint64(m.Stages))
	e.uint(uint64(m.Permissions))
	e.str(m.ErrorKey)
	return e.b
}

// DecodeConfigureResponse decodes b into m.
func DecodeConfigureResponse(b []byte, m *ConfigureResponse) error {
	d := decoder{b: b}
	*m = ConfigureResponse{
		Error:       d.str(),
		Stages:      StageSet(d.uint32(math.MaxUint32)),
		Permissions: Permissions(d.uint32(math.MaxUint32)),
		ErrorKey:    d.str(),
	}
	return d.err
}

// AppendRequest appends the encoding of m to b.
func AppendRequest(b []byte, m *Request) []byte {
	e := encoder{b}
	e.uint(uint64(m.Stage))
	e.str(m.SessionID)
	e.str(m.ClientIP)
	e.str(m.ClientName)
	e.str(m.Helo)
	e.bool(m.TLS)
	e.str(m.MailFrom)
	e.bool(m.UTF8)
	e.uint(uint64(len(m.Rcpts)))
	for _, r := range m.Rcpts {
		e.str(r)
	}
	e.str(m.Rcpt)
	e.uint(m.Size)
	e.auth(&m.Auth)
	e.str(m.ClientNameResult)
	e.uint(uint64(len(m.Findings)))
	for _, f := range m.Findings {
		e.str(f.Plugin)
		e.str(f.Symbol)
		e.float(f.Score)
	}
	e.str(m.AuthenticatedUser)
	return e.b
}

func (e *encoder) auth(a *Auth) {
	e.str(a.SPF.Result)
	e.str(a.SPF.Domain)
	e.str(a.SPF.Helo)
	e.uint(uint64(len(a.DKIM)))
	for _, d := range a.DKIM {
		e.str(d.Result)
		e.str(d.Domain)
		e.str(d.Selector)
		e.str(d.Reason)
	}
	e.str(a.ARC.Result)
	e.uint(uint64(a.ARC.Instances))
	e.uint(uint64(a.ARC.OldestPass))
	e.uint(uint64(len(a.ARC.Sealers)))
	for _, s := range a.ARC.Sealers {
		e.str(s)
	}
	e.str(a.ARC.Reason)
	d := &a.DMARC
	e.str(d.Result)
	e.str(d.FromDomain)
	e.str(d.PolicyDomain)
	e.str(d.Policy)
	e.uint(uint64(d.Pct))
	e.bool(d.SPFAligned)
	e.bool(d.DKIMAligned)
	e.str(d.Reason)
}

func (d *decoder) auth() Auth {
	var a Auth
	a.SPF = SPF{Result: d.str(), Domain: d.str(), Helo: d.str()}
	if n := d.count(); n > 0 {
		a.DKIM = make([]DKIM, n)
		for i := range a.DKIM {
			a.DKIM[i] = DKIM{Result: d.str(), Domain: d.str(), Selector: d.str(), Reason: d.str()}
		}
	}
	a.ARC = ARC{
		Result:     d.str(),
		Instances:  d.uint32(math.MaxUint32),
		OldestPass: d.uint32(math.MaxUint32),
		Sealers:    d.strs(),
		Reason:     d.str(),
	}
	a.DMARC = DMARC{
		Result:       d.str(),
		FromDomain:   d.str(),
		PolicyDomain: d.str(),
		Policy:       d.str(),
		Pct:          d.uint32(100),
		SPFAligned:   d.bool(),
		DKIMAligned:  d.bool(),
		Reason:       d.str(),
	}
	return a
}

// DecodeRequest decodes b into m.
func DecodeRequest(b []byte, m *Request) error {
	return decodeRequest(&decoder{b: b}, m)
}

// DecodeRequestShared is DecodeRequest with m's strings sharing b's
// memory, where DecodeRequest copies each: one allocation, b, serves a
// request's dozens of strings. A guest allocates at several times the
// native cost, and these allocations were most of what the SDK did per
// call. b must never change afterwards: give it a copy of its own. Any
// one of m's strings kept keeps all of b alive.
func DecodeRequestShared(b []byte, m *Request) error {
	return decodeRequest(&decoder{b: b, shared: true}, m)
}

func decodeRequest(d *decoder, m *Request) error {
	*m = Request{
		Stage:      Stage(d.uint32(math.MaxUint8)),
		SessionID:  d.str(),
		ClientIP:   d.str(),
		ClientName: d.str(),
		Helo:       d.str(),
		TLS:        d.bool(),
		MailFrom:   d.str(),
		UTF8:       d.bool(),
		Rcpts:      d.strs(),
		Rcpt:       d.str(),
		Size:       d.uint(),
		Auth:       d.auth(),
	}
	m.ClientNameResult = d.str()
	if n := d.count(); n > 0 {
		m.Findings = make([]PluginFinding, n)
		for i := range m.Findings {
			m.Findings[i] = PluginFinding{Plugin: d.str(), Symbol: d.str(), Score: d.float()}
		}
	}
	m.AuthenticatedUser = d.str()
	return d.err
}

// AppendVerdict appends the encoding of m to b.
func AppendVerdict(b []byte, m *Verdict) []byte {
	e := encoder{b}
	e.uint(uint64(m.Action))
	e.uint(uint64(m.Code))
	e.str(m.Enhanced)
	e.str(m.Text)
	e.str(m.Destination)
	e.uint(uint64(len(m.AddHeaders)))
	for _, h := range m.AddHeaders {
		e.str(h.Name)
		e.str(h.Value)
	}
	e.uint(uint64(len(m.RemoveHeaders)))
	for _, h := range m.RemoveHeaders {
		e.str(h)
	}
	e.uint(uint64(len(m.Findings)))
	for _, f := range m.Findings {
		e.str(f.Symbol)
		e.float(f.Score)
	}
	if m.Failure != "" || len(m.Destinations) > 0 { // older guests end at the findings
		e.str(m.Failure)
	}
	if len(m.Destinations) > 0 { // and older guests at the failure
		e.uint(uint64(len(m.Destinations)))
		for _, d := range m.Destinations {
			e.str(d)
		}
	}
	return e.b
}

// DecodeVerdict decodes b into m.
func DecodeVerdict(b []byte, m *Verdict) error {
	d := decoder{b: b}
	*m = Verdict{
		Action:      Action(d.uint32(math.MaxUint8)),
		Code:        uint16(d.uint32(math.MaxUint16)),
		Enhanced:    d.str(),
		Text:        d.str(),
		Destination: d.str(),
	}
	if n := d.count(); n > 0 {
		m.AddHeaders = make([]Header, n)
		for i := range m.AddHeaders {
			m.AddHeaders[i] = Header{Name: d.str(), Value: d.str()}
		}
	}
	m.RemoveHeaders = d.strs()
	if n := d.count(); n > 0 {
		m.Findings = make([]Finding, n)
		for i := range m.Findings {
			m.Findings[i] = Finding{Symbol: d.str(), Score: d.float()}
		}
	}
	m.Failure = d.str()
	m.Destinations = d.strs()
	if d.err == nil && m.Action > Quarantine {
		return ErrMalformed
	}
	return d.err
}
