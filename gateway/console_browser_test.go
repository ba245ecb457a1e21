package gateway_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/emersion/go-smtp"
	"golang.org/x/crypto/bcrypt"

	"github.com/sluice-mail/sluice/gateway/internal/browsertest"
)

// The console in a real browser, end to end: the gateway handles a
// forwarded, a dropped, a DMARC-refused and a relay-refused message; then
// headless Chromium opens the console, is sent to the login page, logs
// in, sees all four, filters for one recipient with the filter form, and
// opens the refused message's detail, which gives the reply and who
// decided. With SLUICE_SCREENSHOT=1 it writes the list as
// docs/console-screenshot.png, the picture docs/console.md shows.
func TestConsoleInBrowser(t *testing.T) {
	const user, password = "postmaster", "correct horse battery staple"
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	e := startEnv(t, envOptions{sections: fmt.Sprintf(`
[console]
enabled = true
[[console.user]]
name = %q
password_hash = %q
`, user, hash)})

	// The four outcomes, each in its own session, as four senders would.
	msg := func(from, subject string) string {
		return fmt.Sprintf("From: <%s>\r\nTo: info@ours.test\r\nSubject: %s\r\n"+
			"Date: Sun, 06 Dec 2026 10:00:00 +0000\r\nMessage-ID: <%s@test>\r\n\r\nHello.\r\n",
			from, subject, strings.ReplaceAll(subject, " ", "-"))
	}
	if err := e.send(t, "alice@example.org", "info@ours.test", msg("alice@example.org", "Quarterly report")); err != nil {
		t.Fatalf("forwarded: %v", err)
	}
	if err := e.send(t, "alice@example.org", "drop@ours.test", msg("alice@example.org", "Into the void")); err != nil {
		t.Fatalf("dropped: %v", err)
	}
	const dmarcReason = "strict.example's DMARC policy is reject and neither SPF nor DKIM aligned"
	err = e.send(t, "bob@strict.example", "info@ours.test", msg("bob@strict.example", "Spoofed invoice"))
	wantReply(t, "DMARC", err, 550, smtp.EnhancedCode{5, 7, 1}, dmarcReason)
	// A transaction without DATA ends, and is recorded, when the client
	// quits.
	c := e.client(t)
	err = sendMail(t, c, "alice@example.org", "someone@elsewhere.example", msg("alice@example.org", "Relay me"))
	wantReply(t, "relay", err, 550, smtp.EnhancedCode{5, 7, 1}, "relay access denied")
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	if n := len(e.dest.deliveries()); n != 1 {
		t.Fatalf("%d messages delivered, want 1", n)
	}

	ctx := browsertest.Start(t, time.Minute)
	base := "http://" + e.gw.AdminAddr()
	// Each step has 15 seconds: a missing element fails the step with
	// its name rather than waiting for the browser's minute.
	run := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	text := func(what string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body")))
		if err != nil {
			t.Fatalf("%s: reading the page: %v", what, err)
		}
		return s
	}
	location := func() string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Location())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// waitFor waits for the page that a click or a submitted form loads.
	// (chromedp.Poll gives up when the page changes under it.)
	waitFor := func(what, condition string) {
		t.Helper()
		expr := `document.readyState == "complete" && (` + condition + `)`
		for deadline := time.Now().Add(10 * time.Second); ; {
			if ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr)); err == nil && ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: still not %s at %s, which shows:\n%s", what, condition, location(), text(what))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// Not logged in: the console sends the browser to its login page.
	run("opening the console", chromedp.Navigate(base+"/"))
	if loc := location(); !strings.HasPrefix(loc, base+"/login") {
		t.Fatalf("the console without a session is at %s, want the login page", loc)
	}
	// The form's user name field is its one visible text field; whatever
	// the field names, a person would know what to type where.
	run("logging in",
		chromedp.SendKeys(chromedp.CSS(`form input:not([type=password]):not([type=hidden]):not([type=submit])`), user),
		chromedp.SendKeys(chromedp.CSS(`form input[type=password]`), password),
		chromedp.Submit(chromedp.CSS(`form input[type=password]`)),
	)
	waitFor("logging in", `location.pathname == "/"`)

	// Records are written in batches: reload until the last is there.
	var list string
	for deadline := time.Now().Add(10 * time.Second); ; {
		list = text("the list")
		if strings.Contains(list, "someone@elsewhere.example") || time.Now().After(deadline) {
			break
		}
		run("reloading the list", chromedp.Sleep(200*time.Millisecond), chromedp.Reload())
	}
	for _, want := range []string{"info@ours.test", "drop@ours.test", "bob@strict.example", "someone@elsewhere.example",
		"forwarded", "dropped", "refused"} {
		if !strings.Contains(list, want) {
			t.Errorf("the list does not show %q:\n%s", want, list)
		}
	}
	if os.Getenv("SLUICE_SCREENSHOT") != "" {
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		if err := os.WriteFile(filepath.Join("..", "docs", "console-screenshot.png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// One recipient, with the filter form.
	run("filtering",
		chromedp.SendKeys(chromedp.CSS(`form input[name=address]`), "info@ours.test"),
		chromedp.Submit(chromedp.CSS(`form input[name=address]`)),
	)
	waitFor("filtering", `location.search.includes("address=info%40ours.test")`)
	filtered := text("the filtered list")
	for _, want := range []string{"alice@example.org", "bob@strict.example"} {
		if !strings.Contains(filtered, want) {
			t.Errorf("the list filtered for info@ours.test does not show %q:\n%s", want, filtered)
		}
	}
	for _, other := range []string{"drop@ours.test", "someone@elsewhere.example"} {
		if strings.Contains(filtered, other) {
			t.Errorf("the list filtered for info@ours.test shows %q:\n%s", other, filtered)
		}
	}

	// The refused message's detail: its row's link.
	run("opening the refused message",
		chromedp.Click(chromedp.Search(`//tr[contains(., "bob@strict.example")]//a[contains(@href, "/tx/")]`)))
	waitFor("opening the refused message", `location.pathname.startsWith("/tx/")`)
	detail := text("the detail")
	for _, want := range []string{"bob@strict.example", "info@ours.test", "refused", "550", dmarcReason, "plugin:dmarc"} {
		if !strings.Contains(detail, want) {
			t.Errorf("the refused message's detail does not show %q:\n%s", want, detail)
		}
	}
}
