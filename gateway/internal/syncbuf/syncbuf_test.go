package syncbuf

import (
	"strings"
	"sync"
	"testing"
)

// Writers and readers at once (go test -race checks them), and every
// write kept whole.
func TestConcurrent(t *testing.T) {
	var b Buffer
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(2)
		go func() { defer wg.Done(); b.Write([]byte("line\n")) }()
		go func() { defer wg.Done(); _ = b.String() }()
	}
	wg.Wait()
	if got := b.String(); got != strings.Repeat("line\n", 8) {
		t.Errorf("String = %q, want 8 lines", got)
	}
	b.Reset()
	if got := b.String(); got != "" {
		t.Errorf("after Reset, String = %q", got)
	}
}
