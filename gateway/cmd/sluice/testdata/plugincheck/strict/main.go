// Command strict is a test plugin for sluice plugin check, written without
// the SDK: it traps on a request that is not exactly as long as this
// version's encoding of it, as a guest would that requires every field and
// no more, against sdk/ABI.md's rule that missing trailing fields read as
// zero and unknown ones are ignored.
package main

import (
	"unsafe"

	"github.com/sluice-mail/sluice/sdk/abi"
)

//go:wasmimport sluice abi_version_1
func abiVersion1()

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
	out = abi.AppendConfigureResponse(out[:0], &abi.ConfigureResponse{Stages: abi.StageSetOf(abi.StageMail)})
	return pack(out)
}

//go:wasmexport sluice_handle
func handle(n uint32) uint64 {
	var req abi.Request
	if err := abi.DecodeRequest(in[:n], &req); err != nil {
		panic(err)
	}
	if len(abi.AppendRequest(nil, &req)) != int(n) {
		panic("a request of another version")
	}
	out = abi.AppendVerdict(out[:0], &abi.Verdict{})
	return pack(out)
}

func pack(b []byte) uint64 {
	return abi.PackResult(uint32(uintptr(unsafe.Pointer(&b[0]))), uint32(len(b)))
}

func main() {}
