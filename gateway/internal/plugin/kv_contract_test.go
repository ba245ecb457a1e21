package plugin_test

import (
	"testing"

	"github.com/sluice-mail/sluice/gateway/internal/plugin"
	"github.com/sluice-mail/sluice/gateway/internal/plugin/kvtest"
)

func TestMemoryKVContract(t *testing.T) {
	kvtest.Run(t, func(testing.TB) plugin.KV { return plugin.NewMemoryKV(plugin.MemoryKVConfig{}) })
}
