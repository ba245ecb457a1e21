package gateway

import (
	"context"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/config"
	"github.com/sluice-mail/sluice/gateway/internal/rediskv"
)

// newRedisKV makes the plugins' key-value store in Redis that [cluster]
// names, shared by every node; nil without cluster.redis (each node's
// memory, then). It reads the password and CA files now, and reports
// either that cannot be read at its setting's line, but does not
// connect: the gateway starts while Redis is down (sluice check never
// connects), and the store connects at checkRedis or its first call.
// Made once at start: [cluster] is not reloaded.
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

// Waiting for Redis at start: a first connection to a remote Redis may
// take longer than one call's redis_timeout, so the check tries for
// about redisStartTries × redisStartPause before it warns.
const (
	redisStartTries = 10
	redisStartPause = 500 * time.Millisecond
)

// checkRedis says in the log, soon after the start, whether Redis
// answers: a wrong password or an unreachable Redis is seen at start, not
// at the first mail, which would find it only in the plugin's failure.
// It also connects the store before that mail. It ends with ctx.
func (g *Gateway) checkRedis(ctx context.Context) {
	kv, addrs := g.redisKV, g.cfg.Cluster.Redis
	if kv == nil {
		return
	}
	go func() {
		var err error
		for range redisStartTries {
			if err = kv.Ping(ctx); err == nil {
				g.log.Info("Redis answers", "redis", addrs)
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(redisStartPause):
			}
		}
		g.log.Warn("Redis does not answer: until it does, every plugin call to the key-value store fails and the plugin's on_failure decides",
			"redis", addrs, "error", err)
	}()
}
