package redisserver_test

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/composio-guard/composio-guard/internal/lock"
	"github.com/composio-guard/composio-guard/internal/lock/locktest"
	"github.com/composio-guard/composio-guard/internal/lock/redistest"
)

// These tests run against a real redis-server (they fail when it is missing:
// apt-get install -y redis-server).

// rawClient reads the server directly, to check what the store wrote.
func rawClient(t *testing.T, srv *redistest.Server) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRedisServerContract(t *testing.T) {
	srv := redistest.Start(t)
	var n atomic.Int64
	locktest.Run(t, func(t *testing.T) lock.Store {
		// One server for the whole suite: a prefix per subtest keeps them apart.
		p := "contract-" + strconv.FormatInt(n.Add(1), 10) + ":"
		s, _ := locktest.NewRedis(t, srv.URL(), func(s *lock.Settings, _ *lock.RedisOptions) { s.RedisKeyPrefix = p })
		return s
	})
}

func TestRedisServerKeysAndExpiry(t *testing.T) {
	srv := redistest.Start(t)
	c := rawClient(t, srv)
	s, _ := locktest.NewRedis(t, srv.URL())
	ctx := context.Background()
	locktest.UseSecretKey(t, s)

	var keys []string
	iter := c.Scan(ctx, 0, "*", 100).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("SCAN: %v", err)
	}
	locktest.AssertKeysClean(t, keys, locktest.Prefix)

	// The lease carries the link's expiry in Redis itself (PXAT), the lock its ttl (PX).
	for _, k := range keys {
		ttl, err := c.PTTL(ctx, k).Result()
		if err != nil {
			t.Fatalf("PTTL: %v", err)
		}
		if ttl <= 0 || ttl > time.Minute {
			t.Errorf("key %q: PTTL %v, want in (0, 1m]", k, ttl)
		}
	}
	if v, err := c.Get(ctx, keys[0]).Result(); err != nil || strings.Contains(v, locktest.SecretCredential) {
		t.Errorf("stored value %q (err %v) holds the credential", v, err)
	}

	// A lock left behind by a crashed holder frees itself with its ttl.
	k := lock.Key("ac_1", "crashed", "PRIVATE")
	if _, err := locktest.LockFor(t, s, k, 200*time.Millisecond, time.Second); err != nil {
		t.Fatalf("Lock: %v", err)
	}
	u, err := locktest.LockFor(t, s, k, time.Minute, 5*time.Second)
	if err != nil {
		t.Fatalf("Lock after the crashed holder's ttl: %v", err)
	}
	u()
}

func TestRedisServerKillAndRestart(t *testing.T) {
	srv := redistest.Start(t)
	s, m := locktest.NewRedis(t, srv.URL())
	locktest.WaitRecovered(t, s)
	held, err := locktest.LockFor(t, s, "held-across-outage", time.Minute, time.Second)
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}

	srv.Kill()
	for _, op := range locktest.Ops {
		t.Run("down/"+op.Name, func(t *testing.T) {
			locktest.AssertBackendError(t, locktest.RunOp(t, s, op.Fn))
		})
	}
	if locktest.Up(t, m) != 0 {
		t.Fatal("lock_backend_up is not 0 while Redis is down")
	}
	if locktest.LockErrs(t, m, lock.RedisErrUnavailable)+locktest.LockErrs(t, m, lock.RedisErrTimeout) < float64(len(locktest.Ops)) {
		t.Fatal("lock_errors_total did not count every failed call")
	}

	srv.Restart()
	locktest.WaitRecovered(t, s)
	if locktest.Up(t, m) != 1 {
		t.Fatal("lock_backend_up is not 1 after recovery")
	}
	// Redis came back empty (no persistence): the lock taken before the
	// outage is gone, which is what the replicas doc warns about; its
	// holder's release is counted as lost, not an error to the caller.
	lost := locktest.LockErrs(t, m, lock.RedisErrLost)
	held()
	if locktest.LockErrs(t, m, lock.RedisErrLost) != lost+1 {
		t.Fatal("release of a lock lost with Redis's data was not counted as lost")
	}
	u, err := locktest.LockFor(t, s, "held-across-outage", time.Minute, time.Second)
	if err != nil {
		t.Fatalf("Lock after restart: %v", err)
	}
	u()
}
