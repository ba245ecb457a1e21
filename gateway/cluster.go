package gateway

import (
	"github.com/sluice-mail/sluice/gateway/internal/config"
	"github.com/sluice-mail/sluice/gateway/internal/rediskv"
)

// newRedisKV makes the plugins' key-value store in Redis that [cluster]
// names, shared by every node; nil without cluster.redis (each node's
// memory, then). It reads the password and CA files now, and reports
// either that cannot be read at its setting's line, but does not
// connect: the gateway starts while Redis is down (sluice check never
// connects), and the store connects on its first call. Made once at
// start: [cluster] is not reloaded.
func (g *Gateway) newRedisKV(cfg *config.Config) (*rediskv.KV, *config.Error) {
	rc, ok, cerr := rediskv.FromConfig(cfg, g.metrics.redisKV)
	if !ok {
		return nil, cerr
	}
	kv, err := rediskv.New(rc)
	if err != nil {
		return nil, cfg.ErrorAt("cluster.redis", "cluster.redis: %v", err)
	}
	return kv, nil
}
