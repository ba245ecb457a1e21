package doctor

import (
	"context"
	"strings"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/rediskv"
)

// redisTimeout bounds the doctor's PING: longer than a call's
// redis_timeout, since this one also connects (and, to a Redis Cluster or
// Sentinel, finds the nodes).
const redisTimeout = 5 * time.Second

// redis checks that the Redis of [cluster] answers PING, logged in as the
// gateway would be. Without it the plugins that use the key-value store
// fail on every call, and their on_failure decides.
func (d *doctor) redis(ctx context.Context) {
	rc, ok, cerr := rediskv.FromConfig(d.Config, nil)
	if cerr != nil {
		d.add(Error, "Redis", "cluster.redis", "%v", cerr)
		return
	}
	if !ok {
		return
	}
	name := strings.Join(rc.Addrs, ", ")
	rc.Timeout = max(rc.Timeout, redisTimeout)
	kv, err := rediskv.New(rc)
	if err == nil {
		defer kv.Close()
		err = kv.Ping(ctx)
	}
	if err != nil {
		d.add(Error, "Redis", name, "does not answer: %v; until it does, every plugin call to the key-value store fails and the plugin's on_failure decides", err)
		return
	}
	d.add(OK, "Redis", name, "answers PING")
}
