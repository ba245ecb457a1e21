//go:build wasip1

package sdk

import (
	"unsafe"

	"github.com/sluice-mail/sluice/sdk/abi"
)

// The WebAssembly side of the ABI (sdk/ABI.md): the version marker import,
// the log import, and the three exports, all backed by the registered guest.

//go:wasmimport sluice abi_version_1
func abiVersion1()

//go:wasmimport sluice log
func hostLog(level int32, ptr unsafe.Pointer, size uint32)

// Calling the marker keeps it in the binary: the linker drops imports that
// are never called, and the marker is how the host knows our ABI version.
func init() { abiVersion1() }

// Log writes msg to the gateway's log at the given level (abi.LogDebug,
// abi.LogInfo, abi.LogWarn or abi.LogError), tagged with the plugin's name.
func Log(level int32, msg string) {
	if msg == "" {
		return
	}
	hostLog(level, unsafe.Pointer(unsafe.StringData(msg)), uint32(len(msg)))
}

//go:wasmexport sluice_buffer
func exportBuffer(size uint32) unsafe.Pointer {
	return unsafe.Pointer(unsafe.SliceData(current().buffer(size)))
}

//go:wasmexport sluice_configure
func exportConfigure(n uint32) uint64 { return pack(current().configure(n)) }

//go:wasmexport sluice_handle
func exportHandle(n uint32) uint64 { return pack(current().handle(n)) }

// current returns the registered plugin, or one that refuses to configure
// when a module forgot to call Register, so that the load fails clearly.
func current() *guest {
	if registered == nil {
		registered = newGuest(unregistered{})
	}
	return registered
}

type unregistered struct{}

func (unregistered) Configure(*Config) error {
	return errNoPlugin
}

func pack(b []byte) uint64 {
	return abi.PackResult(uint32(uintptr(unsafe.Pointer(unsafe.SliceData(b)))), uint32(len(b)))
}
