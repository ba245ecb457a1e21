//go:build !linux

package plugin

import "github.com/tetratelabs/wazero/experimental"

// memoryPool stands for wazero's own allocator where the one of memory.go
// is not built.
type memoryPool struct{}

func newMemoryPool() *memoryPool { return nil }

// Allocate is not called: WithMemoryAllocator ignores a nil allocator.
func (*memoryPool) Allocate(_, _ uint64) experimental.LinearMemory { return nil }

func (*memoryPool) release() {}
