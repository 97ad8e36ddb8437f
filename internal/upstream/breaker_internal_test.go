package upstream

import (
	"fmt"
	"testing"
	"time"
)

// testClock is a settable clock for the breaker's own tests.
type testClock struct{ now time.Time }

func (c *testClock) Now() time.Time { return c.now }

func fail(b *breakers, tenant string) bool {
	t, ok := b.allow(tenant)
	if ok {
		b.record(tenant, t, outcomeFailure)
	}
	return ok
}

func succeed(b *breakers, tenant string) bool {
	t, ok := b.allow(tenant)
	if ok {
		b.record(tenant, t, outcomeSuccess)
	}
	return ok
}

// Only tenants whose breaker is not at rest (closed, no failure counted)
// take room: successes never add one, and a tenant back at rest leaves.
func TestBreakerTenantsAtRestTakeNoRoom(t *testing.T) {
	b := newBreakers(breakerOptions{FailureThreshold: 3, CoolDown: time.Second}, nil)
	for i := range 10_000 {
		succeed(b, fmt.Sprint("t", i))
	}
	if n := b.tracked(); n != 0 {
		t.Fatalf("%d tenants tracked after successes only", n)
	}
	fail(b, "a")
	fail(b, "b")
	if n := b.tracked(); n != 2 {
		t.Fatalf("%d tracked, want 2", n)
	}
	succeed(b, "a")
	if n := b.tracked(); n != 1 {
		t.Errorf("%d tracked after a's success, want 1", n)
	}
	// The shared breaker ("") is never in the map.
	fail(b, "")
	if n := b.tracked(); n != 1 {
		t.Errorf("%d tracked after a shared failure, want 1", n)
	}
}

// The map never grows past MaxTenants; when full, closed breakers (a count
// of failures, no verdict yet) go first, then the one open longest.
func TestBreakerTenantsBounded(t *testing.T) {
	clock := &testClock{now: time.Unix(1_800_000_000, 0)}
	b := newBreakers(breakerOptions{FailureThreshold: 2, CoolDown: time.Minute, Now: clock.Now, MaxTenants: 3}, nil)
	open := func(tenant string) {
		t.Helper()
		fail(b, tenant)
		fail(b, tenant)
		if _, ok := b.allow(tenant); ok {
			t.Fatalf("%s not open after two failures", tenant)
		}
	}
	open("o1")
	clock.now = clock.now.Add(time.Second)
	open("o2")
	fail(b, "c1") // closed, one failure counted
	if n := b.tracked(); n != 3 {
		t.Fatalf("%d tracked, want 3", n)
	}
	fail(b, "n1") // full: c1 goes
	if n := b.tracked(); n != 3 {
		t.Fatalf("%d tracked, want 3", n)
	}
	for _, o := range []string{"o1", "o2"} {
		if _, ok := b.allow(o); ok {
			t.Errorf("%s's open breaker was dropped while a closed one was left", o)
		}
	}
	fail(b, "c1") // c1 counts from 0 again: one failure, still closed, n1 goes
	if _, ok := b.allow("c1"); !ok {
		t.Error("c1 opened on one failure: its dropped count came back")
	}
	// Only open breakers: the one open longest goes.
	fail(b, "c1")
	if _, ok := b.allow("c1"); ok {
		t.Fatal("c1 not open")
	}
	clock.now = clock.now.Add(time.Second)
	fail(b, "x")
	if n := b.tracked(); n != 3 {
		t.Fatalf("%d tracked, want 3", n)
	}
	if _, ok := b.allow("o1"); !ok {
		t.Error("o1, open longest, was kept")
	}
	if _, ok := b.allow("o2"); ok {
		t.Error("o2 was dropped instead of o1")
	}
}

// Many tenants failing at once, as in an outage or a flood of credentials:
// the map stays at its cap, and the work per lookup stays constant.
func TestBreakerTenantsChurn(t *testing.T) {
	for _, threshold := range []int{1, 2} {
		clock := &testClock{now: time.Unix(1_800_000_000, 0)}
		b := newBreakers(breakerOptions{FailureThreshold: threshold, CoolDown: time.Hour, Now: clock.Now, MaxTenants: 1000}, nil)
		start := time.Now()
		for i := range 200_000 {
			fail(b, fmt.Sprint("t", i))
			if i%1000 == 0 {
				clock.now = clock.now.Add(time.Millisecond)
			}
		}
		if n := b.tracked(); n != 1000 {
			t.Errorf("threshold %d: %d tracked, want 1000", threshold, n)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("threshold %d: 200,000 failing tenants took %s", threshold, d)
		}
	}
}

// The gauge is the worst state among tenants, the shared breaker included.
func TestBreakerGaugeWorstState(t *testing.T) {
	clock := &testClock{now: time.Unix(1_800_000_000, 0)}
	g := &gaugeRec{}
	b := newBreakers(breakerOptions{FailureThreshold: 1, CoolDown: time.Second, Now: clock.Now, MaxTenants: 2}, g)
	if g.v != breakerClosed {
		t.Fatalf("gauge %v at start", g.v)
	}
	fail(b, "a")
	fail(b, "b")
	if g.v != breakerOpen {
		t.Fatalf("gauge %v, want open", g.v)
	}
	clock.now = clock.now.Add(time.Second)
	ta, _ := b.allow("a") // a: half-open, b: open
	if g.v != breakerOpen {
		t.Errorf("gauge %v with b open, want open", g.v)
	}
	tb, _ := b.allow("b") // both half-open
	if g.v != breakerHalfOpen {
		t.Errorf("gauge %v with both half-open, want half-open", g.v)
	}
	b.record("a", ta, outcomeSuccess)
	b.record("b", tb, outcomeFailure)
	if g.v != breakerOpen {
		t.Errorf("gauge %v, want open (b)", g.v)
	}
	// Dropping b's open breaker for room takes it out of the gauge.
	fail(b, "c")
	fail(b, "d")
	clock.now = clock.now.Add(time.Second)
	for _, tenant := range []string{"c", "d"} {
		succeed(b, tenant)
	}
	if g.v != breakerClosed || b.tracked() != 0 {
		t.Errorf("gauge %v, %d tracked after every tenant closed", g.v, b.tracked())
	}
}

type gaugeRec struct{ v float64 }

func (g *gaugeRec) Set(v float64) { g.v = v }
