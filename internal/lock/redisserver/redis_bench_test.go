package redisserver_test

import (
	"context"
	"io"
	"strconv"
	"testing"
	"time"

	"github.com/composio-guard/composio-guard/internal/lock"
	"github.com/composio-guard/composio-guard/internal/lock/redistest"
	"github.com/composio-guard/composio-guard/internal/metrics"
)

// BenchmarkRedisMinReplicas measures what GUARD_REDIS_MIN_REPLICAS costs: a
// guarded create's lock (SET NX, with WAIT when set), its lease write and
// its release, against a real primary with one replica on loopback.
//
//	go test -run '^$' -bench RedisMinReplicas -benchtime 3000x ./internal/lock/redisserver/
func BenchmarkRedisMinReplicas(b *testing.B) {
	primary := redistest.Start(b)
	redistest.StartWith(b, redistest.Options{Args: []string{"--replicaof", "127.0.0.1", strconv.Itoa(primary.Port())}})
	if err := redistest.WaitReplicas(primary.Addr(), 1, 10*time.Second); err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{0, 1} {
		b.Run("min_replicas="+strconv.Itoa(n), func(b *testing.B) {
			s, err := lock.NewRedis(lock.Settings{Backend: lock.BackendRedis, RedisURL: primary.URL(), RedisKeyPrefix: "bench:",
				RedisTimeout: 500 * time.Millisecond, RedisMinReplicas: n}, lock.RedisOptions{Metrics: metrics.New(metrics.Build{}), PingInterval: -1})
			if err != nil {
				b.Fatal(err)
			}
			defer s.(io.Closer).Close()
			ctx := context.Background()
			l := lock.Lease{AccountID: "ca_bench", Status: 201, ContentType: "application/json",
				Body: []byte(`{"id":"ca_bench","redirect_url":"https://r"}`), ExpiresAt: time.Now().Add(time.Hour)}
			b.ResetTimer()
			for i := range b.N {
				k := lock.Key("ac_bench", "user_"+strconv.Itoa(i), "PRIVATE")
				u, err := s.Lock(ctx, k, time.Minute)
				if err != nil {
					b.Fatal(err)
				}
				if err := s.PutLease(ctx, k, l); err != nil {
					b.Fatal(err)
				}
				u()
			}
		})
	}
}
