package app

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/composio-guard/composio-guard/internal/lock"
	"github.com/composio-guard/composio-guard/internal/metrics"
)

// The memory store, full, evicts a live lease: counted every time in
// pending_leases_total{result="evicted"}, logged at WARN at most once per
// evictionWarnEvery, with nothing of the link in the line.
func TestEvictionCountedAndWarned(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	m := metrics.New(metrics.Build{})
	evicted := m.Leases.WithLabelValues(metrics.LeaseEvicted)
	if v := value(t, evicted); v != 0 {
		t.Fatalf("evicted starts at %v", v)
	}
	store, err := openStore(lock.Settings{Backend: lock.BackendMemory}, m, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	if store.Backend() != "memory" {
		t.Fatalf("backend %s", store.Backend())
	}
	w := &evictionWarner{log: zap.New(core), count: evicted}
	for range 5 {
		w.evicted()
	}
	if v := value(t, evicted); v != 5 {
		t.Errorf("evicted = %v, want 5", v)
	}
	lines := logs.FilterLevelExact(zapcore.WarnLevel).All()
	if len(lines) != 1 {
		t.Fatalf("%d WARN lines for 5 evictions within %s, want 1", len(lines), evictionWarnEvery)
	}
	if f := lines[0].ContextMap(); len(f) != 1 || f["evicted"] != int64(1) {
		t.Errorf("WARN fields %v, want only evicted=1", f)
	}
}

func value(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var d dto.Metric
	if err := c.Write(&d); err != nil {
		t.Fatal(err)
	}
	return d.GetCounter().GetValue()
}
