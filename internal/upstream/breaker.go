package upstream

import (
	"errors"
	"sync"
	"time"
)

// ErrBreakerOpen is returned at once while the lookup's circuit breaker is
// open: Composio has been failing, and waiting out a timeout per request
// would only pile requests up. The guard then fails closed or open.
var ErrBreakerOpen = errors.New("upstream: lookup circuit breaker open")

// breakerOptions tune the lookup's circuit breakers: LookupSettings'
// BreakerThreshold and BreakerCooldown, ListOptions' BreakerMaxTenants and Now.
type breakerOptions struct {
	FailureThreshold int           // 0 disables the breakers
	CoolDown         time.Duration // open before one probe is let through
	MaxTenants       int           // 0 means DefaultBreakerMaxTenants
	Now              func() time.Time
}

// DefaultBreakerMaxTenants bounds the memory of the per-tenant breakers:
// about 2 MB at most.
const DefaultBreakerMaxTenants = 10_000

// Breaker states, the values of composio_guard_circuit_breaker_state.
const (
	breakerClosed   = 0
	breakerHalfOpen = 1
	breakerOpen     = 2
)

// outcome of one lookup, as the breaker sees it.
type outcome int

const (
	outcomeSuccess outcome = iota // an answer: 2xx, 401, 403, 429, or a caller-caused error
	outcomeFailure                // no usable answer from Composio
	outcomeNeutral                // says nothing about Composio (the caller went away)
)

// stateGauge is the part of a prometheus.Gauge the breakers set.
type stateGauge interface{ Set(float64) }

// breaker is one tenant's consecutive-failure circuit breaker: closed ->
// open after FailureThreshold failures in a row; open -> half-open after
// CoolDown, letting exactly one probe through; the probe's success closes
// it, its failure opens it again. Guarded by breakers.mu.
type breaker struct {
	tenant   string
	state    int
	fails    int
	openedAt time.Time
	probing  bool // half-open: the one probe is in flight
	// In one of breakers' queues (closed or open) while in the map.
	prev, next *breaker
	q          *queue
}

// breakers keeps one breaker per tenant, so that one tenant's failures
// (which its own input may provoke: an odd id that makes Composio answer
// 5xx) never switch the guard off for the others.
//
// Memory stays bounded, whatever the number of credentials callers present:
//   - A breaker at rest (closed, no failure counted) is the same as a new
//     one, so it is not kept: only tenants with recent Composio failures take
//     room, and one leaves the map as soon as it is back at rest.
//   - The map holds at most max tenants. When a new one needs room, the
//     closed breaker that failed longest ago goes first (it only loses a
//     count of failures not yet at the threshold); when every breaker is
//     open, the one open longest goes (its cool-down is the nearest to its
//     end, so the tenant loses at most one early probe). Both are O(1).
//
// Tenant "" is the shared breaker, kept outside the map and never dropped.
// One mutex for all: a lookup holds it for a map look-up, as it held the one
// breaker's before.
type breakers struct {
	threshold int
	coolDown  time.Duration
	max       int
	now       func() time.Time
	gauge     stateGauge // may be nil

	mu     sync.Mutex
	shared breaker
	m      map[string]*breaker
	closed queue // tracked closed breakers, the one failing longest ago first
	open   queue // tracked open and half-open ones, by the time they opened
	// Breakers per state, the shared one included, for the gauge.
	nOpen, nHalfOpen int
	worst            int
}

// ticket is what allow hands to record: whether the lookup is the
// half-open probe, and of which breaker (it may have been dropped since).
type ticket struct {
	b     *breaker
	probe bool
}

func newBreakers(o breakerOptions, gauge stateGauge) *breakers {
	b := &breakers{
		threshold: o.FailureThreshold, coolDown: o.CoolDown, max: orInt(o.MaxTenants, DefaultBreakerMaxTenants),
		now: o.Now, gauge: gauge, m: make(map[string]*breaker),
	}
	if b.now == nil {
		b.now = time.Now
	}
	if b.gauge != nil {
		b.gauge.Set(breakerClosed)
	}
	return b
}

// get returns tenant's breaker, nil when it is at rest.
func (b *breakers) get(tenant string) *breaker {
	if tenant == "" {
		return &b.shared
	}
	return b.m[tenant]
}

// allow reports whether a lookup of tenant may run; the ticket goes back
// to record with the lookup's outcome.
func (b *breakers) allow(tenant string) (ticket, bool) {
	if b.threshold <= 0 {
		return ticket{}, true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	br := b.get(tenant)
	if br == nil {
		return ticket{}, true
	}
	switch br.state {
	case breakerOpen:
		if b.now().Sub(br.openedAt) < b.coolDown {
			return ticket{}, false
		}
		b.set(br, breakerHalfOpen)
		br.probing = true
		return ticket{br, true}, true
	case breakerHalfOpen:
		if br.probing {
			return ticket{}, false
		}
		br.probing = true
		return ticket{br, true}, true
	}
	return ticket{}, true
}

// record feeds one lookup's outcome back.
func (b *breakers) record(tenant string, t ticket, o outcome) {
	if b.threshold <= 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	br := b.get(tenant)
	// A probe of a breaker dropped meanwhile is an ordinary lookup now.
	probe := t.probe && t.b == br
	if probe {
		br.probing = false
	}
	if br == nil {
		if o != outcomeFailure {
			return // at rest, and stays so
		}
		br = b.add(tenant)
	}
	switch br.state {
	case breakerHalfOpen:
		if !probe {
			return
		}
		switch o {
		case outcomeSuccess:
			br.fails = 0
			b.set(br, breakerClosed)
		case outcomeFailure:
			b.trip(br)
		}
		// neutral: the next caller probes instead.
	case breakerClosed:
		switch o {
		case outcomeSuccess:
			br.fails = 0
		case outcomeFailure:
			br.fails++
			if br.fails >= b.threshold {
				b.trip(br)
			} else if br.q != nil {
				br.q.moveToBack(br)
			}
		}
		// open: late outcomes of lookups let through before it opened do
		// not shorten or extend the cool-down.
	}
	if br.state == breakerClosed && br.fails == 0 && br.q != nil {
		b.drop(br) // at rest: no need to remember it
	}
}

// add puts a new closed breaker for tenant in the map, making room first.
func (b *breakers) add(tenant string) *breaker {
	if len(b.m) >= b.max {
		victim := b.closed.front()
		if victim == nil {
			victim = b.open.front()
		}
		b.drop(victim)
	}
	br := &breaker{tenant: tenant}
	b.m[tenant] = br
	b.closed.pushBack(br)
	return br
}

// drop forgets a tracked breaker; its tenant starts at rest again.
func (b *breakers) drop(br *breaker) {
	br.q.remove(br)
	delete(b.m, br.tenant)
	b.count(br.state, -1)
	b.publish()
}

func (b *breakers) trip(br *breaker) {
	br.openedAt = b.now()
	br.fails = 0
	b.set(br, breakerOpen)
	if br.q != nil { // opened last: the back of the open queue
		br.q.remove(br)
		b.open.pushBack(br)
	}
}

func (b *breakers) set(br *breaker, s int) {
	b.count(br.state, -1)
	b.count(s, +1)
	br.state = s
	b.publish()
}

func (b *breakers) count(s, d int) {
	switch s {
	case breakerOpen:
		b.nOpen += d
	case breakerHalfOpen:
		b.nHalfOpen += d
	}
}

// publish sets the gauge to the worst state of any breaker: one open
// tenant is worth a look, as the one shared breaker was.
func (b *breakers) publish() {
	w := breakerClosed
	switch {
	case b.nOpen > 0:
		w = breakerOpen
	case b.nHalfOpen > 0:
		w = breakerHalfOpen
	}
	if w != b.worst {
		b.worst = w
		if b.gauge != nil {
			b.gauge.Set(float64(w))
		}
	}
}

// tracked is the number of tenants in the map (tests).
func (b *breakers) tracked() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.m)
}

// queue is an intrusive doubly linked list of breakers: O(1) push, remove
// and front, and no allocation of its own.
type queue struct{ head, tail *breaker }

func (q *queue) front() *breaker { return q.head }

func (q *queue) pushBack(br *breaker) {
	br.q, br.prev, br.next = q, q.tail, nil
	if q.tail != nil {
		q.tail.next = br
	} else {
		q.head = br
	}
	q.tail = br
}

func (q *queue) remove(br *breaker) {
	if br.prev != nil {
		br.prev.next = br.next
	} else {
		q.head = br.next
	}
	if br.next != nil {
		br.next.prev = br.prev
	} else {
		q.tail = br.prev
	}
	br.q, br.prev, br.next = nil, nil, nil
}

func (q *queue) moveToBack(br *breaker) {
	q.remove(br)
	q.pushBack(br)
}
