package gateway_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/net/html"

	"github.com/sluice-mail/sluice/gateway/internal/activity"
)

// consoleClient logs in to the console of e as admin (password pw) and
// returns a client with the session cookie, and the admin listener's URL.
func consoleClient(t *testing.T, e *env) (*http.Client, string) {
	t.Helper()
	return consoleLogin(t, "http://"+e.gw.AdminAddr())
}

// consoleLogin logs in to the console at base (http://host:port) as
// admin (password pw) and returns a client with the session cookie, and
// base.
func consoleLogin(t *testing.T, base string) (*http.Client, string) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	doc, _ := fetchPage(t, c, base+"/login")
	csrf := hiddenCSRF(doc)
	if csrf == "" {
		t.Fatal("the login form has no csrf field")
	}
	resp, err := c.PostForm(base+"/login", url.Values{"user": {"admin"}, "password": {"pw"}, "csrf": {csrf}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/" {
		t.Fatalf("login: %d at %s", resp.StatusCode, resp.Request.URL)
	}
	return c, base
}

func fetchPage(t *testing.T, c *http.Client, u string) (*html.Node, int) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	doc, err := html.Parse(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return doc, resp.StatusCode
}

// hiddenCSRF is the value of the first field named csrf in doc.
func hiddenCSRF(doc *html.Node) string {
	for n := range doc.Descendants() {
		if n.Type == html.ElementNode && n.Data == "input" && attrOf(n, "name") == "csrf" {
			return attrOf(n, "value")
		}
	}
	return ""
}

func attrOf(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

// With [console] on, the admin listener serves the console and the API
// behind the login, over the gateway's own activity store: a message
// forwarded and one refused by relay protection show in the API and in
// the list, the refused one's page gives its reply, and the chain page's
// reload button works with its CSRF token and not without it.
func TestConsoleServed(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	e := startEnv(t, envOptions{sections: `
[console]
enabled = true
[[console.user]]
name = "admin"
password_hash = "` + string(hash) + `"
`})
	smtpc := e.client(t)
	if err := sendMail(t, smtpc, "alice@example.org", "info@ours.test", testMessage); err != nil {
		t.Fatalf("forwarded: %v", err)
	}
	if err := smtpc.Mail("alice@example.org", nil); err != nil {
		t.Fatal(err)
	}
	if err := smtpc.Rcpt("someone@elsewhere.test", nil); err == nil {
		t.Fatal("relayed for elsewhere.test")
	}
	if err := smtpc.Quit(); err != nil {
		t.Fatal(err)
	}

	// Not logged in, the API answers 401.
	if resp, err := http.Get("http://" + e.gw.AdminAddr() + "/api/v1/transactions"); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("API without a login: %v %v", resp.Status, err)
	}
	c, base := consoleClient(t, e)

	var answer struct {
		Total        int               `json:"total"`
		Transactions []activity.Record `json:"transactions"`
	}
	deadline := time.Now().Add(10 * time.Second)
	for answer.Total < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		resp, err := c.Get(base + "/api/v1/transactions")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("API: %d %s", resp.StatusCode, body)
		}
		if err := json.Unmarshal(body, &answer); err != nil {
			t.Fatal(err)
		}
	}
	if answer.Total != 2 || answer.Transactions[0].Outcome != "refused" || answer.Transactions[1].Outcome != "forwarded" {
		t.Fatalf("API: %+v", answer)
	}

	// The list filtered for the refused, and its detail page.
	doc, code := fetchPage(t, c, base+"/?outcome=refused")
	var links []string
	for n := range doc.Descendants() {
		if n.Type == html.ElementNode && n.Data == "a" && strings.HasPrefix(attrOf(n, "href"), "/tx/") {
			links = append(links, attrOf(n, "href"))
		}
	}
	if code != http.StatusOK || len(links) != 1 || links[0] != "/tx/"+answer.Transactions[0].ID {
		t.Fatalf("list of the refused: %d, links %v", code, links)
	}
	doc, code = fetchPage(t, c, base+links[0])
	if body := pageText(doc); code != http.StatusOK || !strings.Contains(body, "someone@elsewhere.test") || !strings.Contains(body, answer.Transactions[0].Reply) {
		t.Errorf("detail: %d\n%s", code, body)
	}

	// Reload from the chain page, with its token and without.
	doc, _ = fetchPage(t, c, base+"/chain")
	csrf := hiddenCSRF(doc)
	if csrf == "" {
		t.Fatal("no csrf token on the chain page")
	}
	for _, try := range []struct {
		csrf string
		want int
	}{{"", http.StatusForbidden}, {"wrong", http.StatusForbidden}, {csrf, http.StatusOK}} {
		resp, err := c.PostForm(base+"/chain/reload", url.Values{"csrf": {try.csrf}})
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != try.want {
			t.Errorf("reload with csrf %q: %d, want %d\n%s", try.csrf, resp.StatusCode, try.want, body)
		}
		if try.want == http.StatusOK && !strings.Contains(string(body), "Reloaded: generation 2") {
			t.Errorf("reload: %s", body)
		}
	}
}

// pageText is the text of a page, spaces collapsed.
func pageText(doc *html.Node) string {
	var words []string
	for n := range doc.Descendants() {
		if n.Type == html.TextNode {
			words = append(words, strings.Fields(n.Data)...)
		}
	}
	return strings.Join(words, " ")
}
