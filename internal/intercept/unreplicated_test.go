package intercept_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/composio-guard/composio-guard/internal/intercept"
	"github.com/composio-guard/composio-guard/internal/lock"
)

// leaseUnreplicated is a memory store whose lease writes land (on "the
// primary") but fewer replicas than GUARD_REDIS_MIN_REPLICAS acknowledged
// them, as lock.Redis reports it.
type leaseUnreplicated struct{ lock.Store }

func (s leaseUnreplicated) PutLease(ctx context.Context, key string, l lock.Lease) error {
	if err := s.Store.PutLease(ctx, key, l); err != nil {
		return err
	}
	return fmt.Errorf("lock: redis lease: %w (0 of 1 within 333ms)", lock.ErrUnreplicated)
}

// An unreplicated lease cannot change the answer already written: the link
// is answered as forwarded, the lease serves while the primary lives (the
// repeat is replayed), and the miss is logged at WARN without the key.
func TestLeaseUnreplicatedKeptAndLogged(t *testing.T) {
	e := newEnv(t, intercept.Config{}, withStore(leaseUnreplicated{lock.NewMemory()}))
	first := e.link(t, "u", "ac")
	if first.Status != http.StatusCreated || first.Header.Get("X-Composio-Guard") == "replayed" {
		t.Fatalf("first link: %d %q", first.Status, first.Header.Get("X-Composio-Guard"))
	}
	again := e.link(t, "u", "ac")
	if again.Status != http.StatusCreated || again.Header.Get("X-Composio-Guard") != "replayed" || e.up.links.Load() != 1 {
		t.Fatalf("repeat: %d %q, %d links upstream; want the replay of the one", again.Status, again.Header.Get("X-Composio-Guard"), e.up.links.Load())
	}
	lines := e.logs.FilterMessage("pending-link lease stored but not replicated in time").All()
	if len(lines) != 1 || lines[0].Level.String() != "warn" {
		t.Fatalf("want one WARN line about the unreplicated lease, got %v", lines)
	}
	if got := counter(e.m.Leases.WithLabelValues("stored")); got != 1 {
		t.Fatalf("pending_leases_total{result=stored} = %v, want 1", got)
	}
}
