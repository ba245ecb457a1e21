package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/plugin"
	"github.com/sluice-mail/sluice/sdk/abi"
	"github.com/tetratelabs/wazero"
)

// The ABI conformance kit: sluice plugin check runs a plugin module through
// the gateway's host with requests of every kind a host of ABI version 1
// may send, and reports what holds and what does not.

// checkStatus is the result of one check.
type checkStatus uint8

const (
	checkOK   checkStatus = iota
	checkWarn             // allowed, but worth a look
	checkFail             // breaks the ABI: the gateway would refuse or count failures
)

func (s checkStatus) String() string { return [...]string{"ok", "warn", "FAIL"}[s] }

// checkItem is one line of the report.
type checkItem struct {
	Name   string
	Status checkStatus
	Detail string
}

// checkReport is what sluice plugin check found about one module.
type checkReport struct {
	Path  string
	Items []checkItem
}

func (r *checkReport) add(name string, s checkStatus, format string, args ...any) {
	r.Items = append(r.Items, checkItem{Name: name, Status: s, Detail: fmt.Sprintf(format, args...)})
}

// Item returns the check of that name, if it ran.
func (r *checkReport) Item(name string) (checkItem, bool) {
	for _, it := range r.Items {
		if it.Name == name {
			return it, true
		}
	}
	return checkItem{}, false
}

func (r *checkReport) count(s checkStatus) int {
	n := 0
	for _, it := range r.Items {
		if it.Status == s {
			n++
		}
	}
	return n
}

// Failed reports whether any check failed.
func (r *checkReport) Failed() bool { return r.count(checkFail) > 0 }

func (r *checkReport) write(w io.Writer) {
	fmt.Fprintf(w, "%s\n", r.Path)
	for _, it := range r.Items {
		fmt.Fprintf(w, "  %-4s  %-12s  %s\n", it.Status, it.Name, it.Detail)
	}
	verdict := "PASS"
	if r.Failed() {
		verdict = "FAIL"
	}
	fmt.Fprintf(w, "%s: %d failed, %d warnings, %d checks\n", verdict, r.count(checkFail), r.count(checkWarn), len(r.Items))
}

// The memory check: memoryCalls calls of one instance, in rounds of
// memoryRound, after which its memory may have grown by memoryGrowth over
// its size after the first round. A Go guest's runtime grows its heap to a
// steady few MiB whatever the plugin does; growth beyond that over the
// calls is a leak of some hundreds of bytes per call or more.
const (
	memoryCalls  = 30000
	memoryRound  = 1000
	memoryGrowth = 8 << 20
)

const pluginCheckUsage = `usage: sluice plugin check PLUGIN.wasm... [flags]

Runs the ABI conformance checks on each plugin module, through the
gateway's plugin host: the version marker, imports and exports, configure,
every declared stage with requests of every format and many edge cases
(decodable verdicts within the declared permissions, no trap), answers
that do not depend on the instance, and memory that stays bounded over
many calls. Exit status: 0 if no check failed, 1 if one did, 2 on bad
flags.

`

func pluginCheck(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("plugin check", pluginCheckUsage, stderr)
	var hf hostFlags
	hf.register(fs)
	files, err := parseWithArgs(fs, args, stdout)
	if err != nil {
		return usageStatus(err)
	}
	if len(files) == 0 {
		fs.Usage()
		return exitError
	}
	status := exitPassed
	for _, f := range files {
		r := checkConformance(ctx, f, &hf, stderr)
		r.write(stdout)
		if r.Failed() {
			status = exitRefused
		}
	}
	return status
}

// checkConformance runs every check on the module at path, loaded with
// hf's settings. It stops early only when a check leaves nothing to run
// the next on.
func checkConformance(ctx context.Context, path string, hf *hostFlags, log io.Writer) *checkReport {
	r := &checkReport{Path: path}
	if !checkModuleShape(ctx, r, path) {
		return r
	}
	two := *hf
	two.instances = 2 // the host checks that every instance declares the same
	// One instant of wall-clock time for the whole check, so that what a
	// plugin computes from the time (greylist's "try again in 300
	// seconds", 299 a second later) is the same on both instances, and
	// the determinism check sees only what an instance kept itself.
	start := time.Now()
	two.walltime = func() time.Time { return start }
	host, p, err := two.load(ctx, path, log)
	if err != nil {
		r.add("configure", checkFail, "%v", err)
		return r
	}
	defer host.Close(ctx)
	defer p.Close(ctx)
	r.add("configure", checkOK, "declares stages %s; permissions %s", stageNames(p.Stages()), permissionNames(p.Permissions()))
	checkStrictConfig(ctx, r, path, hf, log)

	cases := probeCases(p.Stages())
	first, err := p.Probe(ctx)
	if err != nil {
		r.add("stages", checkFail, "starting an instance: %v", err)
		return r
	}
	defer first.Close(ctx)
	verdicts := checkStages(ctx, r, first, cases)
	checkDeterminism(ctx, r, p, cases, verdicts)
	checkMemory(ctx, r, first, cases, verdicts)
	return r
}

// checkModuleShape reports the module's version marker, imports and
// exports, as the host checks them (sdk/ABI.md, "The module"), and the
// capabilities its imports need.
func checkModuleShape(ctx context.Context, r *checkReport, path string) bool {
	wasm, err := os.ReadFile(path)
	if err != nil {
		r.add("module", checkFail, "%v", err)
		return false
	}
	// The interpreter only validates: far quicker than compiling, and
	// enough to list imports and exports.
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer rt.Close(ctx)
	m, err := rt.CompileModule(ctx, wasm)
	if err != nil {
		r.add("module", checkFail, "not a WebAssembly module: %v", err)
		return false
	}
	var imports, problems []string
	var caps abi.Capability
	marker := false
	for _, d := range m.ImportedFunctions() {
		mod, name, _ := d.Import()
		switch {
		case mod == abi.HostModule && name == abi.VersionMarker:
			marker = true
		case mod == abi.HostModule && strings.HasPrefix(name, "abi_version_"):
			problems = append(problems, "imports "+name+", the marker of another ABI version")
		case mod == abi.HostModule:
			imports = append(imports, name)
			c, known := importCapability[name]
			if !known {
				problems = append(problems, "imports "+mod+"."+name+", which the ABI does not define")
			}
			caps |= c
		case mod != "wasi_snapshot_preview1":
			problems = append(problems, "imports "+mod+"."+name+"; only "+abi.HostModule+" and wasi_snapshot_preview1 are allowed")
		}
	}
	if !marker {
		problems = append(problems, "imports no "+abi.HostModule+"."+abi.VersionMarker+" (the ABI version 1 marker)")
	}
	exports := m.ExportedFunctions()
	for _, name := range []string{abi.ExportBuffer, abi.ExportConfigure, abi.ExportHandle} {
		if _, ok := exports[name]; !ok {
			problems = append(problems, "does not export "+name)
		}
	}
	if _, ok := m.ExportedMemories()["memory"]; !ok {
		problems = append(problems, "does not export its memory as \"memory\"")
	}
	if len(problems) > 0 {
		r.add("module", checkFail, "%s", strings.Join(problems, "; "))
		return false
	}
	sort.Strings(imports)
	if len(imports) == 0 {
		imports = []string{"nothing besides the marker"}
	}
	r.add("module", checkOK, "ABI version %d marker; exports %s, %s, %s and memory; imports from %s: %s",
		abi.Version, abi.ExportBuffer, abi.ExportConfigure, abi.ExportHandle, abi.HostModule, strings.Join(imports, ", "))
	need := "none"
	if caps != 0 {
		need = strings.ReplaceAll(caps.String(), ",", ", ") + " (grant them with capabilities = [...] in its [[plugin]])"
	}
	r.add("capabilities", checkOK, "needs %s", need)
	return true
}

// importCapability is the capability each host function needs (sdk/ABI.md).
var importCapability = map[string]abi.Capability{
	abi.FuncLog:       0,
	abi.FuncHeaderGet: abi.CapHeaders, abi.FuncHeaders: abi.CapHeaders,
	abi.FuncBodySize: abi.CapBody, abi.FuncBodyRead: abi.CapBody,
	abi.FuncDNSLookup: abi.CapDNS, abi.FuncDNSLookupMany: abi.CapDNS,
	abi.FuncKVGet: abi.CapKV, abi.FuncKVSet: abi.CapKV, abi.FuncKVDelete: abi.CapKV, abi.FuncKVIncr: abi.CapKV,
	abi.FuncHTTPRequest: abi.CapHTTP,
	abi.FuncCounterAdd:  abi.CapMetrics,
}

// unknownSetting is a key no plugin has.
const unknownSetting = "sluice_check_unknown_setting"

// checkStrictConfig checks that the plugin refuses a setting it does not
// know, as Sluice plugins do, so that a typo in gateway.toml is found at
// load rather than ignored. Not refusing is a warning: the ABI allows it.
func checkStrictConfig(ctx context.Context, r *checkReport, path string, hf *hostFlags, log io.Writer) {
	base, err := hf.settings()
	if err != nil {
		r.add("strict", checkFail, "%v", err)
		return
	}
	bad := *hf
	bad.configText = append([]byte(unknownSetting+" = 1\n"), base...)
	host, p, err := bad.load(ctx, path, log)
	if err != nil {
		if strings.Contains(err.Error(), unknownSetting) {
			r.add("strict", checkOK, "refuses an unknown setting, naming it")
		} else {
			r.add("strict", checkOK, "refuses an unknown setting: %v", err)
		}
		return
	}
	p.Close(ctx)
	host.Close(ctx)
	r.add("strict", checkWarn, "accepted an unknown setting %q: a typo in gateway.toml would go unnoticed", unknownSetting)
}

// checkStages sends every case to the plugin and reports, per stage, how
// many requests it answered well and what failed. It returns the
// verdicts, nil for a failed call, for checkDeterminism.
func checkStages(ctx context.Context, r *checkReport, pr *plugin.Probe, cases []probeCase) []*abi.Verdict {
	verdicts := make([]*abi.Verdict, len(cases))
	for _, st := range abi.Stages() {
		var n int
		var failures []string
		for i, c := range cases {
			if c.stage != st {
				continue
			}
			n++
			v, err := pr.Handle(ctx, c.stage, c.req, c.msg)
			if err != nil {
				failures = append(failures, c.name+": "+err.Error())
				continue
			}
			verdicts[i] = &v
		}
		if n == 0 {
			continue
		}
		if len(failures) > 0 {
			r.add(st.String(), checkFail, "%d of %d requests failed; first: %s", len(failures), n, failures[0])
			continue
		}
		r.add(st.String(), checkOK, "%d requests (current, older, minimal and newer formats; edge cases) answered with verdicts within its permissions", n)
	}
	return verdicts
}

// checkDeterminism sends the cases again to a fresh instance, in reverse
// order, which must answer as the first one did: the host gives requests
// to any instance, so an answer that depends on what one instance saw
// before looks random. A difference is a warning, since a plugin may also
// keep state in the key-value store, which instances share, or sample at
// random on purpose.
func checkDeterminism(ctx context.Context, r *checkReport, p *plugin.Plugin, cases []probeCase, first []*abi.Verdict) {
	pr, err := p.Probe(ctx)
	if err != nil {
		r.add("determinism", checkFail, "starting a second instance: %v", err)
		return
	}
	defer pr.Close(ctx)
	var differ []string
	for i := len(cases) - 1; i >= 0; i-- {
		c := cases[i]
		if first[i] == nil {
			continue // already reported
		}
		v, err := pr.Handle(ctx, c.stage, c.req, c.msg)
		if err != nil {
			r.add("determinism", checkFail, "%s: %s: failed on a second instance: %v", c.stage, c.name, err)
			return
		}
		if !reflect.DeepEqual(v, *first[i]) {
			differ = append(differ, fmt.Sprintf("%s %s: %s, then %s", c.stage, c.name,
				abi.Describe("", first[i]), abi.Describe("", &v)))
		}
	}
	if len(differ) > 0 {
		r.add("determinism", checkWarn, "%d of %d answers differ between instances (fine if it uses the key-value store or samples at random); first: %s",
			len(differ), len(cases), differ[0])
		return
	}
	r.add("determinism", checkOK, "a second instance gave the same %d answers", len(cases))
}

// checkMemory calls one instance many times and checks that its linear
// memory, which never shrinks, stops growing: growth that goes on means a
// leak, and a leaking instance dies at its memory limit. The calls are the
// cases that were answered well (the others are reported already) but for
// the largest messages, so that the check stays quick.
func checkMemory(ctx context.Context, r *checkReport, pr *plugin.Probe, cases []probeCase, answered []*abi.Verdict) {
	var loop []probeCase
	for i, c := range cases {
		if answered[i] != nil && (c.msg == nil || len(c.msg.Body) < 64<<10) {
			loop = append(loop, c)
		}
	}
	if len(loop) == 0 {
		return
	}
	var first, size uint32
	for calls := 1; calls <= memoryCalls; calls++ {
		c := loop[calls%len(loop)]
		if _, err := pr.Handle(ctx, c.stage, c.req, c.msg); err != nil {
			r.add("memory", checkFail, "call %d (%s, %s): %v", calls, c.stage, c.name, err)
			return
		}
		if calls%memoryRound != 0 {
			continue
		}
		size = pr.MemorySize()
		if calls == memoryRound {
			first = size
		}
		if size > first+memoryGrowth {
			r.add("memory", checkFail, "grows without bound: %s after %d calls, %s after %d", mib(first), memoryRound, mib(size), calls)
			return
		}
	}
	r.add("memory", checkOK, "%s after %d calls, %s after %d", mib(first), memoryRound, mib(size), memoryCalls)
}

func mib(n uint32) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func stageNames(set abi.StageSet) string {
	var names []string
	for _, st := range abi.Stages() {
		if set.Has(st) {
			names = append(names, st.String())
		}
	}
	return strings.Join(names, ", ")
}

var permissionList = []struct {
	p    abi.Permissions
	name string
}{
	{abi.MayAccept, "accept"}, {abi.MayReject, "reject"}, {abi.MayTempfail, "tempfail"},
	{abi.MayDiscard, "discard"}, {abi.MayQuarantine, "quarantine"}, {abi.MayAddHeaders, "add headers"},
	{abi.MayRemoveHeaders, "remove headers"}, {abi.MaySetDestination, "set destination"},
}

func permissionNames(p abi.Permissions) string {
	var names []string
	for _, pl := range permissionList {
		if p&pl.p != 0 {
			names = append(names, pl.name)
		}
	}
	if len(names) == 0 {
		return "none (continue only)"
	}
	return strings.Join(names, ", ")
}
