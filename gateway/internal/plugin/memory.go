//go:build linux

package plugin

import (
	"sync"
	"syscall"

	"github.com/tetratelabs/wazero/experimental"
)

// memoryPool backs the linear memories of one plugin's instances with
// regions of address space reserved to the memory limit at once, so that
// growing a memory never copies it (wazero's own buffers grow by copying,
// and the old copy lingers in the Go heap until collected). Reserving costs
// address space, not memory: pages are committed as the guest touches them.
//
// When an instance closes, its pages go back to the operating system at
// once (madvise), whatever the Go collector does, and its region is kept
// for the next instance: an instance may be closed while its guest still
// runs (Plugin.Close when waiting runs out), and a region unmapped under a
// running guest would crash the gateway. The regions are unmapped only
// when the plugin closes with none of its instances running.
type memoryPool struct {
	mu   sync.Mutex
	free [][]byte // regions no instance uses, their pages released
	all  [][]byte
}

func newMemoryPool() *memoryPool { return &memoryPool{} }

// Allocate implements experimental.MemoryAllocator.
func (p *memoryPool) Allocate(_, max uint64) experimental.LinearMemory {
	return &mmapMemory{pool: p, max: max}
}

// region returns a region of size bytes, reused or mapped afresh.
func (p *memoryPool) region(size uint64) []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, b := range p.free {
		if uint64(len(b)) == size {
			p.free = append(p.free[:i], p.free[i+1:]...)
			return b
		}
	}
	b, err := syscall.Mmap(-1, 0, int(size), syscall.PROT_READ|syscall.PROT_WRITE,
		syscall.MAP_PRIVATE|syscall.MAP_ANON|syscall.MAP_NORESERVE)
	if err != nil {
		return nil
	}
	p.all = append(p.all, b)
	return b
}

// put releases a region's pages, which reads back as zeros, and keeps it
// for reuse.
func (p *memoryPool) put(b []byte) {
	_ = syscall.Madvise(b, syscall.MADV_DONTNEED)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.free = append(p.free, b)
}

// release unmaps every region. Only for when no instance runs.
func (p *memoryPool) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, b := range p.all {
		_ = syscall.Munmap(b)
	}
	p.all, p.free = nil, nil
}

// mmapMemory is one linear memory: mem is its region, of which the guest
// sees the first bytes.
type mmapMemory struct {
	pool *memoryPool
	mem  []byte
	max  uint64
}

// Reallocate returns the memory at size bytes, or nil if the mapping
// fails or size is over the limit, which the guest sees as a failed
// memory.grow.
func (m *mmapMemory) Reallocate(size uint64) []byte {
	if size > m.max {
		return nil
	}
	if m.mem == nil {
		// At least a page: a mapping of 0 bytes fails, and a memory of
		// 0 pages still needs an address.
		if m.mem = m.pool.region(max(m.max, pageSize)); m.mem == nil {
			return nil
		}
	}
	return m.mem[:size:size]
}

// Free gives the region back to the pool. wazero calls it when the
// instance closes.
func (m *mmapMemory) Free() {
	if m.mem != nil {
		m.pool.put(m.mem)
		m.mem = nil
	}
}
