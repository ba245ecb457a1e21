// Package browsertest starts a real browser for tests: Debian's package
// chromium, headless, driven through the DevTools protocol by chromedp,
// with a temporary profile so that nothing of one test reaches another.
package browsertest

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Path is where Debian's chromium package puts the browser.
const Path = "/usr/bin/chromium"

// Start starts headless Chromium and returns a browser context for
// chromedp.Run and chromedp.Do. The browser is stopped after timeout at the
// latest, so a test that hangs on a page fails rather than waiting for go
// test's own timeout; it is stopped when the test ends. Without chromium the
// test is skipped.
func Start(t testing.TB, timeout time.Duration) context.Context {
	t.Helper()
	if _, err := os.Stat(Path); err != nil {
		t.Skipf("chromium is not installed at %s (Debian: apt-get install chromium); .ci/run installs it", Path)
	}
	// The defaults include headless and a small /dev/shm's workaround.
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(Path),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	if os.Geteuid() == 0 {
		// Chromium refuses to start as root with its sandbox on, and CI
		// runs as root. The pages it opens are our own, on loopback.
		opts = append(opts, chromedp.NoSandbox)
	}
	ctx, cancelTimeout := context.WithTimeout(context.Background(), timeout)
	ctx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	ctx, cancelBrowser := chromedp.NewContext(ctx, chromedp.WithErrorf(t.Logf))
	// Start the browser now, so that a browser that cannot start fails
	// here with its reason rather than in the test's first step.
	if err := chromedp.Do(ctx); err != nil {
		cancelBrowser()
		cancelAlloc()
		cancelTimeout()
		t.Fatalf("starting %s: %v", Path, err)
	}
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
		cancelTimeout()
	})
	return ctx
}
