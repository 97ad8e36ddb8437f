package lock

import (
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/composio-guard/composio-guard/internal/metrics"
	"github.com/composio-guard/composio-guard/internal/settings"
)

// Settings choose and tune the Store (GUARD_LOCK_*, GUARD_REDIS_*; the
// envDefault tags are the defaults).
type Settings struct {
	// `memory` (one process) or `redis` (several replicas share locks and
	// pending-link leases).
	Backend Backend `env:"LOCK_BACKEND" envDefault:"memory"`
	// The longest a guarded request waits for the per-key lock. `0` means
	// the longest a holder can legitimately keep it: lookup timeout plus
	// upstream response header timeout.
	Wait time.Duration `env:"LOCK_WAIT" envDefault:"0s"`
	// Required by the `redis` backend: `redis://[user:password@]host:port[/db]`,
	// or `rediss://` for TLS; go-redis's URL query options (`dial_timeout`,
	// `pool_size`...) are honoured. The password is never logged.
	RedisURL string `env:"REDIS_URL"`
	// Prefix of every Redis key. Keys hold hashes, never a credential or a
	// raw user id.
	RedisKeyPrefix string `env:"REDIS_KEY_PREFIX" envDefault:"composio-guard:"`
	// Time limit for each Redis call (and its dial, read and write).
	RedisTimeout time.Duration `env:"REDIS_TIMEOUT" envDefault:"500ms"`
}

// DefaultSettings are Settings as their envDefault tags set them.
func DefaultSettings() Settings { return settings.Defaults[Settings]() }

// Backend names a Store backend (GUARD_LOCK_BACKEND).
type Backend string

// Backends.
const (
	BackendMemory Backend = "memory" // one process
	BackendRedis  Backend = "redis"  // several replicas share locks and leases
)

// UnmarshalText reads a backend case- and space-insensitively; Validate
// refuses an unknown one.
func (b *Backend) UnmarshalText(t []byte) error {
	*b = Backend(settings.Fold(t))
	return nil
}

// Validate reports every problem of s, one error per variable.
func (s Settings) Validate() error {
	var p settings.Problems
	settings.OneOf(&p, "LOCK_BACKEND", s.Backend, BackendMemory, BackendRedis)
	if s.Wait < 0 {
		p.Add("LOCK_WAIT", "must not be negative (0 means the default), got %s", s.Wait)
	}
	switch {
	case s.Backend == BackendRedis && s.RedisURL == "":
		p.Add("REDIS_URL", "is required when %sLOCK_BACKEND=redis", settings.Prefix)
	case s.RedisURL != "":
		if err := checkRedisURL(s.RedisURL); err != nil {
			p.Add("REDIS_URL", "%v", err)
		}
	}
	p.Positive("REDIS_TIMEOUT", s.RedisTimeout)
	return p.Err()
}

// checkRedisURL accepts redis:// and rediss:// URLs that go-redis can use.
// url.Parse's own error quotes the URL (and its password): never wrap it.
func checkRedisURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("not a valid URL")
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return errors.New("scheme must be redis:// or rediss:// (TLS)")
	}
	if u.Host == "" {
		return errors.New("a host is required")
	}
	if _, err := redis.ParseURL(raw); err != nil {
		// After url.Parse succeeded, go-redis errors name only the scheme,
		// path, database or option names, never the password.
		return fmt.Errorf("rejected by the Redis client: %w", err)
	}
	return nil
}

// Options are what Open needs beside Settings; all may be zero.
type Options struct {
	Metrics *metrics.Metrics // nil: a private set
	Logger  *zap.Logger      // nil: the Redis client's messages are dropped
	// OnEvict is the memory store's MemoryOptions.OnEvict.
	OnEvict func()
}

// Open builds the Store s names. A Redis store is also an io.Closer, to
// close on shutdown.
func Open(s Settings, o Options) (Store, error) {
	if s.Backend == BackendRedis {
		return NewRedis(s, RedisOptions{Metrics: o.Metrics, Logger: o.Logger})
	}
	return NewMemoryWith(MemoryOptions{OnEvict: o.OnEvict}), nil
}
