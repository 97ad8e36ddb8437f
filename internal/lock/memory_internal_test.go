package lock

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// Entries must leave the map once nobody holds or waits for them, whether the
// lock was taken or the wait timed out; otherwise every user ever seen stays in memory.
func TestMemoryFreesEntries(t *testing.T) {
	m := newMemory(10, time.Now)
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			k := fmt.Sprintf("k%d", i%5)
			ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i%3)*time.Millisecond)
			defer cancel()
			u, err := m.Lock(ctx, k, time.Second)
			if err != nil {
				if !errors.Is(err, ErrTimeout) {
					t.Errorf("Lock: %v", err)
				}
				return
			}
			u()
		})
	}
	wg.Wait()
	m.mu.Lock()
	n := len(m.locks)
	m.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d lock entries left, want 0", n)
	}
}

func TestMemoryLeaseBound(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return now }
	m := newMemory(3, clock)
	ctx := context.Background()
	put := func(k string, d time.Duration) {
		t.Helper()
		if err := m.PutLease(ctx, k, Lease{AccountID: k, ExpiresAt: now.Add(d)}); err != nil {
			t.Fatal(err)
		}
	}
	put("a", time.Minute)
	put("b", 2*time.Minute)
	put("c", 3*time.Minute)
	put("d", 4*time.Minute) // full: "a", the closest to expiry, goes
	if _, ok, _ := m.GetLease(ctx, "a"); ok {
		t.Fatal("lease a survived eviction")
	}
	for _, k := range []string{"b", "c", "d"} {
		if _, ok, _ := m.GetLease(ctx, k); !ok {
			t.Fatalf("lease %s evicted", k)
		}
	}
	now = now.Add(150 * time.Second) // b expired, c and d alive
	put("e", time.Hour)              // full again: the sweep frees b, nothing live is evicted
	for _, k := range []string{"c", "d", "e"} {
		if _, ok, _ := m.GetLease(ctx, k); !ok {
			t.Fatalf("live lease %s evicted", k)
		}
	}
	if len(m.leases) != 3 {
		t.Fatalf("%d leases stored, want 3", len(m.leases))
	}
}
