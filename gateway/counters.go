package gateway

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

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
	vec *prometheus.CounterVec

	mu      sync.RWMutex
	known   map[[2]string]prometheus.Counter
	perName map[string]int // names made, per plugin
	dropped *prometheus.CounterVec
}

func newPluginCounters(r prometheus.Registerer) *pluginCounters {
	f := promauto.With(r)
	return &pluginCounters{
		vec: f.NewCounterVec(prometheus.CounterOpts{Name: "sluice_plugin_counter_total",
			Help: "What plugins count with the counter_add host function, by plugin and counter name."}, []string{"plugin", "name"}),
		dropped: f.NewCounterVec(prometheus.CounterOpts{Name: "sluice_plugin_counter_dropped_total",
			Help: "Additions to counters refused because the plugin already has the maximum number of counter names (100)."}, []string{"plugin"}),
		known:   map[[2]string]prometheus.Counter{},
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
			c.dropped.WithLabelValues(pluginName).Inc()
			return
		}
	}
	ctr.Add(delta)
}

// make returns the counter for key, making it if the plugin is under its
// limit of names; nil if it is not.
func (c *pluginCounters) make(key [2]string) prometheus.Counter {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ctr, ok := c.known[key]; ok {
		return ctr
	}
	if c.perName[key[0]] >= maxCountersPerPlugin {
		return nil
	}
	c.perName[key[0]]++
	ctr := c.vec.WithLabelValues(key[0], key[1])
	c.known[key] = ctr
	return ctr
}

var _ plugin.Counters = (*pluginCounters)(nil)
