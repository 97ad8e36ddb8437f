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
	"io"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/composio-guard/composio-guard/internal/lock"
	"github.com/composio-guard/composio-guard/internal/lock/locktest"
)

func miniURL(mr *miniredis.Miniredis) string { return "redis://" + mr.Addr() + "/0" }

func TestRedisContractMiniredis(t *testing.T) {
	locktest.Run(t, func(t *testing.T) lock.Store {
		s, _ := locktest.NewRedis(t, miniURL(miniredis.RunT(t)))
		return s
	})
}

// Two stores on one Redis play two replicas: the lock is shared.
func TestRedisLockSharedBetweenReplicas(t *testing.T) {
	mr := miniredis.RunT(t)
	a, _ := locktest.NewRedis(t, miniURL(mr))
	b, _ := locktest.NewRedis(t, miniURL(mr))
	k := lock.Key("ac_1", "user_1", "PRIVATE")
	ua, err := locktest.LockFor(t, a, k, time.Minute, time.Second)
	if err != nil {
		t.Fatalf("replica a: %v", err)
	}
	if _, err := locktest.LockFor(t, b, k, time.Minute, 50*time.Millisecond); !errors.Is(err, lock.ErrTimeout) {
		t.Fatalf("replica b while a holds the lock: got %v, want ErrTimeout", err)
	}
	done := make(chan error, 1)
	go func() {
		ub, err := locktest.LockFor(t, b, k, time.Minute, 5*time.Second)
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
	s, _ := locktest.NewRedis(t, miniURL(mr))
	k := lock.Key("ac_1", "user_1", "PRIVATE")
	if _, err := locktest.LockFor(t, s, k, 1500*time.Millisecond, time.Second); err != nil {
		t.Fatalf("Lock: %v", err)
	}
	if got := mr.TTL(locktest.Prefix + "lock:{" + k + "}"); got != 1500*time.Millisecond {
		t.Fatalf("lock key TTL = %v, want 1.5s (SET PX ttl)", got)
	}
	// The holder never releases (a crashed replica): the lock frees itself.
	if _, err := locktest.LockFor(t, s, k, time.Second, 50*time.Millisecond); !errors.Is(err, lock.ErrTimeout) {
		t.Fatalf("Lock while held: got %v, want ErrTimeout", err)
	}
	mr.FastForward(1600 * time.Millisecond)
	u, err := locktest.LockFor(t, s, k, time.Second, time.Second)
	if err != nil {
		t.Fatalf("Lock after the holder's ttl passed: %v", err)
	}
	u()
}

func TestRedisReleaseChecksToken(t *testing.T) {
	mr := miniredis.RunT(t)
	s, m := locktest.NewRedis(t, miniURL(mr))
	k := lock.Key("ac_1", "user_1", "PRIVATE")
	oldHolder, err := locktest.LockFor(t, s, k, time.Second, time.Second)
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	mr.FastForward(2 * time.Second) // the old holder overran its ttl
	newHolder, err := locktest.LockFor(t, s, k, time.Minute, time.Second)
	if err != nil {
		t.Fatalf("Lock after expiry: %v", err)
	}
	oldHolder()
	if _, err := locktest.LockFor(t, s, k, time.Minute, 50*time.Millisecond); !errors.Is(err, lock.ErrTimeout) {
		t.Fatalf("the old holder's Unlock freed the new holder's lock (Lock got %v)", err)
	}
	if got := locktest.LockErrs(t, m, lock.RedisErrLost); got != 1 {
		t.Fatalf("lock_errors_total{reason=release_lost} = %v, want 1", got)
	}
	newHolder()
	if mr.Exists(locktest.Prefix + "lock:{" + k + "}") {
		t.Fatal("lock key still present after its holder released it")
	}
	if got := locktest.LockErrs(t, m, lock.RedisErrLost); got != 1 {
		t.Fatalf("lock_errors_total{reason=release_lost} = %v after a clean release, want 1", got)
	}
}

func TestRedisLeaseExpiresWithPXAT(t *testing.T) {
	mr := miniredis.RunT(t)
	s, _ := locktest.NewRedis(t, miniURL(mr))
	ctx := context.Background()
	k := lock.Key("ac_1", "user_1", "PRIVATE")
	exp := time.Now().Add(10 * time.Minute)
	want := lock.Lease{AccountID: "ca_1", Status: 201, ContentType: "application/json", Body: []byte(`{"redirect_url":"https://r"}`), ExpiresAt: exp}
	if err := s.PutLease(ctx, k, want); err != nil {
		t.Fatalf("PutLease: %v", err)
	}
	ttl := mr.TTL(locktest.Prefix + "lease:{" + k + "}:")
	if ttl < 9*time.Minute || ttl > 10*time.Minute {
		t.Fatalf("lease key TTL = %v, want about 10m (PXAT expires_at)", ttl)
	}
	got, ok, err := s.GetLease(ctx, k, "")
	if err != nil || !ok || got.AccountID != "ca_1" || string(got.Body) != string(want.Body) {
		t.Fatalf("GetLease = %+v, %v, %v; want the stored lease", got, ok, err)
	}
	mr.FastForward(10*time.Minute + time.Second)
	if mr.Exists(locktest.Prefix + "lease:{" + k + "}:") {
		t.Fatal("Redis kept the lease past its expires_at")
	}
	if _, ok, err := s.GetLease(ctx, k, ""); ok || err != nil {
		t.Fatalf("GetLease after expiry = %v, %v; want a miss", ok, err)
	}
}

func TestRedisUndecodableLeaseIsAMiss(t *testing.T) {
	mr := miniredis.RunT(t)
	s, m := locktest.NewRedis(t, miniURL(mr))
	k := lock.Key("ac_1", "user_1", "PRIVATE")
	if err := mr.Set(locktest.Prefix+"lease:{"+k+"}:", "not json"); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.GetLease(context.Background(), k, ""); ok || err != nil {
		t.Fatalf("GetLease of garbage = %v, %v; want a miss without error", ok, err)
	}
	if mr.Exists(locktest.Prefix + "lease:{" + k + "}:") {
		t.Fatal("undecodable lease left in Redis")
	}
	if got := locktest.LockErrs(t, m, lock.RedisErrDecode); got != 1 {
		t.Fatalf("lock_errors_total{reason=lease_decode} = %v, want 1", got)
	}
}

func TestRedisKeysHoldNoSecret(t *testing.T) {
	for _, p := range []string{"composio-guard:", "tenant-a/guard:"} {
		t.Run(p, func(t *testing.T) {
			mr := miniredis.RunT(t)
			s, _ := locktest.NewRedis(t, miniURL(mr), func(s *lock.Settings, _ *lock.RedisOptions) { s.RedisKeyPrefix = p })
			locktest.UseSecretKey(t, s)
			locktest.AssertKeysClean(t, mr.Keys(), p)
		})
	}
}

func TestRedisDefaultPrefix(t *testing.T) {
	mr := miniredis.RunT(t)
	s, _ := locktest.NewRedis(t, miniURL(mr), func(s *lock.Settings, _ *lock.RedisOptions) { s.RedisKeyPrefix = "" })
	locktest.UseSecretKey(t, s)
	locktest.AssertKeysClean(t, mr.Keys(), lock.DefaultSettings().RedisKeyPrefix)
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
	s, m := locktest.NewRedis(t, "redis://"+deadAddr(t)+"/0")
	if _, _, err := s.GetLease(context.Background(), "k", ""); err == nil {
		t.Fatal("GetLease on a dead address: no error")
	}
	if locktest.Up(t, m) != 0 {
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

func TestRedisDownThenRecovers(t *testing.T) {
	mr := miniredis.RunT(t)
	s, m := locktest.NewRedis(t, miniURL(mr))
	for _, op := range locktest.Ops {
		if err := locktest.RunOp(t, s, op.Fn); err != nil {
			t.Fatalf("%s before the outage: %v", op.Name, err)
		}
	}
	if locktest.Up(t, m) != 1 {
		t.Fatal("lock_backend_up is not 1 while Redis answers")
	}
	mr.Close()
	for _, op := range locktest.Ops {
		t.Run(op.Name, func(t *testing.T) {
			before := locktest.LockErrs(t, m, lock.RedisErrUnavailable) + locktest.LockErrs(t, m, lock.RedisErrTimeout)
			locktest.AssertBackendError(t, locktest.RunOp(t, s, op.Fn))
			if locktest.Up(t, m) != 0 {
				t.Fatal("lock_backend_up is not 0 while Redis is down")
			}
			if after := locktest.LockErrs(t, m, lock.RedisErrUnavailable) + locktest.LockErrs(t, m, lock.RedisErrTimeout); after <= before {
				t.Fatal("lock_errors_total did not count the failure")
			}
		})
	}
	if err := mr.Restart(); err != nil {
		t.Fatalf("restart miniredis: %v", err)
	}
	locktest.WaitRecovered(t, s)
	if locktest.Up(t, m) != 1 {
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
	s, m := locktest.NewRedis(t, "redis://"+l.Addr().String()+"/0", func(s *lock.Settings, _ *lock.RedisOptions) { s.RedisTimeout = 100 * time.Millisecond })
	for _, op := range locktest.Ops {
		t.Run(op.Name, func(t *testing.T) {
			locktest.AssertBackendError(t, locktest.RunOp(t, s, op.Fn))
		})
	}
	if got := locktest.LockErrs(t, m, lock.RedisErrTimeout); got < float64(len(locktest.Ops)) {
		t.Fatalf("lock_errors_total{reason=call_timeout} = %v, want >= %d", got, len(locktest.Ops))
	}
}

// The background ping moves lock_backend_up without any request.
func TestRedisPingerTracksBackend(t *testing.T) {
	mr := miniredis.RunT(t)
	_, m := locktest.NewRedis(t, miniURL(mr), func(_ *lock.Settings, o *lock.RedisOptions) { o.PingInterval = 10 * time.Millisecond })
	waitGauge := func(want float64) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for locktest.Up(t, m) != want {
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
	if _, _, err := s.GetLease(context.Background(), "k", ""); err == nil {
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
			s, _ := locktest.NewRedis(t, tc.url)
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
