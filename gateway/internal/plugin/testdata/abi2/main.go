// Command abi2 is a test plugin built for an ABI version the host does not
// speak.
package main

import "unsafe"

//go:wasmimport sluice abi_version_2
func abiVersion2()

var buf [64]byte

//go:wasmexport sluice_buffer
func buffer(size uint32) unsafe.Pointer { abiVersion2(); return unsafe.Pointer(&buf[0]) }

//go:wasmexport sluice_configure
func configure(n uint32) uint64 { return 0 }

//go:wasmexport sluice_handle
func handle(n uint32) uint64 { return 0 }

func main() {}
