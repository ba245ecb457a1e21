// Command raw is a test plugin written against the ABI directly, without
// the SDK, so that it can give answers the SDK never would.
package main

import (
	"strings"
	"unsafe"

	"github.com/sluice-mail/sluice/sdk/abi"
)

//go:wasmimport sluice abi_version_1
func abiVersion1()

//go:wasmimport sluice log
func hostLog(level int32, ptr unsafe.Pointer, size uint32)

var (
	in  = make([]byte, 4096)
	out []byte
)

//go:wasmexport sluice_buffer
func buffer(size uint32) unsafe.Pointer {
	if int(size) > len(in) {
		in = make([]byte, size)
	}
	return unsafe.Pointer(&in[0])
}

//go:wasmexport sluice_configure
func configure(n uint32) uint64 {
	abiVersion1()
	out = abi.AppendConfigureResponse(out[:0], &abi.ConfigureResponse{
		Stages:      abi.StageSetOf(abi.StageRcpt),
		Permissions: abi.MayAccept,
	})
	return pack(out)
}

//go:wasmexport sluice_handle
func handle(n uint32) uint64 {
	var req abi.Request
	if err := abi.DecodeRequest(in[:n], &req); err != nil {
		panic(err)
	}
	local, _, _ := strings.Cut(req.Rcpt, "@")
	switch local {
	case "garbage": // a varint that never ends
		out = append(out[:0], 0xff, 0xff, 0xff, 0xff)
	case "badaction":
		out = abi.AppendVerdict(out[:0], &abi.Verdict{})
		out[0] = 9
	case "outside": // an answer past the end of memory
		return abi.PackResult(0xffff0000, 16)
	case "huge":
		return abi.PackResult(0, 0xffffffff)
	case "logpast": // a log message that runs past the end of memory
		hostLog(abi.LogWarn, unsafe.Pointer(&in[0]), 0x80000000)
		out = abi.AppendVerdict(out[:0], &abi.Verdict{Action: abi.Accept})
	default:
		out = abi.AppendVerdict(out[:0], &abi.Verdict{Action: abi.Accept})
	}
	return pack(out)
}

func pack(b []byte) uint64 {
	return abi.PackResult(uint32(uintptr(unsafe.Pointer(&b[0]))), uint32(len(b)))
}

func main() {}
