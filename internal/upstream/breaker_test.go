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
	e := newListEnv(t, f.handler, upstream.ListOptions{Breaker: upstream.BreakerOptions{FailureThreshold: 3, CoolDown: 10 * time.Second, Now: clock.Now}})
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
	e := newListEnv(t, f.handler, upstream.ListOptions{Breaker: upstream.BreakerOptions{FailureThreshold: 1, CoolDown: time.Second, Now: clock.Now}})
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
	e := newListEnv(t, f.handler, upstream.ListOptions{Breaker: upstream.BreakerOptions{FailureThreshold: 2, CoolDown: time.Minute, Now: clock.Now}})
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
	e := newListEnv(t, f.handler, upstream.ListOptions{})
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
	e := newListEnv(t, f.handler, upstream.ListOptions{Breaker: upstream.BreakerOptions{FailureThreshold: 1, CoolDown: time.Second, Now: clock.Now}})
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
