package replicas_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/composio-guard/composio-guard/internal/apierror"
	"github.com/composio-guard/composio-guard/internal/lock/redistest"
)

// TestReplicasOnCluster is the Cluster smoke test: three masters created
// with redis-cli --cluster create, three proxies on the redis+cluster://
// URL. The 50-link race makes exactly one account, the lease is shared
// across replicas (replay), both keys of a guarded key live in one slot, and
// the lease expires by itself.
func TestReplicasOnCluster(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	const pendingTTL = 3 * time.Second
	c := launch(t, cl.URL(), []string{"GUARD_PENDING_MAX_TTL=" + pendingTTL.String()}, "closed", "closed", "closed")
	ctx := context.Background()
	raw := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{cl.Nodes[0].Addr()}})
	t.Cleanup(func() { raw.Close() })

	t.Run("race of 50", func(t *testing.T) {
		answers := c.race(t, "user_cluster_race", 50)
		assertOneAccount(t, c, "user_cluster_race", answers)
		for _, r := range c.replicas {
			if got := c.metric(t, r, "composio_guard_lock_backend_up", "backend", "redis"); got != 1 {
				t.Errorf("%s: lock_backend_up{backend=redis} = %v, want 1", r.Name, got)
			}
			if got := c.metric(t, r, "composio_guard_lock_errors_total", "backend", "redis"); got != 0 {
				t.Errorf("%s: lock_errors_total{backend=redis} = %v on Cluster, want 0 (CROSSSLOT, MOVED?)", r.Name, got)
			}
		}
	})

	t.Run("races spread over the masters", func(t *testing.T) {
		// Several users: their keys land on different masters, each race
		// still makes one account.
		for _, user := range []string{"user_c1", "user_c2", "user_c3", "user_c4", "user_c5", "user_c6"} {
			assertOneAccount(t, c, user, c.race(t, user, 12))
		}
		nodes := map[string]bool{}
		for _, k := range leaseKeys(t, ctx, cl) {
			n, err := raw.MasterForKey(ctx, k)
			if err != nil {
				t.Fatal(err)
			}
			nodes[n.Options().Addr] = true
			lockKey := strings.Replace(k, ":lease:", ":lock:", 1)
			ls, _ := raw.ClusterKeySlot(ctx, lockKey).Result()
			es, _ := raw.ClusterKeySlot(ctx, k).Result()
			if ls != es {
				t.Errorf("lock %q (slot %d) and lease %q (slot %d) are in different slots", lockKey, ls, k, es)
			}
		}
		if len(nodes) < 2 {
			t.Errorf("7 users' leases on %d master(s): the keys do not spread", len(nodes))
		}
	})

	t.Run("lease shared, then expired", func(t *testing.T) {
		const user = "user_cluster_expiry"
		first := c.link(t, c.replicas[0], user)
		if first.status != http.StatusCreated || first.header.Get(apierror.HeaderGuard) == "replayed" {
			t.Fatalf("first link: %v", first)
		}
		again := c.link(t, c.replicas[1], user)
		if again.status != http.StatusCreated || again.header.Get(apierror.HeaderGuard) != "replayed" || again.redirectURL() != first.redirectURL() {
			t.Fatalf("repeat through another replica: %v (X-Composio-Guard %q), want the replayed first answer", again, again.header.Get(apierror.HeaderGuard))
		}
		if n := len(leaseKeys(t, ctx, cl)); n == 0 {
			t.Fatal("no lease key in the Cluster after a replayed link")
		}
		time.Sleep(pendingTTL + 500*time.Millisecond)
		// Every lease was written with at most GUARD_PENDING_MAX_TTL to live.
		if left := leaseKeys(t, ctx, cl); len(left) != 0 {
			t.Fatalf("lease keys left in Redis after GUARD_PENDING_MAX_TTL: %q", left)
		}
		// The lease and the pending window are over: the next link is a new one.
		next := c.link(t, c.replicas[2], user)
		if next.status != http.StatusCreated || next.header.Get(apierror.HeaderGuard) == "replayed" {
			t.Fatalf("link after the lease expired: %v, want a forwarded 201", next)
		}
		if n := len(c.accounts(t, user)); n != 2 {
			t.Fatalf("%d accounts after the expired link was made again, want 2", n)
		}
	})
}

// leaseKeys lists the guard's lease keys on every master.
func leaseKeys(t *testing.T, ctx context.Context, cl *redistest.Cluster) []string {
	t.Helper()
	var keys []string
	for _, n := range cl.Nodes {
		c := redis.NewClient(&redis.Options{Addr: n.Addr()})
		ks, err := c.Keys(ctx, "composio-guard:lease:*").Result()
		c.Close()
		if err != nil {
			t.Fatalf("KEYS on %s: %v", n.Addr(), err)
		}
		keys = append(keys, ks...)
	}
	return keys
}
