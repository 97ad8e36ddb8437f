package app

import (
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/composio-guard/composio-guard/internal/lock"
	"github.com/composio-guard/composio-guard/internal/metrics"
)

// openStore opens the lock store s names; the memory store's evictions are
// counted and warned about (evictionWarner).
func openStore(s lock.Settings, m *metrics.Metrics, log *zap.Logger) (lock.Store, error) {
	w := &evictionWarner{log: log, count: m.Leases.WithLabelValues(metrics.LeaseEvicted)}
	store, err := lock.Open(s, lock.Options{Metrics: m, Logger: log, OnEvict: w.evicted})
	if err != nil {
		return nil, fmt.Errorf("%s lock backend: %w", s.Backend, err)
	}
	if s.Backend == lock.BackendRedis {
		log.Info("lock backend: redis", zap.String("redis", lock.Describe(s.RedisURL)), zap.Int("min_replicas", s.RedisMinReplicas))
	}
	return store, nil
}

// evictionWarner counts the live leases the full memory store evicts, and
// logs them at WARN, at most once per evictionWarnEvery with how many went
// since the last line: a store kept full would otherwise log every link. The
// line names nothing of a link (its key names a user). See docs/security.md,
// "Resource exhaustion".
type evictionWarner struct {
	log   *zap.Logger
	count prometheus.Counter

	mu      sync.Mutex
	last    time.Time
	pending int
}

const evictionWarnEvery = 10 * time.Second

func (w *evictionWarner) evicted() {
	w.count.Inc()
	w.mu.Lock()
	w.pending++
	now := time.Now()
	if now.Sub(w.last) < evictionWarnEvery {
		w.mu.Unlock()
		return
	}
	n := w.pending
	w.last, w.pending = now, 0
	w.mu.Unlock()
	w.log.Warn("pending-link lease store full: live leases evicted, closest to expiry first (a repeat of such a link is refused as pending, no longer replayed)",
		zap.Int("evicted", n))
}
