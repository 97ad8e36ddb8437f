package replicas_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/composio-guard/composio-guard/internal/composiotest"
	"github.com/composio-guard/composio-guard/internal/lock/redistest"
	"github.com/composio-guard/composio-guard/internal/testproc"
)

// TestPeriodicAuditOneReplica: two proxies share a Redis and audit every
// second; only one of them lists the accounts, and both export what it
// found.
func TestPeriodicAuditOneReplica(t *testing.T) {
	redis := redistest.Start(t)
	fake := testproc.StartFake(t)
	const key = "audit_key_replicas"
	fake.Seed(t, composiotest.Account{Credential: key, UserID: "u1", AuthConfigID: "ac_1", CreatedAt: time.Now().Add(-2 * time.Hour)})
	fake.Seed(t, composiotest.Account{Credential: key, UserID: "u1", AuthConfigID: "ac_1", CreatedAt: time.Now().Add(-time.Hour)})
	var proxies []*testproc.Proxy
	for i := range 2 {
		proxies = append(proxies, testproc.LaunchProxy(t, fake.URL, testproc.ProxyOptions{
			Name: fmt.Sprintf("auditor-%d", i),
			Env: []string{
				"GUARD_LOCK_BACKEND=redis", "GUARD_REDIS_URL=" + redis.URL(),
				"GUARD_AUDIT_INTERVAL=1s", "GUARD_AUDIT_API_KEY=" + key, "GUARD_AUDIT_MAX_RATE=50",
			},
		}))
	}
	// Wait until the audit ran a few times.
	deadline := time.Now().Add(15 * time.Second)
	for len(fake.RequestsOf(t, key, composiotest.RouteList)) < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("the audit did not run 4 times: %d list calls", len(fake.RequestsOf(t, key, composiotest.RouteList)))
		}
		time.Sleep(200 * time.Millisecond)
	}
	audits := make([]int, len(proxies))
	for i, p := range proxies {
		audits[i] = len(p.LogLines("audit done"))
		if strings.Contains(p.Logs(), key) {
			t.Errorf("%s: the audit key is in the logs", p.Name)
		}
	}
	if (audits[0] == 0) == (audits[1] == 0) {
		t.Fatalf("audits per replica %v: want exactly one replica auditing", audits)
	}
	// Both export the result, the non-auditing one from the shared lease.
	for _, p := range proxies {
		text := p.MetricsText(t)
		for name, want := range map[string]float64{
			"composio_guard_audit_interval_seconds": 1,
			"composio_guard_audit_duplicate_groups": 1,
			"composio_guard_audit_accounts_scanned": 2,
		} {
			if got, ok := testproc.MetricFrom(text, name, nil); !ok || got != want {
				t.Errorf("%s: %s = %v (%v), want %v", p.Name, name, got, ok, want)
			}
		}
		if got, _ := testproc.MetricFrom(text, "composio_guard_audit_last_success_timestamp_seconds", nil); got < float64(time.Now().Add(-time.Minute).Unix()) {
			t.Errorf("%s: last success %v", p.Name, got)
		}
	}
	// The auditor stops: the other takes over (its results stop coming, so
	// after an interval plus a timeout the lease is stale).
	stopped := 0
	if audits[1] > 0 {
		stopped = 1
	}
	proxies[stopped].Stop()
	other := proxies[1-stopped]
	deadline = time.Now().Add(20 * time.Second)
	for len(other.LogLines("audit done")) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not take over the audit", other.Name)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
