package lock_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/composio-guard/composio-guard/internal/lock"
	"github.com/composio-guard/composio-guard/internal/lock/locktest"
	"github.com/composio-guard/composio-guard/internal/metrics"
)

const prefix = "composio-guard:"

// newRedis opens a Redis store on url with its own metrics and closes it at
// the end of the test.
func newRedis(t *testing.T, url string, mod ...func(*lock.Settings, *lock.RedisOptions)) (lock.Store, *metrics.Metrics) {
	t.Helper()
	m := metrics.New(metrics.Build{})
	set := lock.Settings{Backend: lock.BackendRedis, RedisURL: url, RedisKeyPrefix: prefix, RedisTimeout: 300 * time.Millisecond}
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

func miniURL(mr *miniredis.Miniredis) string { return "redis://" + mr.Addr() + "/0" }

func value(t *testing.T, c prometheus.Collector) float64 {
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

func up(t *testing.T, m *metrics.Metrics) float64 {
	return value(t, m.BackendUp.WithLabelValues("redis"))
}

func lockErrs(t *testing.T, m *metrics.Metrics, reason string) float64 {
	return value(t, m.LockErrors.WithLabelValues("redis", reason))
}

func lockFor(t *testing.T, s lock.Store, key string, ttl, wait time.Duration) (lock.Unlock, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	return s.Lock(ctx, key, ttl)
}

func TestRedisContractMiniredis(t *testing.T) {
	locktest.Run(t, func(t *testing.T) lock.Store {
		s, _ := newRedis(t, miniURL(miniredis.RunT(t)))
		return s
	})
}

// Two stores on one Redis play two replicas: the lock is shared.
func TestRedisLockSharedBetweenReplicas(t *testing.T) {
	mr := miniredis.RunT(t)
	a, _ := newRedis(t, miniURL(mr))
	b, _ := newRedis(t, miniURL(mr))
	k := lock.Key("ac_1", "user_1", "PRIVATE")
	ua, err := lockFor(t, a, k, time.Minute, time.Second)
	if err != nil {
		t.Fatalf("replica a: %v", err)
	}
	if _, err := lockFor(t, b, k, time.Minute, 50*time.Millisecond); !errors.Is(err, lock.ErrTimeout) {
		t.Fatalf("replica b while a holds the lock: got %v, want ErrTimeout", err)
	}
	done := make(chan error, 1)
	go func() {
		ub, err := lockFor(t, b, k, time.Minute, 5*time.Second)
		if err == nil {
			ub()
		}
		done <- err
	}()
	ua()
	if err := <-done; err != nil {
		t.Fatalf("replica b after a released: %v", err)
	}
}

func TestRedisLockUsesTTL(t *testing.T) {
	mr := miniredis.RunT(t)
	s, _ := newRedis(t, miniURL(mr))
	k := lock.Key("ac_1", "user_1", "PRIVATE")
	if _, err := lockFor(t, s, k, 1500*time.Millisecond, time.Second); err != nil {
		t.Fatalf("Lock: %v", err)
	}
	if got := mr.TTL(prefix + "lock:{" + k + "}"); got != 1500*time.Millisecond {
		t.Fatalf("lock key TTL = %v, want 1.5s (SET PX ttl)", got)
	}
	// The holder never releases (a crashed replica): the lock frees itself.
	if _, err := lockFor(t, s, k, time.Second, 50*time.Millisecond); !errors.Is(err, lock.ErrTimeout) {
		t.Fatalf("Lock while held: got %v, want ErrTimeout", err)
	}
	mr.FastForward(1600 * time.Millisecond)
	u, err := lockFor(t, s, k, time.Second, time.Second)
	if err != nil {
		t.Fatalf("Lock after the holder's ttl passed: %v", err)
	}
	u()
}

func TestRedisReleaseChecksToken(t *testing.T) {
	mr := miniredis.RunT(t)
	s, m := newRedis(t, miniURL(mr))
	k := lock.Key("ac_1", "user_1", "PRIVATE")
	oldHolder, err := lockFor(t, s, k, time.Second, time.Second)
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	mr.FastForward(2 * time.Second) // the old holder overran its ttl
	newHolder, err := lockFor(t, s, k, time.Minute, time.Second)
	if err != nil {
		t.Fatalf("Lock after expiry: %v", err)
	}
	oldHolder()
	if _, err := lockFor(t, s, k, time.Minute, 50*time.Millisecond); !errors.Is(err, lock.ErrTimeout) {
		t.Fatalf("the old holder's Unlock freed the new holder's lock (Lock got %v)", err)
	}
	if got := lockErrs(t, m, lock.RedisErrLost); got != 1 {
		t.Fatalf("lock_errors_total{reason=release_lost} = %v, want 1", got)
	}
	newHolder()
	if mr.Exists(prefix + "lock:{" + k + "}") {
		t.Fatal("lock key still present after its holder released it")
	}
	if got := lockErrs(t, m, lock.RedisErrLost); got != 1 {
		t.Fatalf("lock_errors_total{reason=release_lost} = %v after a clean release, want 1", got)
	}
}

func TestRedisLeaseExpiresWithPXAT(t *testing.T) {
	mr := miniredis.RunT(t)
	s, _ := newRedis(t, miniURL(mr))
	ctx := context.Background()
	k := lock.Key("ac_1", "user_1", "PRIVATE")
	exp := time.Now().Add(10 * time.Minute)
	want := lock.Lease{AccountID: "ca_1", Status: 201, ContentType: "application/json", Body: []byte(`{"redirect_url":"https://r"}`), ExpiresAt: exp}
	if err := s.PutLease(ctx, k, want); err != nil {
		t.Fatalf("PutLease: %v", err)
	}
	ttl := mr.TTL(prefix + "lease:{" + k + "}")
	if ttl < 9*time.Minute || ttl > 10*time.Minute {
		t.Fatalf("lease key TTL = %v, want about 10m (PXAT expires_at)", ttl)
	}
	got, ok, err := s.GetLease(ctx, k)
	if err != nil || !ok || got.AccountID != "ca_1" || string(got.Body) != string(want.Body) {
		t.Fatalf("GetLease = %+v, %v, %v; want the stored lease", got, ok, err)
	}
	mr.FastForward(10*time.Minute + time.Second)
	if mr.Exists(prefix + "lease:{" + k + "}") {
		t.Fatal("Redis kept the lease past its expires_at")
	}
	if _, ok, err := s.GetLease(ctx, k); ok || err != nil {
		t.Fatalf("GetLease after expiry = %v, %v; want a miss", ok, err)
	}
}

func TestRedisUndecodableLeaseIsAMiss(t *testing.T) {
	mr := miniredis.RunT(t)
	s, m := newRedis(t, miniURL(mr))
	k := lock.Key("ac_1", "user_1", "PRIVATE")
	if err := mr.Set(prefix+"lease:{"+k+"}", "not json"); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.GetLease(context.Background(), k); ok || err != nil {
		t.Fatalf("GetLease of garbage = %v, %v; want a miss without error", ok, err)
	}
	if mr.Exists(prefix + "lease:{" + k + "}") {
		t.Fatal("undecodable lease left in Redis")
	}
	if got := lockErrs(t, m, lock.RedisErrDecode); got != 1 {
		t.Fatalf("lock_errors_total{reason=lease_decode} = %v, want 1", got)
	}
}

// Secrets that must never reach a Redis key.
const (
	secretCredential = "sk_live_S3CRETcredential"
	rawUserID        = "alice@example.com"
)

// assertKeysClean fails when any key lacks the prefix or holds the raw user
// id or the credential; it needs at least one lock and one lease key.
func assertKeysClean(t *testing.T, keys []string, prefix string) {
	t.Helper()
	var locks, leases int
	for _, k := range keys {
		if !strings.HasPrefix(k, prefix) {
			t.Errorf("key %q lacks the prefix %q", k, prefix)
		}
		for _, secret := range []string{secretCredential, rawUserID, "S3CRET", "alice"} {
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

func useSecretKey(t *testing.T, s lock.Store) {
	t.Helper()
	k := lock.Key("ac_1", rawUserID, "PRIVATE")
	if _, err := lockFor(t, s, k, time.Minute, time.Second); err != nil {
		t.Fatalf("Lock: %v", err)
	}
	l := lock.Lease{AccountID: "ca_1", Status: 201, ExpiresAt: time.Now().Add(time.Minute)}
	if err := s.PutLease(context.Background(), k, l); err != nil {
		t.Fatalf("PutLease: %v", err)
	}
}

func TestRedisKeysHoldNoSecret(t *testing.T) {
	for _, p := range []string{"composio-guard:", "tenant-a/guard:"} {
		t.Run(p, func(t *testing.T) {
			mr := miniredis.RunT(t)
			s, _ := newRedis(t, miniURL(mr), func(s *lock.Settings, _ *lock.RedisOptions) { s.RedisKeyPrefix = p })
			useSecretKey(t, s)
			assertKeysClean(t, mr.Keys(), p)
		})
	}
}

func TestRedisDefaultPrefix(t *testing.T) {
	mr := miniredis.RunT(t)
	s, _ := newRedis(t, miniURL(mr), func(s *lock.Settings, _ *lock.RedisOptions) { s.RedisKeyPrefix = "" })
	useSecretKey(t, s)
	assertKeysClean(t, mr.Keys(), lock.DefaultSettings().RedisKeyPrefix)
}

func TestRedisBadURL(t *testing.T) {
	for _, url := range []string{
		"http://127.0.0.1:6379",
		"redis://user:hunter2pass@127.0.0.1:notaport/0",
		"redis://:hunter2pass@[::1/0",
		"redis://:hunter2pass@127.0.0.1:6379/notadb",
		"redis://:hunter2pass@127.0.0.1:6379/0?no_such_option=1",
	} {
		t.Run(url, func(t *testing.T) {
			s, err := lock.NewRedis(lock.Settings{RedisURL: url}, lock.RedisOptions{})
			if err == nil {
				s.(io.Closer).Close()
				t.Fatal("NewRedis accepted a malformed URL")
			}
			if strings.Contains(err.Error(), "hunter2pass") {
				t.Fatalf("error leaks the password: %v", err)
			}
		})
	}
}

// A Redis that is down at start-up is no start-up error.
func TestRedisStartsWhileDown(t *testing.T) {
	s, m := newRedis(t, "redis://"+deadAddr(t)+"/0")
	if _, _, err := s.GetLease(context.Background(), "k"); err == nil {
		t.Fatal("GetLease on a dead address: no error")
	}
	if up(t, m) != 0 {
		t.Fatal("lock_backend_up is not 0 while Redis is down")
	}
}

func deadAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// ops are the Store calls a request makes; each must fail with a backend
// error (not ErrTimeout) when Redis is gone.
var ops = []struct {
	name string
	fn   func(ctx context.Context, s lock.Store) error
}{
	{"Lock", func(ctx context.Context, s lock.Store) error {
		u, err := s.Lock(ctx, "op-key", time.Minute)
		if err == nil {
			u()
		}
		return err
	}},
	{"GetLease", func(ctx context.Context, s lock.Store) error {
		_, _, err := s.GetLease(ctx, "op-key")
		return err
	}},
	{"PutLease", func(ctx context.Context, s lock.Store) error {
		return s.PutLease(ctx, "op-key", lock.Lease{AccountID: "ca_1", ExpiresAt: time.Now().Add(time.Minute)})
	}},
	{"DropLease", func(ctx context.Context, s lock.Store) error { return s.DropLease(ctx, "op-key") }},
}

// runOp runs op with a caller deadline far beyond the store's call timeout,
// and fails the test if it is not back well before that deadline.
func runOp(t *testing.T, s lock.Store, fn func(context.Context, lock.Store) error) error {
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

func assertBackendError(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		t.Fatal("no error while Redis is down")
	}
	if errors.Is(err, lock.ErrTimeout) {
		t.Fatalf("Redis down reported as lock contention: %v", err)
	}
}

// waitRecovered polls every op until all succeed, or fails after 5s.
func waitRecovered(t *testing.T, s lock.Store) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var last error
		for _, op := range ops {
			if err := runOp(t, s, op.fn); err != nil {
				last = fmt.Errorf("%s: %w", op.name, err)
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

func TestRedisDownThenRecovers(t *testing.T) {
	mr := miniredis.RunT(t)
	s, m := newRedis(t, miniURL(mr))
	for _, op := range ops {
		if err := runOp(t, s, op.fn); err != nil {
			t.Fatalf("%s before the outage: %v", op.name, err)
		}
	}
	if up(t, m) != 1 {
		t.Fatal("lock_backend_up is not 1 while Redis answers")
	}
	mr.Close()
	for _, op := range ops {
		t.Run(op.name, func(t *testing.T) {
			before := lockErrs(t, m, lock.RedisErrUnavailable) + lockErrs(t, m, lock.RedisErrTimeout)
			assertBackendError(t, runOp(t, s, op.fn))
			if up(t, m) != 0 {
				t.Fatal("lock_backend_up is not 0 while Redis is down")
			}
			if after := lockErrs(t, m, lock.RedisErrUnavailable) + lockErrs(t, m, lock.RedisErrTimeout); after <= before {
				t.Fatal("lock_errors_total did not count the failure")
			}
		})
	}
	if err := mr.Restart(); err != nil {
		t.Fatalf("restart miniredis: %v", err)
	}
	waitRecovered(t, s)
	if up(t, m) != 1 {
		t.Fatal("lock_backend_up is not back to 1 after recovery")
	}
}

// A Redis that accepts connections and never answers is the "slow" case: each
// call fails after the call timeout, counted as a timeout.
func TestRedisSlowTimesOut(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		var held []net.Conn // keep them open and silent
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	s, m := newRedis(t, "redis://"+l.Addr().String()+"/0", func(s *lock.Settings, _ *lock.RedisOptions) { s.RedisTimeout = 100 * time.Millisecond })
	for _, op := range ops {
		t.Run(op.name, func(t *testing.T) {
			assertBackendError(t, runOp(t, s, op.fn))
		})
	}
	if got := lockErrs(t, m, lock.RedisErrTimeout); got < float64(len(ops)) {
		t.Fatalf("lock_errors_total{reason=call_timeout} = %v, want >= %d", got, len(ops))
	}
}

// The background ping moves lock_backend_up without any request.
func TestRedisPingerTracksBackend(t *testing.T) {
	mr := miniredis.RunT(t)
	_, m := newRedis(t, miniURL(mr), func(_ *lock.Settings, o *lock.RedisOptions) { o.PingInterval = 10 * time.Millisecond })
	waitGauge := func(want float64) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for up(t, m) != want {
			if time.Now().After(deadline) {
				t.Fatalf("lock_backend_up did not become %v", want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitGauge(1)
	mr.Close()
	waitGauge(0)
	if err := mr.Restart(); err != nil {
		t.Fatal(err)
	}
	waitGauge(1)
}

func TestRedisCloseTwice(t *testing.T) {
	mr := miniredis.RunT(t)
	s, err := lock.NewRedis(lock.Settings{RedisURL: miniURL(mr)}, lock.RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := s.(io.Closer)
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, _, err := s.GetLease(context.Background(), "k"); err == nil {
		t.Fatal("GetLease after Close: no error")
	}
}

func TestRedisTLS(t *testing.T) {
	mr, err := miniredis.RunTLS(selfSigned(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mr.Close)
	tests := []struct {
		url    string
		wantOK bool
	}{
		{"rediss://" + mr.Addr() + "/0?skip_verify=true", true},
		{"rediss://" + mr.Addr() + "/0", false}, // self-signed: verification fails
		{"redis://" + mr.Addr() + "/0", false},  // plain text to a TLS server
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			s, _ := newRedis(t, tc.url)
			err := s.PutLease(context.Background(), "k", lock.Lease{ExpiresAt: time.Now().Add(time.Minute)})
			if (err == nil) != tc.wantOK {
				t.Fatalf("PutLease over %s: err = %v, want ok=%v", tc.url, err, tc.wantOK)
			}
		})
	}
}

func selfSigned(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}
