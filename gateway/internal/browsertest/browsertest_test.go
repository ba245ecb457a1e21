package browsertest_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sluice-mail/sluice/gateway/internal/browsertest"
)

// A page served on loopback is loaded, and its script has run: the
// browser is a real one.
func TestStart(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `<!doctype html><title>t</title><p id="p">static</p><script>document.getElementById("p").textContent = "scripted"</script>`)
	}))
	defer srv.Close()
	ctx := browsertest.Start(t, 30*time.Second)
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL)); err != nil {
		t.Fatal(err)
	}
	text, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("p")))
	if err != nil {
		t.Fatal(err)
	}
	if text != "scripted" {
		t.Errorf("text = %q, want %q", text, "scripted")
	}
}
