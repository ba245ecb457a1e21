package gateway_test

import (
	"fmt"
	"testing"

	"github.com/sluice-mail/sluice/gateway/internal/wasmbuild"
)

// A plugin's stack_limit reaches its module: a plugin that compiles a
// regular expression with a counted repeat when configured, which goes
// past the default limit (see the plugin package's
// TestStackLimitSetting), starts with a larger one and serves.
func TestPluginStackLimit(t *testing.T) {
	e := startEnv(t, envOptions{plugins: fmt.Sprintf(`
[[plugin]]
name = "labels"
path = %q
stages = ["rcpt"]
stack_limit = "64MiB"
[plugin.config]
pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
%s`, wasmbuild.ForTest(t, "./gateway/internal/plugin/testdata/scripted"), routerPlugin(t))})
	if err := e.send(t, "alice@example.org", "info@ours.test", testMessage); err != nil {
		t.Fatalf("with stack_limit 64MiB: %v, want the message delivered", err)
	}
}
