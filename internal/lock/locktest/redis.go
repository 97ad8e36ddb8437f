package locktest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/composio-guard/composio-guard/internal/lock"
	"github.com/composio-guard/composio-guard/internal/metrics"
)

// What the Redis store's tests share, over miniredis (internal/lock) and
// over real redis-server processes (internal/lock/redisserver).

// Prefix is the key prefix NewRedis gives its stores.
const Prefix = "composio-guard:"

// NewRedis opens a Redis store on url with its own metrics and closes it at
// the end of the test.
func NewRedis(t *testing.T, url string, mod ...func(*lock.Settings, *lock.RedisOptions)) (lock.Store, *metrics.Metrics) {
	t.Helper()
	m := metrics.New(metrics.Build{})
	set := lock.Settings{Backend: lock.BackendRedis, RedisURL: url, RedisKeyPrefix: Prefix, RedisTimeout: 300 * time.Millisecond}
	o := lock.RedisOptions{Metrics: m, PingInterval: -1}
	for _, f := range mod {
		f(&set, &o)
	}
	s, err := lock.NewRedis(set, o)
	if err != nil {
		t.Fatalf("NewRedis: %v", err)
	}
	t.Cleanup(func() {
		if err := s.(io.Closer).Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s, m
}

// Value reads a counter or gauge.
func Value(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	var d dto.Metric
	if err := (<-ch).Write(&d); err != nil {
		t.Fatalf("read metric: %v", err)
	}
	switch {
	case d.Counter != nil:
		return d.Counter.GetValue()
	case d.Gauge != nil:
		return d.Gauge.GetValue()
	}
	t.Fatalf("metric is neither counter nor gauge")
	return 0
}

// Up reads lock_backend_up{backend="redis"}.
func Up(t *testing.T, m *metrics.Metrics) float64 {
	return Value(t, m.BackendUp.WithLabelValues("redis"))
}

// LockErrs reads lock_errors_total{backend="redis",reason=reason}.
func LockErrs(t *testing.T, m *metrics.Metrics, reason string) float64 {
	return Value(t, m.LockErrors.WithLabelValues("redis", reason))
}

// LockFor takes key for ttl, waiting at most wait.
func LockFor(t *testing.T, s lock.Store, key string, ttl, wait time.Duration) (lock.Unlock, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	return s.Lock(ctx, key, ttl)
}

// Secrets that must never reach a Redis key.
const (
	SecretCredential = "sk_live_S3CRETcredential"
	RawUserID        = "alice@example.com"
)

// AssertKeysClean fails when any key lacks the prefix or holds the raw user
// id or the credential; it needs at least one lock and one lease key.
func AssertKeysClean(t *testing.T, keys []string, prefix string) {
	t.Helper()
	var locks, leases int
	for _, k := range keys {
		if !strings.HasPrefix(k, prefix) {
			t.Errorf("key %q lacks the prefix %q", k, prefix)
		}
		for _, secret := range []string{SecretCredential, RawUserID, "S3CRET", "alice"} {
			if strings.Contains(k, secret) {
				t.Errorf("key %q contains %q", k, secret)
			}
		}
		switch {
		case strings.HasPrefix(k, prefix+"lock:"):
			locks++
		case strings.HasPrefix(k, prefix+"lease:"):
			leases++
		}
	}
	if locks == 0 || leases == 0 {
		t.Fatalf("keys %q: want at least one lock and one lease key", keys)
	}
}

// UseSecretKey takes a lock and writes a lease under a key built from
// RawUserID, for AssertKeysClean to inspect.
func UseSecretKey(t *testing.T, s lock.Store) {
	t.Helper()
	k := lock.Key("ac_1", RawUserID, "PRIVATE")
	if _, err := LockFor(t, s, k, time.Minute, time.Second); err != nil {
		t.Fatalf("Lock: %v", err)
	}
	l := lock.Lease{AccountID: "ca_1", Status: 201, ExpiresAt: time.Now().Add(time.Minute)}
	if err := s.PutLease(context.Background(), k, l); err != nil {
		t.Fatalf("PutLease: %v", err)
	}
}

// An Op is one Store call a request makes.
type Op struct {
	Name string
	Fn   func(ctx context.Context, s lock.Store) error
}

// Ops are the Store calls a request makes; each must fail with a backend
// error (not ErrTimeout) when Redis is gone.
var Ops = []Op{
	{"Lock", func(ctx context.Context, s lock.Store) error {
		u, err := s.Lock(ctx, "op-key", time.Minute)
		if err == nil {
			u()
		}
		return err
	}},
	{"GetLease", func(ctx context.Context, s lock.Store) error {
		_, _, err := s.GetLease(ctx, "op-key", "op-owner")
		return err
	}},
	{"PutLease", func(ctx context.Context, s lock.Store) error {
		return s.PutLease(ctx, "op-key", lock.Lease{AccountID: "ca_1", ExpiresAt: time.Now().Add(time.Minute)})
	}},
	{"DropLease", func(ctx context.Context, s lock.Store) error { return s.DropLease(ctx, "op-key", "op-owner") }},
}

// RunOp runs op with a caller deadline far beyond the store's call timeout,
// and fails the test if it is not back well before that deadline.
func RunOp(t *testing.T, s lock.Store, fn func(context.Context, lock.Store) error) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	err := fn(ctx, s)
	// Generous bound: the point is "no hang until the caller's deadline".
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("call took %v with a 300ms Redis timeout", d)
	}
	return err
}

// AssertBackendError fails unless err is a backend error: not nil, not
// lock.ErrTimeout (contention).
func AssertBackendError(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		t.Fatal("no error while Redis is down")
	}
	if errors.Is(err, lock.ErrTimeout) {
		t.Fatalf("Redis down reported as lock contention: %v", err)
	}
}

// WaitRecovered polls every op until all succeed, or fails after 5s.
func WaitRecovered(t *testing.T, s lock.Store) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var last error
		for _, op := range Ops {
			if err := RunOp(t, s, op.Fn); err != nil {
				last = fmt.Errorf("%s: %w", op.Name, err)
				break
			}
		}
		if last == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no recovery 5s after Redis came back: %v", last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
