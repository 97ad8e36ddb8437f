package soak_test

import (
	"context"
	"flag"
	"testing"
	"time"

	"github.com/composio-guard/composio-guard/internal/testproc"
	"github.com/composio-guard/composio-guard/test/soak"
)

var (
	duration = flag.Duration("soak.duration", 60*time.Second, "wall-clock time of TestSoak, warm-up and idle checks included (CI: 60s; long: -soak.duration=1h -timeout 0)")
	rps      = flag.Int("soak.rps", 200, "request rate cap of TestSoak")
	workers  = flag.Int("soak.workers", 8, "concurrent clients of TestSoak")
	maxReq   = flag.Int64("soak.max-requests", 0, "request count bound of TestSoak (0: rps x duration x 2)")
)

// proxyEnv tunes the proxy so that a fault window's effects end within the
// driver's grace period and idle connections close before the snapshots.
var proxyEnv = []string{
	"GUARD_FAILURE_MODE=closed",
	"GUARD_LOOKUP_TIMEOUT=1s",
	"GUARD_LOOKUP_BREAKER_THRESHOLD=5",
	"GUARD_LOOKUP_BREAKER_COOLDOWN=2s",
	"GUARD_UPSTREAM_RESPONSE_HEADER_TIMEOUT=5s",
	"GUARD_UPSTREAM_IDLE_CONN_TIMEOUT=2s",
	"GUARD_IDLE_TIMEOUT=3s",
	"GUARD_PENDING_MAX_TTL=1m",
}

// TestSoak runs the proxy binary in front of the fake Composio process
// under the driver's mix and fault windows, then fails on every problem the
// report lists (unanswered or unexpected answers, a duplicate in the
// account table, goroutine or memory growth).
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("soak: skipped with -short")
	}
	fake := testproc.StartFake(t)
	// Info logs (an access line per request), as in production; only the
	// last lines are kept in memory.
	p := testproc.LaunchProxy(t, fake.URL, testproc.ProxyOptions{Env: proxyEnv, KeepLines: 2000})

	// The load phase is what is left of -soak.duration after the warm-up
	// and the two idle waits before the snapshots.
	const warmUp, settle = 3 * time.Second, 4 * time.Second
	load := max(*duration-warmUp-2*settle-time.Second, 10*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), *duration+2*time.Minute)
	defer cancel()
	rep, err := soak.Run(ctx, soak.Config{
		ProxyURL:    p.URL,
		AdminURL:    p.AdminURL,
		FakeURL:     fake.URL,
		Duration:    load,
		WarmUp:      warmUp,
		Settle:      settle,
		RPS:         *rps,
		Workers:     *workers,
		MaxRequests: *maxReq,
		Logf:        t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(rep.Summary())
	for _, pr := range rep.Problems {
		t.Error(pr)
	}
	if code := p.Stop(); code != 0 {
		t.Errorf("proxy exited %d after the soak, want 0 (clean drain)", code)
	}
}
