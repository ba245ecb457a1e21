package sdk

import (
	"bytes"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/sluice-mail/sluice/sdk/abi"
)

// guest turns the host's bytes into calls of the plugin's methods and the
// answers back into bytes. It is the part of the exports that needs no
// WebAssembly, so that it is tested natively.
type guest struct {
	plugin any
	in     []byte // the buffer the host writes requests into
	out    []byte // the encoded answer, reused from call to call
	req    abi.Request
}

// minBuffer is the smallest buffer handed out, so that the buffer's address
// is stable across the small requests that make up nearly all calls.
const minBuffer = 4096

func newGuest(p any) *guest {
	return &guest{plugin: p, in: make([]byte, minBuffer)}
}

// buffer returns a buffer of at least size bytes. It moves only when it must
// grow, which is what lets the host remember its address.
func (g *guest) buffer(size uint32) []byte {
	if uint64(size) > uint64(len(g.in)) {
		g.in = make([]byte, size)
	}
	return g.in
}

// configure answers the ConfigureRequest of n bytes in the buffer.
func (g *guest) configure(n uint32) []byte {
	var resp abi.ConfigureResponse
	var req abi.ConfigureRequest
	if err := g.request(n, func(b []byte) error { return abi.DecodeConfigureRequest(b, &req) }); err != nil {
		resp.Error = err.Error()
	} else {
		c := &Config{Name: req.Name, Hostname: req.Hostname, Raw: req.Config, Domains: req.Domains}
		if err := g.callConfigure(c); err != nil {
			resp.Error = err.Error()
			var se *SettingError
			if errors.As(err, &se) {
				resp.ErrorKey = se.Key
			}
		}
		resp.Stages = Stages(g.plugin)
		resp.Permissions = c.perms
	}
	g.out = abi.AppendConfigureResponse(g.out[:0], &resp)
	return g.out
}

func (g *guest) callConfigure(c *Config) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("configure panicked: %v", p)
			Log(abi.LogError, err.Error()+"\n"+string(debug.Stack()))
		}
	}()
	if cf, ok := g.plugin.(Configurer); ok {
		return cf.Configure(c)
	}
	return nil
}

// handle answers the Request of n bytes in the buffer.
func (g *guest) handle(n uint32) []byte {
	var v Verdict
	// The request's strings share one copy of it: the buffer is the next
	// request's, and a plugin may keep a string past this call.
	if err := g.request(n, func(b []byte) error { return abi.DecodeRequestShared(bytes.Clone(b), &g.req) }); err != nil {
		v = Tempfail(451, "4.3.0", "plugin could not read the request: "+err.Error())
	} else {
		v = g.dispatch(&g.req)
	}
	g.out = abi.AppendVerdict(g.out[:0], (*abi.Verdict)(&v))
	return g.out
}

func (g *guest) request(n uint32, decode func([]byte) error) error {
	if uint64(n) > uint64(len(g.in)) {
		return fmt.Errorf("request of %d bytes is larger than the buffer (%d)", n, len(g.in))
	}
	return decode(g.in[:n])
}

// dispatch calls the plugin's method for the request's stage. A panic there
// is a failure of the plugin, reported with the panic's first line (the
// whole of it and the stack go to the log). A host that predates the
// verdict's failure field gets a Tempfail naming the panic instead.
func (g *guest) dispatch(req *Request) (v Verdict) {
	defer func() {
		if p := recover(); p != nil {
			msg := fmt.Sprintf("plugin panicked at %s: %v", req.Stage, p)
			Log(abi.LogError, msg+"\n"+string(debug.Stack()))
			first, _, _ := strings.Cut(msg, "\n")
			v = Tempfail(451, "4.3.0", first)
			v.Failure = strings.TrimPrefix(first, "plugin ")
		}
	}()
	switch req.Stage {
	case abi.StageConnect:
		if h, ok := g.plugin.(ConnectHandler); ok {
			return h.Connect(req)
		}
	case abi.StageHelo:
		if h, ok := g.plugin.(HeloHandler); ok {
			return h.Helo(req)
		}
	case abi.StageMail:
		if h, ok := g.plugin.(MailHandler); ok {
			return h.Mail(req)
		}
	case abi.StageRcpt:
		if h, ok := g.plugin.(RcptHandler); ok {
			return h.Rcpt(req)
		}
	case abi.StageData:
		if h, ok := g.plugin.(DataHandler); ok {
			return h.Data(req)
		}
	case abi.StageClose:
		if h, ok := g.plugin.(CloseHandler); ok {
			h.Close(req)
		}
	}
	return Continue()
}
