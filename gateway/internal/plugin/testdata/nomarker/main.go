// Command nomarker is a test module that exports what a plugin exports but
// imports no ABI version marker.
package main

import "unsafe"

var buf [64]byte

//go:wasmexport sluice_buffer
func buffer(size uint32) unsafe.Pointer { return unsafe.Pointer(&buf[0]) }

//go:wasmexport sluice_configure
func configure(n uint32) uint64 { return 0 }

//go:wasmexport sluice_handle
func handle(n uint32) uint64 { return 0 }

func main() {}
