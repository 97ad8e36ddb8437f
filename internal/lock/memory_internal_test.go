package lock

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Entries must leave the map once nobody holds or waits for them, whether the
// lock was taken or the wait timed out; otherwise every user ever seen stays in memory.
func TestMemoryFreesEntries(t *testing.T) {
	m := newMemory(MemoryOptions{MaxLeases: 10}, time.Now)
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
	evictions := 0
	m := newMemory(MemoryOptions{MaxLeases: 3, OnEvict: func() { evictions++ }}, clock)
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
	if _, ok, _ := m.GetLease(ctx, "a", ""); ok {
		t.Fatal("lease a survived eviction")
	}
	for _, k := range []string{"b", "c", "d"} {
		if _, ok, _ := m.GetLease(ctx, k, ""); !ok {
			t.Fatalf("lease %s evicted", k)
		}
	}
	now = now.Add(150 * time.Second) // b expired, c and d alive
	put("e", time.Hour)              // full again: the expired b is popped, nothing live is evicted
	for _, k := range []string{"c", "d", "e"} {
		if _, ok, _ := m.GetLease(ctx, k, ""); !ok {
			t.Fatalf("live lease %s evicted", k)
		}
	}
	if n := len(m.leases.index); n != 3 {
		t.Fatalf("%d leases stored, want 3", n)
	}
	if evictions != 1 {
		t.Fatalf("OnEvict called %d times, want 1 (for a)", evictions)
	}
}

// At the bound, the live lease evicted is the one closest to expiry, whatever
// the order the leases were written or rewritten in, and OnEvict counts it.
func TestMemoryEvictsSoonestToExpire(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	evictions := 0
	m := newMemory(MemoryOptions{MaxLeases: 4, OnEvict: func() { evictions++ }}, func() time.Time { return now })
	ctx := context.Background()
	put := func(k string, d time.Duration) {
		t.Helper()
		if err := m.PutLease(ctx, k, Lease{AccountID: "ca_" + k, Body: []byte(`{"id":"ca_` + k + `"}`), ExpiresAt: now.Add(d)}); err != nil {
			t.Fatal(err)
		}
	}
	has := func(k string) bool {
		t.Helper()
		l, ok, err := m.GetLease(ctx, k, "")
		if err != nil {
			t.Fatal(err)
		}
		if ok && l.AccountID != "ca_"+k {
			t.Fatalf("lease %s holds %s", k, l.AccountID)
		}
		return ok
	}
	put("c", 30*time.Minute)
	put("a", 50*time.Minute)
	put("d", 40*time.Minute)
	put("b", 20*time.Minute)
	put("a", 10*time.Minute) // rewritten: now the closest to expiry
	if evictions != 0 {
		t.Fatalf("%d evictions below the bound", evictions)
	}
	put("e", time.Hour) // full: a goes
	if has("a") || evictions != 1 {
		t.Fatalf("a kept or not counted (evictions %d)", evictions)
	}
	put("f", time.Hour) // then b
	if has("b") || evictions != 2 {
		t.Fatalf("b kept or not counted (evictions %d)", evictions)
	}
	put("c", 2*time.Hour) // rewriting a key in a full store evicts nothing
	if evictions != 2 {
		t.Fatalf("a rewrite evicted a lease (evictions %d)", evictions)
	}
	put("g", time.Hour) // d (40 min) is now the closest: c moved to 2 h
	if has("d") || evictions != 3 {
		t.Fatalf("d kept or not counted (evictions %d)", evictions)
	}
	for _, k := range []string{"c", "e", "f", "g"} {
		if !has(k) {
			t.Fatalf("lease %s evicted", k)
		}
	}
}

// Random puts, rewrites, drops, gets and clock moves, checked after each step
// against a plain map: the heap stays a heap, every position and index entry
// agrees, expired leases are never returned and the bound holds.
func TestMemoryLeaseHeapModel(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	const bound = 64
	m := newMemory(MemoryOptions{MaxLeases: bound}, func() time.Time { return now })
	ctx := context.Background()
	model := map[string]time.Time{}
	rng := rand.New(rand.NewPCG(1, 2))
	for step := range 20_000 {
		k := "k" + strconv.Itoa(rng.IntN(160))
		switch op := rng.IntN(10); {
		case op < 5:
			exp := now.Add(time.Duration(rng.IntN(600)-60) * time.Second)
			if err := m.PutLease(ctx, k, Lease{AccountID: k, ExpiresAt: exp}); err != nil {
				t.Fatal(err)
			}
			if exp.After(now) {
				model[k] = exp
			} else {
				delete(model, k)
			}
		case op < 7:
			if err := m.DropLease(ctx, k, ""); err != nil {
				t.Fatal(err)
			}
			delete(model, k)
		case op < 9:
			l, ok, err := m.GetLease(ctx, k, "")
			if err != nil {
				t.Fatal(err)
			}
			if ok && (!l.ExpiresAt.After(now) || l.AccountID != k) {
				t.Fatalf("step %d: got %+v at %v", step, l, now)
			}
			if exp, live := model[k]; ok && (!live || !exp.Equal(l.ExpiresAt)) {
				t.Fatalf("step %d: %s returned (expires %v), model has %v %v", step, k, l.ExpiresAt, exp, live)
			}
		default:
			now = now.Add(time.Duration(rng.IntN(30)) * time.Second)
		}
		checkLeaseSet(t, m)
		if n := len(m.leases.index); n > bound {
			t.Fatalf("step %d: %d leases stored, bound %d", step, n, bound)
		}
		// The store may have evicted or popped what the model holds, never
		// kept what the model dropped.
		for id, slot := range m.leases.index {
			key := id.key
			exp, ok := model[key]
			if !ok || exp.UnixNano() != m.leases.slots[slot].ml.expires {
				t.Fatalf("step %d: store holds %s, model %v %v", step, key, exp, ok)
			}
		}
		for key := range model {
			if _, ok := m.leases.index[leaseID{key: key}]; !ok {
				delete(model, key) // evicted or expired
			}
		}
	}
}

func checkLeaseSet(t *testing.T, m *memory) {
	t.Helper()
	s := &m.leases
	if len(s.heap) != len(s.index) || len(s.heap)+len(s.free) != len(s.slots) {
		t.Fatalf("heap %d, index %d, free %d, slots %d", len(s.heap), len(s.index), len(s.free), len(s.slots))
	}
	for i, slot := range s.heap {
		if int(s.slots[slot].pos) != i {
			t.Fatalf("slot %d at heap %d says %d", slot, i, s.slots[slot].pos)
		}
		if s.index[s.slots[slot].key] != slot {
			t.Fatalf("slot %d not indexed under its key", slot)
		}
		if i > 0 && s.Less(i, (i-1)/2) {
			t.Fatalf("heap order broken at %d", i)
		}
	}
	for _, slot := range s.free {
		if sl := s.slots[slot]; sl.pos != -1 || sl.key != (leaseID{}) || sl.ml.data != nil {
			t.Fatalf("free slot %d not cleared: %+v", slot, sl)
		}
	}
}

// BenchmarkMemoryPutFull writes leases into a store full of 100,000 live ones,
// as under a flood of links: every Put adds a new key, so every Put evicts.
// The cost must stay O(log n), not grow with the store (it used to scan all of it).
func BenchmarkMemoryPutFull(b *testing.B) {
	const full = 100_000
	for _, bc := range []struct {
		name  string
		fresh bool // a new key (evicts) or a rewrite of a stored one
	}{{"new key evicts", true}, {"rewrite", false}} {
		b.Run(bc.name, func(b *testing.B) {
			evictions := 0
			m := newMemory(MemoryOptions{MaxLeases: full, OnEvict: func() { evictions++ }}, time.Now)
			ctx := context.Background()
			base := time.Now().Add(time.Hour)
			keys := make([]string, 4*full) // a key comes back after 3 * full others: evicted by then
			for i := range keys {
				keys[i] = Key("ac_bench", "user_"+strconv.Itoa(i), "PRIVATE")
			}
			l := Lease{AccountID: "ca_bench", Status: 201, ContentType: contentTypeJSON,
				Body: []byte(`{"connected_account_id":"ca_bench","redirect_url":"https://connect.example/link/lt_bench"}`)}
			for i := range full {
				l.ExpiresAt = base.Add(time.Duration(i) * time.Millisecond)
				if err := m.PutLease(ctx, keys[i], l); err != nil {
					b.Fatal(err)
				}
			}
			rng := rand.New(rand.NewPCG(3, 4))
			i := full
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				k := keys[i%len(keys)]
				if !bc.fresh {
					k = keys[rng.IntN(full)] // stored: the first full keys are never evicted here
				}
				l.ExpiresAt = base.Add(time.Duration(i) * time.Millisecond)
				if err := m.PutLease(ctx, k, l); err != nil {
					b.Fatal(err)
				}
				i++
			}
			b.StopTimer()
			if n := len(m.leases.index); n != full {
				b.Fatalf("%d leases stored, want %d", n, full)
			}
			if bc.fresh && evictions == 0 {
				b.Fatal("no eviction counted")
			}
		})
	}
}

func TestKeyFoldsSpellings(t *testing.T) {
	base := Key("ac_1", "user_1", "PRIVATE")
	for _, k := range []string{Key("AC_1", "user_1", "PRIVATE"), Key("ac_1", " User_1 ", "PRIVATE"), Key(" ac_1", "USER_1", "PRIVATE")} {
		if k != base {
			t.Fatalf("key %q, want %q: spellings of one id must share a lock", k, base)
		}
	}
	if Key("ac_1", "user_2", "PRIVATE") == base || Key("ac_2", "user_1", "PRIVATE") == base || Key("ac_1", "user_1", "SHARED") == base {
		t.Fatal("distinct ids share a key")
	}
}
