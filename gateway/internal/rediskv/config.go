package rediskv

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"os"

	"github.com/sluice-mail/sluice/gateway/internal/certs"
	"github.com/sluice-mail/sluice/gateway/internal/config"
)

// FromConfig is the Config that [cluster] describes, with the password
// file's first line and the CA file read now; either that cannot be read
// is an error at its setting's line, as a DKIM key file's is. It does not
// connect. Without cluster.redis there is no store: ok is false.
func FromConfig(cfg *config.Config, m *Metrics) (c Config, ok bool, _ *config.Error) {
	cl := &cfg.Cluster
	if len(cl.Redis) == 0 {
		return Config{}, false, nil
	}
	c = Config{
		Addrs:            cl.Redis,
		SentinelMaster:   cl.RedisSentinelMaster,
		SentinelUsername: cl.RedisSentinelUsername,
		Username:         cl.RedisUsername,
		DB:               cl.RedisDB,
		Prefix:           cl.RedisKeyPrefix,
		Timeout:          cl.RedisTimeout.D(),
		Metrics:          m,
	}
	if cl.RedisPasswordFile != "" {
		p, err := firstLine(cfg.RedisPasswordPath())
		if err != nil {
			return Config{}, false, cfg.ErrorAt("cluster.redis_password_file", "cluster.redis_password_file: %v", err)
		}
		c.Password = p
	}
	if cl.RedisSentinelPasswordFile != "" {
		p, err := firstLine(cfg.RedisSentinelPasswordPath())
		if err != nil {
			return Config{}, false, cfg.ErrorAt("cluster.redis_sentinel_password_file", "cluster.redis_sentinel_password_file: %v", err)
		}
		c.SentinelPassword = p
	}
	if cl.RedisTLS {
		roots, err := certs.SystemRootsAnd(cfg.RedisTLSCAPath())
		if err != nil {
			return Config{}, false, cfg.ErrorAt("cluster.redis_tls_ca_file", "cluster.redis_tls_ca_file: %v", err)
		}
		c.TLS = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	}
	return c, true, nil
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
