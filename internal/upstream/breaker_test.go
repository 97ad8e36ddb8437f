package upstream_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/composio-guard/composio-guard/internal/metrics"
	"github.com/composio-guard/composio-guard/internal/upstream"
)

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// flaky answers with the status held in code (200 is a good page).
type flaky struct {
	code atomic.Int32
	hold atomic.Pointer[holder] // when set, answers wait
}

type holder struct{ arrived, release chan struct{} }

func (f *flaky) handler(w http.ResponseWriter, r *http.Request) {
	if h := f.hold.Load(); h != nil {
		h.arrived <- struct{}{}
		select {
		case <-h.release:
		case <-r.Context().Done():
			return
		}
	}
	c := int(f.code.Load())
	if c == 0 || c == http.StatusOK {
		serve(page("", item("ca", "ACTIVE", "u", "ac")))(w, r)
		return
	}
	w.WriteHeader(c)
	io.WriteString(w, `{"error":{}}`)
}

func breakerState(m *metrics.Metrics) float64 { return value(m.BreakerState.WithLabelValues("lookup")) }

func TestBreakerOpensHalfOpensCloses(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1_800_000_000, 0)}
	f := &flaky{}
	f.code.Store(http.StatusInternalServerError)
	e := newListEnv(t, f.handler, upstream.LookupSettings{BreakerThreshold: 3, BreakerCooldown: 10 * time.Second}, upstream.ListOptions{Now: clock.Now})
	q := query("/api/v3", "u", "ac", "", nil)
	list := func() error { _, err := e.c.List(context.Background(), q); return err }
	sent := func() int { return len(e.rec.all()) }

	if breakerState(e.m) != 0 {
		t.Fatal("breaker not closed at start")
	}
	for i := 0; i < 3; i++ {
		if err := list(); err == nil || errors.Is(err, upstream.ErrBreakerOpen) {
			t.Fatalf("failure %d: err %v", i+1, err)
		}
	}
	if breakerState(e.m) != 2 {
		t.Fatalf("state %v after 3 failures, want 2 (open)", breakerState(e.m))
	}
	// Open: fail fast, nothing sent.
	for i := 0; i < 5; i++ {
		if err := list(); !errors.Is(err, upstream.ErrBreakerOpen) {
			t.Fatalf("while open: err %v", err)
		}
	}
	if sent() != 3 || lookups(e.m, upstream.LookupBreakerOpen) != 5 {
		t.Fatalf("%d requests sent, breaker_open %v", sent(), lookups(e.m, upstream.LookupBreakerOpen))
	}
	// Cool-down over, Composio still failing: the probe fails, open again.
	clock.Advance(10 * time.Second)
	if err := list(); err == nil || errors.Is(err, upstream.ErrBreakerOpen) {
		t.Fatalf("probe: err %v", err)
	}
	if sent() != 4 || breakerState(e.m) != 2 {
		t.Fatalf("after a failed probe: %d sent, state %v", sent(), breakerState(e.m))
	}
	if err := list(); !errors.Is(err, upstream.ErrBreakerOpen) {
		t.Fatalf("after a failed probe: err %v", err)
	}
	// Composio back: the next probe closes it.
	f.code.Store(http.StatusOK)
	clock.Advance(10 * time.Second)
	if err := list(); err != nil {
		t.Fatalf("probe: %v", err)
	}
	if breakerState(e.m) != 0 {
		t.Fatalf("state %v after a good probe, want 0", breakerState(e.m))
	}
	for i := 0; i < 3; i++ {
		if err := list(); err != nil {
			t.Fatal(err)
		}
	}
	if sent() != 8 {
		t.Errorf("%d requests sent, want 8", sent())
	}
}

// While the one probe is in flight, others fail fast; state is half-open.
func TestBreakerSingleProbe(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1_800_000_000, 0)}
	f := &flaky{}
	f.code.Store(http.StatusBadGateway)
	e := newListEnv(t, f.handler, upstream.LookupSettings{BreakerThreshold: 1, BreakerCooldown: time.Second}, upstream.ListOptions{Now: clock.Now})
	q := query("/api/v3", "u", "ac", "", nil)
	if _, err := e.c.List(context.Background(), q); err == nil {
		t.Fatal("want a failure")
	}
	clock.Advance(time.Second)
	f.code.Store(http.StatusOK)
	h := &holder{arrived: make(chan struct{}, 1), release: make(chan struct{})}
	f.hold.Store(h)
	probe := make(chan error, 1)
	go func() { _, err := e.c.List(context.Background(), q); probe <- err }()
	<-h.arrived
	if got := breakerState(e.m); got != 1 {
		t.Errorf("state %v during the probe, want 1 (half-open)", got)
	}
	if _, err := e.c.List(context.Background(), q); !errors.Is(err, upstream.ErrBreakerOpen) {
		t.Errorf("second caller during the probe: %v", err)
	}
	close(h.release)
	if err := <-probe; err != nil {
		t.Fatal(err)
	}
	if got := breakerState(e.m); got != 0 {
		t.Errorf("state %v after the probe, want 0", got)
	}
}

// 401, 403 and 429 are answers: they never open the breaker, and a success
// resets the count of failures in a row.
func TestBreakerCountsOnlyFailures(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1_800_000_000, 0)}
	f := &flaky{}
	e := newListEnv(t, f.handler, upstream.LookupSettings{BreakerThreshold: 2, BreakerCooldown: time.Minute}, upstream.ListOptions{Now: clock.Now})
	q := query("/api/v3", "u", "ac", "", nil)
	for _, code := range []int{500, 401, 500, 403, 500, 429, 500, 200, 500, 404, 500} {
		f.code.Store(int32(code))
		_, err := e.c.List(context.Background(), q)
		if errors.Is(err, upstream.ErrBreakerOpen) {
			t.Fatalf("breaker opened at %d", code)
		}
	}
	if breakerState(e.m) != 0 {
		t.Errorf("state %v", breakerState(e.m))
	}
	f.code.Store(500)
	_, _ = e.c.List(context.Background(), q)
	if breakerState(e.m) != 2 {
		t.Errorf("two 5xx in a row: state %v, want 2", breakerState(e.m))
	}
}

func TestBreakerDisabled(t *testing.T) {
	f := &flaky{}
	f.code.Store(500)
	e := newListEnv(t, f.handler, upstream.LookupSettings{})
	for i := 0; i < 20; i++ {
		if _, err := e.c.List(context.Background(), query("/api/v3", "u", "ac", "", nil)); errors.Is(err, upstream.ErrBreakerOpen) {
			t.Fatal("a disabled breaker opened")
		}
	}
	if n := len(e.rec.all()); n != 20 {
		t.Errorf("%d sent", n)
	}
}

// A probe whose caller left says nothing about Composio: the next caller
// probes instead, and still only one at a time.
func TestBreakerProbeCallerGone(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1_800_000_000, 0)}
	f := &flaky{}
	f.code.Store(http.StatusServiceUnavailable)
	e := newListEnv(t, f.handler, upstream.LookupSettings{BreakerThreshold: 1, BreakerCooldown: time.Second}, upstream.ListOptions{Now: clock.Now})
	q := query("/api/v3", "u", "ac", "", nil)
	_, _ = e.c.List(context.Background(), q)
	clock.Advance(time.Second)
	f.code.Store(http.StatusOK)
	h := &holder{arrived: make(chan struct{}, 1), release: make(chan struct{})}
	f.hold.Store(h)
	// Released by closing: the canceled probe's handler may still be waiting
	// (the server sees the client leave a moment later), and a single send
	// could wake it instead of the next probe's.
	var once sync.Once
	releaseAll := func() { once.Do(func() { close(h.release) }) }
	defer releaseAll()

	ctx, cancel := context.WithCancel(context.Background())
	gone := make(chan error, 1)
	go func() { _, err := e.c.List(ctx, q); gone <- err }()
	<-h.arrived
	cancel()
	if err := <-gone; !errors.Is(err, context.Canceled) {
		t.Fatalf("probe of a caller that left: %v", err)
	}
	if got := breakerState(e.m); got != 1 {
		t.Errorf("state %v, want still half-open", got)
	}
	next := make(chan error, 1)
	go func() { _, err := e.c.List(context.Background(), q); next <- err }()
	<-h.arrived
	if _, err := e.c.List(context.Background(), q); !errors.Is(err, upstream.ErrBreakerOpen) {
		t.Errorf("a second probe ran at the same time: %v", err)
	}
	f.hold.Store(nil)
	releaseAll()
	if err := <-next; err != nil {
		t.Fatal(err)
	}
	if got := breakerState(e.m); got != 0 {
		t.Errorf("state %v after the good probe", got)
	}
}

// tenantHandler fails the calls of one credential with 500 and answers the
// others with a good page.
func tenantHandler(failing string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Api-Key") == failing {
			statusHandler(http.StatusInternalServerError)(w, r)
			return
		}
		serve(page("", item("ca", "ACTIVE", "u", "ac")))(w, r)
	}
}

// Each tenant has its own breaker: tenant A's 5xx storm opens A's, and
// tenant B's lookups still run and succeed. The gauge shows the worst state
// among tenants.
func TestBreakerIsolatesTenants(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1_800_000_000, 0)}
	failing := "key_a"
	var mu sync.Mutex
	e := newListEnv(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		f := failing
		mu.Unlock()
		tenantHandler(f)(w, r)
	}, upstream.LookupSettings{BreakerThreshold: 3, BreakerCooldown: 10 * time.Second}, upstream.ListOptions{Now: clock.Now})
	qa := query("/api/v3", "u", "ac", "", http.Header{"X-Api-Key": {"key_a"}})
	qa.Tenant = "tenant-a"
	qb := func() upstream.ListQuery {
		q := query("/api/v3", "u", "ac", "", http.Header{"X-Api-Key": {"key_b"}})
		q.Tenant = "tenant-b"
		return q
	}
	for i := range 3 {
		if _, err := e.c.List(context.Background(), qa); err == nil || errors.Is(err, upstream.ErrBreakerOpen) {
			t.Fatalf("A failure %d: %v", i+1, err)
		}
	}
	if _, err := e.c.List(context.Background(), qa); !errors.Is(err, upstream.ErrBreakerOpen) {
		t.Fatalf("A after 3 failures: %v, want ErrBreakerOpen", err)
	}
	if breakerState(e.m) != 2 {
		t.Errorf("gauge %v while A is open, want 2 (the worst tenant)", breakerState(e.m))
	}
	for i := range 5 {
		res, err := e.c.List(context.Background(), qb())
		if err != nil || len(res.Items) != 1 {
			t.Fatalf("B lookup %d while A is open: %+v, %v", i+1, res, err)
		}
	}
	// The shared breaker (no tenant) is not A's either.
	if _, err := e.c.List(context.Background(), query("/api/v3", "u", "ac", "", nil)); err != nil {
		t.Fatalf("no tenant while A is open: %v", err)
	}
	if n := len(e.rec.all()); n != 3+5+1 {
		t.Errorf("%d calls reached Composio, want 9", n)
	}
	if breakerState(e.m) != 2 {
		t.Errorf("gauge %v after B's successes, want still 2", breakerState(e.m))
	}
	// A recovers: its probe closes its breaker, and the gauge goes back to 0.
	mu.Lock()
	failing = ""
	mu.Unlock()
	clock.Advance(10 * time.Second)
	if _, err := e.c.List(context.Background(), qa); err != nil {
		t.Fatalf("A's probe: %v", err)
	}
	if breakerState(e.m) != 0 {
		t.Errorf("gauge %v after A closed, want 0", breakerState(e.m))
	}
}

// B failing too opens B's breaker on its own count: A's failures do not add
// to it.
func TestBreakerTenantCountsAreSeparate(t *testing.T) {
	f := &flaky{}
	f.code.Store(500)
	e := newListEnv(t, f.handler, upstream.LookupSettings{BreakerThreshold: 2, BreakerCooldown: time.Hour})
	q := func(tenant string) upstream.ListQuery {
		q := query("/api/v3", "u", "ac", "", nil)
		q.Tenant = tenant
		return q
	}
	// A, B, A: without isolation the third call would already open it.
	for _, tenant := range []string{"a", "b"} {
		if _, err := e.c.List(context.Background(), q(tenant)); errors.Is(err, upstream.ErrBreakerOpen) {
			t.Fatalf("%s: breaker open after one failure", tenant)
		}
	}
	if breakerState(e.m) != 0 {
		t.Errorf("gauge %v after one failure each, want 0", breakerState(e.m))
	}
	_, _ = e.c.List(context.Background(), q("a"))
	if _, err := e.c.List(context.Background(), q("a")); !errors.Is(err, upstream.ErrBreakerOpen) {
		t.Errorf("a after two failures: %v", err)
	}
	if _, err := e.c.List(context.Background(), q("b")); errors.Is(err, upstream.ErrBreakerOpen) {
		t.Errorf("b opened by a's failures")
	}
}
