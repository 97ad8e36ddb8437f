package upstream

import (
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ErrBreakerOpen is returned at once while the lookup's circuit breaker is
// open: Composio has been failing, and waiting out a timeout per request
// would only pile requests up. The guard then fails closed or open.
var ErrBreakerOpen = errors.New("upstream: lookup circuit breaker open")

// BreakerOptions tune the lookup's circuit breaker.
type BreakerOptions struct {
	// FailureThreshold consecutive failed lookups (errors, timeouts, 5xx;
	// never 401/403/429) open the breaker. 0 disables it.
	FailureThreshold int
	// CoolDown is how long it stays open before one probe is let through.
	CoolDown time.Duration
	// Now is the clock; nil means time.Now. Tests inject their own.
	Now func() time.Time
}

// Breaker states, the values of composio_guard_circuit_breaker_state.
const (
	breakerClosed   = 0
	breakerHalfOpen = 1
	breakerOpen     = 2
)

// outcome of one lookup, as the breaker sees it.
type outcome int

const (
	outcomeSuccess outcome = iota // an answer: 2xx, 401, 403, 429
	outcomeFailure                // no usable answer from Composio
	outcomeNeutral                // says nothing about Composio (the caller went away)
)

// breaker is a consecutive-failure circuit breaker: closed -> open after
// FailureThreshold failures in a row; open -> half-open after CoolDown,
// letting exactly one probe through; the probe's success closes it, its
// failure opens it again.
type breaker struct {
	threshold int
	coolDown  time.Duration
	now       func() time.Time
	gauge     prometheus.Gauge // may be nil

	mu       sync.Mutex
	state    int
	fails    int
	openedAt time.Time
	probing  bool // half-open: the one probe is in flight
}

func newBreaker(o BreakerOptions, gauge prometheus.Gauge) *breaker {
	b := &breaker{threshold: o.FailureThreshold, coolDown: o.CoolDown, now: o.Now, gauge: gauge}
	if b.now == nil {
		b.now = time.Now
	}
	if b.gauge != nil {
		b.gauge.Set(breakerClosed)
	}
	return b
}

// allow reports whether a lookup may run, and whether it is the half-open
// probe (whose outcome decides the state).
func (b *breaker) allow() (ok, probe bool) {
	if b.threshold <= 0 {
		return true, false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case breakerOpen:
		if b.now().Sub(b.openedAt) < b.coolDown {
			return false, false
		}
		b.set(breakerHalfOpen)
		b.probing = true
		return true, true
	case breakerHalfOpen:
		if b.probing {
			return false, false
		}
		b.probing = true
		return true, true
	}
	return true, false
}

// record feeds one lookup's outcome back.
func (b *breaker) record(o outcome, probe bool) {
	if b.threshold <= 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if probe {
		b.probing = false
	}
	switch b.state {
	case breakerHalfOpen:
		if !probe {
			return
		}
		switch o {
		case outcomeSuccess:
			b.fails = 0
			b.set(breakerClosed)
		case outcomeFailure:
			b.trip()
		}
		// neutral: the next caller probes instead.
	case breakerClosed:
		switch o {
		case outcomeSuccess:
			b.fails = 0
		case outcomeFailure:
			b.fails++
			if b.fails >= b.threshold {
				b.trip()
			}
		}
		// open: late outcomes of lookups let through before it opened do
		// not shorten or extend the cool-down.
	}
}

func (b *breaker) trip() {
	b.openedAt = b.now()
	b.fails = 0
	b.set(breakerOpen)
}

func (b *breaker) set(s int) {
	b.state = s
	if b.gauge != nil {
		b.gauge.Set(float64(s))
	}
}
