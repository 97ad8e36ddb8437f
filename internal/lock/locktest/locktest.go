// Package locktest owns the contract every lock.Store backend must meet, as a
// reusable test suite: call Run from the backend's own tests. It also holds
// the helpers the Redis store's tests share (redis.go), over miniredis in
// internal/lock and over real redis-server in internal/lock/redisserver.
// Tests only: no non-test code imports it.
package locktest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/composio-guard/composio-guard/internal/lock"
)

// Run checks newStore's backend against the lock.Store contract. newStore is
// called once per subtest and must return an empty store; it registers its
// own cleanup with t. Lease expiry is checked against the wall clock, so a
// backend must not return a lease whose ExpiresAt has passed even when its
// storage (miniredis, for one) does not expire keys by itself.
func Run(t *testing.T, newStore func(t *testing.T) lock.Store) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s lock.Store)
	}{
		{"BackendName", testBackendName},
		{"MutualExclusion", testMutualExclusion},
		{"UnlockWakesWaiter", testUnlockWakesWaiter},
		{"DifferentKeysIndependent", testDifferentKeys},
		{"WaitEndsAtDeadline", testWaitDeadline},
		{"CancelledWaitIsTimeout", testCancelledWait},
		{"UnlockIdempotent", testUnlockIdempotent},
		{"LeasePutGetDrop", testLeasePutGetDrop},
		{"LeaseOverwrite", testLeaseOverwrite},
		{"LeaseKeysIndependent", testLeaseKeys},
		{"LeaseOwnersIndependent", testLeaseOwners},
		{"LeaseExpires", testLeaseExpires},
		{"LeasePastExpiryNotReturned", testLeasePast},
	}
	if _, ok := newStore(t).(lock.TryLocker); ok {
		tests = append(tests, struct {
			name string
			fn   func(t *testing.T, s lock.Store)
		}{"TryLock", testTryLock})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newStore(t))
		})
	}
}

const ttl = 10 * time.Second

func key(t *testing.T, suffix string) string {
	// Real keys look like lock.Key's output; the test name keeps backends that
	// share storage between subtests from colliding.
	return lock.Key("ac_test-"+t.Name(), "user-"+suffix, "PRIVATE")
}

func mustLock(t *testing.T, s lock.Store, k string) lock.Unlock {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	u, err := s.Lock(ctx, k, ttl)
	if err != nil {
		t.Fatalf("Lock(%q): %v", k, err)
	}
	return u
}

// assertHeld checks that k cannot be taken within a short wait.
func assertHeld(t *testing.T, s lock.Store, k string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	u, err := s.Lock(ctx, k, ttl)
	if err == nil {
		u()
		t.Fatalf("Lock(%q) succeeded while the key was held", k)
	}
	if !errors.Is(err, lock.ErrTimeout) {
		t.Fatalf("Lock on a held key: got %v, want lock.ErrTimeout", err)
	}
}

func testBackendName(t *testing.T, s lock.Store) {
	if b := s.Backend(); b != "memory" && b != "redis" {
		t.Fatalf("Backend() = %q, want memory or redis", b)
	}
}

func testMutualExclusion(t *testing.T, s lock.Store) {
	const workers, rounds = 16, 10
	k := key(t, "a")
	var inside, maxInside atomic.Int32
	counter := 0 // unsynchronised on purpose: the race detector sees any overlap
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for range rounds {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				u, err := s.Lock(ctx, k, ttl)
				cancel()
				if err != nil {
					errs <- err
					return
				}
				n := inside.Add(1)
				for {
					m := maxInside.Load()
					if n <= m || maxInside.CompareAndSwap(m, n) {
						break
					}
				}
				counter++
				inside.Add(-1)
				u()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Lock: %v", err)
	}
	if got := maxInside.Load(); got != 1 {
		t.Fatalf("%d holders at once, want 1", got)
	}
	if counter != workers*rounds {
		t.Fatalf("counter = %d, want %d", counter, workers*rounds)
	}
}

func testUnlockWakesWaiter(t *testing.T, s lock.Store) {
	k := key(t, "a")
	u := mustLock(t, s, k)
	got := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		u2, err := s.Lock(ctx, k, ttl)
		if err == nil {
			u2()
		}
		got <- err
	}()
	u()
	if err := <-got; err != nil {
		t.Fatalf("waiter after Unlock: %v", err)
	}
}

func testDifferentKeys(t *testing.T, s lock.Store) {
	a, b := key(t, "a"), key(t, "b")
	ua := mustLock(t, s, a)
	defer ua()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ub, err := s.Lock(ctx, b, ttl)
	if err != nil {
		t.Fatalf("Lock(b) while a is held: %v", err)
	}
	ub()
	// Only the user part differs in these keys; the account type must count too.
	c := lock.Key("ac_test-"+t.Name(), "user-a", "SHARED")
	uc, err := s.Lock(ctx, c, ttl)
	if err != nil {
		t.Fatalf("Lock(SHARED key) while the PRIVATE one is held: %v", err)
	}
	uc()
}

func testWaitDeadline(t *testing.T, s lock.Store) {
	k := key(t, "a")
	u := mustLock(t, s, k)
	defer u()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		u2, err := s.Lock(ctx, k, ttl)
		if err == nil {
			u2()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, lock.ErrTimeout) {
			t.Fatalf("got %v, want lock.ErrTimeout", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Lock did not return after its context's deadline")
	}
}

func testCancelledWait(t *testing.T, s lock.Store) {
	k := key(t, "a")
	u := mustLock(t, s, k)
	defer u()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.Lock(ctx, k, ttl)
	if !errors.Is(err, lock.ErrTimeout) {
		t.Fatalf("got %v, want lock.ErrTimeout", err)
	}
}

func testUnlockIdempotent(t *testing.T, s lock.Store) {
	k := key(t, "a")
	u1 := mustLock(t, s, k)
	u1()
	u1()
	u2 := mustLock(t, s, k)
	defer u2()
	u1() // a stale Unlock must not free the next holder's lock
	assertHeld(t, s, k)
}

// owner is the owner of the suite's leases (lease); LeaseOwners adds another.
const owner = "owner-a"

func lease(id string, expires time.Time) lock.Lease {
	return lock.Lease{
		AccountID:   id,
		Owner:       owner,
		Request:     "request-of-" + id,
		Status:      201,
		ContentType: "application/json",
		Body:        []byte(fmt.Sprintf(`{"connected_account_id":%q,"redirect_url":"https://x.example/r"}`, id)),
		ExpiresAt:   expires,
	}
}

func equalLease(t *testing.T, got, want lock.Lease) {
	t.Helper()
	if got.AccountID != want.AccountID || got.Owner != want.Owner || got.Request != want.Request ||
		got.Status != want.Status || got.ContentType != want.ContentType ||
		!bytes.Equal(got.Body, want.Body) || !got.ExpiresAt.Equal(want.ExpiresAt) {
		t.Fatalf("lease = %+v, want %+v", got, want)
	}
}

func getLease(t *testing.T, s lock.Store, k string) (lock.Lease, bool) {
	t.Helper()
	return ownerLease(t, s, k, owner)
}

func ownerLease(t *testing.T, s lock.Store, k, owner string) (lock.Lease, bool) {
	t.Helper()
	l, ok, err := s.GetLease(context.Background(), k, owner)
	if err != nil {
		t.Fatalf("GetLease: %v", err)
	}
	return l, ok
}

func testLeasePutGetDrop(t *testing.T, s lock.Store) {
	ctx := context.Background()
	k := key(t, "a")
	if _, ok := getLease(t, s, k); ok {
		t.Fatal("lease present in an empty store")
	}
	want := lease("ca_1", time.Now().Add(time.Minute).Truncate(time.Millisecond))
	if err := s.PutLease(ctx, k, want); err != nil {
		t.Fatalf("PutLease: %v", err)
	}
	got, ok := getLease(t, s, k)
	if !ok {
		t.Fatal("lease missing after PutLease")
	}
	equalLease(t, got, want)
	if err := s.DropLease(ctx, k, owner); err != nil {
		t.Fatalf("DropLease: %v", err)
	}
	if _, ok := getLease(t, s, k); ok {
		t.Fatal("lease present after DropLease")
	}
	if err := s.DropLease(ctx, k, owner); err != nil {
		t.Fatalf("DropLease of a missing lease: %v", err)
	}
}

func testLeaseOverwrite(t *testing.T, s lock.Store) {
	ctx := context.Background()
	k := key(t, "a")
	exp := time.Now().Add(time.Minute).Truncate(time.Millisecond)
	if err := s.PutLease(ctx, k, lease("ca_1", exp)); err != nil {
		t.Fatalf("PutLease: %v", err)
	}
	want := lease("ca_2", exp.Add(time.Second))
	if err := s.PutLease(ctx, k, want); err != nil {
		t.Fatalf("PutLease: %v", err)
	}
	got, ok := getLease(t, s, k)
	if !ok {
		t.Fatal("lease missing")
	}
	equalLease(t, got, want)
}

func testLeaseKeys(t *testing.T, s lock.Store) {
	ctx := context.Background()
	a, b := key(t, "a"), key(t, "b")
	want := lease("ca_1", time.Now().Add(time.Minute).Truncate(time.Millisecond))
	if err := s.PutLease(ctx, a, want); err != nil {
		t.Fatalf("PutLease: %v", err)
	}
	if _, ok := getLease(t, s, b); ok {
		t.Fatal("lease of key a returned for key b")
	}
	if err := s.DropLease(ctx, b, owner); err != nil {
		t.Fatalf("DropLease: %v", err)
	}
	if _, ok := getLease(t, s, a); !ok {
		t.Fatal("dropping key b removed key a's lease")
	}
}

// testLeaseOwners: two owners' leases on one key are two leases. Neither
// reads, replaces nor drops the other's (one user id in two projects shares a
// key on a toolkit's default auth config).
func testLeaseOwners(t *testing.T, s lock.Store) {
	ctx := context.Background()
	k := key(t, "a")
	exp := time.Now().Add(time.Minute).Truncate(time.Millisecond)
	mine := lease("ca_1", exp)
	theirs := lease("ca_2", exp.Add(time.Second))
	theirs.Owner = "owner-b"
	if err := s.PutLease(ctx, k, mine); err != nil {
		t.Fatalf("PutLease: %v", err)
	}
	if _, ok := ownerLease(t, s, k, theirs.Owner); ok {
		t.Fatal("owner a's lease returned to owner b")
	}
	if err := s.PutLease(ctx, k, theirs); err != nil {
		t.Fatalf("PutLease: %v", err)
	}
	got, ok := getLease(t, s, k)
	if !ok {
		t.Fatal("owner b's PutLease removed owner a's lease")
	}
	equalLease(t, got, mine)
	if got, ok = ownerLease(t, s, k, theirs.Owner); !ok {
		t.Fatal("owner b's lease missing")
	}
	equalLease(t, got, theirs)
	if err := s.DropLease(ctx, k, theirs.Owner); err != nil {
		t.Fatalf("DropLease: %v", err)
	}
	if got, ok = getLease(t, s, k); !ok {
		t.Fatal("dropping owner b's lease removed owner a's")
	}
	equalLease(t, got, mine)
	if _, ok := ownerLease(t, s, k, theirs.Owner); ok {
		t.Fatal("owner b's lease present after DropLease")
	}
}

func testLeaseExpires(t *testing.T, s lock.Store) {
	ctx := context.Background()
	k := key(t, "a")
	exp := time.Now().Add(300 * time.Millisecond)
	if err := s.PutLease(ctx, k, lease("ca_1", exp)); err != nil {
		t.Fatalf("PutLease: %v", err)
	}
	if _, ok := getLease(t, s, k); !ok {
		t.Fatal("lease missing before its expiry")
	}
	time.Sleep(time.Until(exp) + 100*time.Millisecond)
	if _, ok := getLease(t, s, k); ok {
		t.Fatal("lease returned after its ExpiresAt")
	}
}

func testLeasePast(t *testing.T, s lock.Store) {
	ctx := context.Background()
	k := key(t, "a")
	if err := s.PutLease(ctx, k, lease("ca_1", time.Now().Add(-time.Second))); err != nil {
		t.Fatalf("PutLease with a past ExpiresAt: %v", err)
	}
	if _, ok := getLease(t, s, k); ok {
		t.Fatal("lease with a past ExpiresAt returned")
	}
}

// testTryLock: for a backend that has it, TryLock takes only a free lock and
// excludes Lock as Lock excludes it.
func testTryLock(t *testing.T, s lock.Store) {
	tl := s.(lock.TryLocker)
	k := key(t, "try")
	u, ok := tl.TryLock(k, ttl)
	if !ok {
		t.Fatal("TryLock of a free key failed")
	}
	if u2, ok := tl.TryLock(k, ttl); ok {
		u2()
		t.Fatal("TryLock succeeded on a held key")
	}
	assertHeld(t, s, k)
	got := make(chan lock.Unlock, 1)
	go func() { got <- mustLock(t, s, k) }()
	select {
	case <-got:
		t.Fatal("Lock went through while TryLock held the key")
	case <-time.After(20 * time.Millisecond):
	}
	u()
	u3 := <-got
	if u4, ok := tl.TryLock(k, ttl); ok {
		u4()
		t.Fatal("TryLock succeeded while Lock held the key")
	}
	u3()
	u5, ok := tl.TryLock(k, ttl)
	if !ok {
		t.Fatal("TryLock failed after every holder unlocked")
	}
	u5()
}
