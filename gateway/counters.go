package gateway

import (
	"sync"

	"github.com/sluice-mail/sluice/gateway/internal/metrics"
	"github.com/sluice-mail/sluice/gateway/internal/plugin"
)

// maxCountersPerPlugin bounds the counter names one plugin may make: each
// is a series that every scrape carries, and a plugin could make a new
// name per message.
const maxCountersPerPlugin = 100

// pluginCounters exports what plugins count (the counter_add host
// function) as sluice_plugin_counter_total{plugin, name}. Counts survive
// reloads: the family belongs to the gateway, not to a chain.
type pluginCounters struct {
	vec *metrics.CounterVec

	mu      sync.RWMutex
	known   map[[2]string]*metrics.Counter
	perName map[string]int // names made, per plugin
	dropped *metrics.CounterVec
}

func newPluginCounters(r *metrics.Registry) *pluginCounters {
	return &pluginCounters{
		vec: r.Counter("sluice_plugin_counter_total",
			"What plugins count with the counter_add host function, by plugin and counter name.", "plugin", "name"),
		dropped: r.Counter("sluice_plugin_counter_dropped_total",
			"Additions to counters refused because the plugin already has the maximum number of counter names (100).", "plugin"),
		known:   map[[2]string]*metrics.Counter{},
		perName: map[string]int{},
	}
}

// Add adds delta to a plugin's counter. The host has checked name and
// delta.
func (c *pluginCounters) Add(pluginName, name string, delta float64) {
	key := [2]string{pluginName, name}
	c.mu.RLock()
	ctr, ok := c.known[key]
	c.mu.RUnlock()
	if !ok {
		if ctr = c.make(key); ctr == nil {
			c.dropped.With(pluginName).Inc()
			return
		}
	}
	ctr.Add(delta)
}

// make returns the counter for key, making it if the plugin is under its
// limit of names; nil if it is not.
func (c *pluginCounters) make(key [2]string) *metrics.Counter {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ctr, ok := c.known[key]; ok {
		return ctr
	}
	if c.perName[key[0]] >= maxCountersPerPlugin {
		return nil
	}
	c.perName[key[0]]++
	ctr := c.vec.With(key[0], key[1])
	c.known[key] = ctr
	return ctr
}

var _ plugin.Counters = (*pluginCounters)(nil)
