package lock

import (
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/composio-guard/composio-guard/internal/metrics"
	"github.com/composio-guard/composio-guard/internal/settings"
)

// Settings choose and tune the Store (GUARD_LOCK_*, GUARD_REDIS_*; the
// envDefault tags are the defaults).
type Settings struct {
	// `memory` (one process) or `redis` (several replicas share locks and
	// pending-link leases). Unset, it is `redis` when `GUARD_REDIS_URL` is
	// given; with `memory`, the Redis settings given are warned about at
	// start, as without effect.
	Backend Backend `env:"LOCK_BACKEND" envDefault:"memory"`
	// The longest a guarded request waits for the per-key lock. `0` means
	// the longest a holder can legitimately keep it: lookup timeout plus
	// upstream response header timeout.
	Wait time.Duration `env:"LOCK_WAIT" envDefault:"0s"`
	// Required by the `redis` backend; it names the Redis and its topology
	// (docs/redis.md): `redis://[user:password@]host:port[/db]` for one
	// endpoint; `redis+sentinel://[user:password@]s1:26379,s2:26379/<master>[/db]?sentinel_username=..&sentinel_password=..`
	// for Sentinel; `redis+cluster://[user:password@]n1:7000,n2:7001` for
	// Cluster; `rediss`, `rediss+sentinel` and `rediss+cluster` for TLS. The
	// user info authenticates to the data nodes; go-redis's URL query
	// options (`dial_timeout`, `pool_size`...) are honoured. Every password
	// is masked in logs and in `-check-config`.
	RedisURL string `env:"REDIS_URL"`
	// A PEM file of the certificates that verify the Redis servers of a TLS
	// URL; empty uses the system's roots.
	RedisCAFile string `env:"REDIS_CA_FILE"`
	// How many replicas must acknowledge a lock or a lease (Redis `WAIT`,
	// within `GUARD_REDIS_TIMEOUT`) before the guard trusts it; `0` does not
	// wait. A lock not replicated in time is released and handled as a lock
	// failure, per `GUARD_FAILURE_MODE`. Keep it below the number of
	// replicas, or one replica down stops every guarded create.
	RedisMinReplicas int `env:"REDIS_MIN_REPLICAS" envDefault:"0"`
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
		// The very parse NewRedis runs (CA file included); no error quotes a password.
		if _, err := parseRedisURL(s.RedisURL, s.RedisCAFile); err != nil {
			p.Add("REDIS_URL", "%v", err)
		}
	}
	if strings.ContainsAny(s.RedisKeyPrefix, "{}") {
		// The keys' own hash tag keeps a lock and its lease in one Cluster slot.
		p.Add("REDIS_KEY_PREFIX", "must not contain { or }: the guard puts its own hash tag in every key")
	}
	if s.RedisMinReplicas < 0 || s.RedisMinReplicas > maxMinReplicas {
		p.Add("REDIS_MIN_REPLICAS", "must be from 0 (no wait) to %d, got %d", maxMinReplicas, s.RedisMinReplicas)
	}
	if s.RedisMinReplicas > 0 && s.RedisTimeout > 0 && s.RedisTimeout < MinReplicaTimeout {
		p.Add("REDIS_TIMEOUT", "must be at least %s with %sREDIS_MIN_REPLICAS (WAIT needs most of it), got %s",
			MinReplicaTimeout, settings.Prefix, s.RedisTimeout)
	}
	p.Positive("REDIS_TIMEOUT", s.RedisTimeout)
	return p.Err()
}

// maxMinReplicas bounds GUARD_REDIS_MIN_REPLICAS: more is a typo, not a deployment.
const maxMinReplicas = 16

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
