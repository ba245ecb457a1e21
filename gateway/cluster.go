package gateway

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"os"

	"github.com/sluice-mail/sluice/gateway/internal/certs"
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
	c := &cfg.Cluster
	if len(c.Redis) == 0 {
		return nil, nil
	}
	rc := rediskv.Config{
		Addrs:          c.Redis,
		SentinelMaster: c.RedisSentinelMaster,
		Username:       c.RedisUsername,
		DB:             c.RedisDB,
		Prefix:         c.RedisKeyPrefix,
		Timeout:        c.RedisTimeout.D(),
		Metrics:        g.metrics.redisKV,
	}
	if c.RedisPasswordFile != "" {
		p, err := firstLine(cfg.RedisPasswordPath())
		if err != nil {
			return nil, cfg.ErrorAt("cluster.redis_password_file", "cluster.redis_password_file: %v", err)
		}
		rc.Password = p
	}
	if c.RedisTLS {
		roots, err := certs.SystemRootsAnd(cfg.RedisTLSCAPath())
		if err != nil {
			return nil, cfg.ErrorAt("cluster.redis_tls_ca_file", "cluster.redis_tls_ca_file: %v", err)
		}
		rc.TLS = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	}
	kv, err := rediskv.New(rc)
	if err != nil {
		return nil, cfg.ErrorAt("cluster.redis", "cluster.redis: %v", err)
	}
	return kv, nil
}

// firstLine is a secret file's first line, without its line ending.
func firstLine(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	line, _, _ := bufio.NewReader(bytes.NewReader(b)).ReadLine()
	if len(line) == 0 {
		return "", errors.New(path + ": the first line is empty")
	}
	return string(line), nil
}
