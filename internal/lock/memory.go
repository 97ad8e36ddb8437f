package lock

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Memory bounds: leases are swept of expired entries at most once per
// sweepEvery, and never grow past maxLeases (the oldest-expiring is evicted).
const (
	defaultMaxLeases = 100_000
	sweepEvery       = time.Minute
)

// memory is the one-process backend. Each key has its own mutex (a channel of
// capacity one, so a wait can end with its context); the map entry lives only
// while someone holds or waits for the key, so the map holds no dead keys.
// The map's own mutex is never held while waiting.
type memory struct {
	mu        sync.Mutex
	locks     map[string]*memEntry
	leases    map[string]Lease
	maxLeases int
	lastSweep time.Time
	now       func() time.Time
}

type memEntry struct {
	token chan struct{}
	refs  int // holders plus waiters; the entry is deleted when it falls to 0
}

// NewMemory returns the in-process Store: correct for a single replica only.
// It starts no goroutine; expired leases are dropped lazily.
func NewMemory() Store {
	return newMemory(defaultMaxLeases, time.Now)
}

func newMemory(maxLeases int, now func() time.Time) *memory {
	return &memory{
		locks:     make(map[string]*memEntry),
		leases:    make(map[string]Lease),
		maxLeases: maxLeases,
		lastSweep: now(),
		now:       now,
	}
}

func (m *memory) Backend() string { return "memory" }

// Lock ignores ttl: in one process the holder always runs its deferred
// Unlock, and the guard bounds its own work by a context that ends before ttl.
func (m *memory) Lock(ctx context.Context, key string, _ time.Duration) (Unlock, error) {
	e := m.ref(key)
	// Checked first so that an ended context never takes a free lock.
	if err := ctx.Err(); err != nil {
		m.release(key, e)
		return nil, fmt.Errorf("%w: %w", ErrTimeout, err)
	}
	select {
	case e.token <- struct{}{}:
	default:
		select {
		case e.token <- struct{}{}:
		case <-ctx.Done():
			m.release(key, e)
			return nil, fmt.Errorf("%w: %w", ErrTimeout, ctx.Err())
		}
	}
	return m.unlocker(key, e), nil
}

// TryLock takes the lock of key only if it is free.
func (m *memory) TryLock(key string, _ time.Duration) (Unlock, bool) {
	e := m.ref(key)
	select {
	case e.token <- struct{}{}:
		return m.unlocker(key, e), true
	default:
		m.release(key, e)
		return nil, false
	}
}

// ref finds or makes the entry of key and counts one more holder or waiter.
func (m *memory) ref(key string) *memEntry {
	m.mu.Lock()
	e := m.locks[key]
	if e == nil {
		e = &memEntry{token: make(chan struct{}, 1)}
		m.locks[key] = e
	}
	e.refs++
	m.mu.Unlock()
	return e
}

func (m *memory) unlocker(key string, e *memEntry) Unlock {
	var once sync.Once
	return func() {
		once.Do(func() {
			<-e.token
			m.release(key, e)
		})
	}
}

func (m *memory) release(key string, e *memEntry) {
	m.mu.Lock()
	e.refs--
	if e.refs == 0 {
		delete(m.locks, key)
	}
	m.mu.Unlock()
}

func (m *memory) GetLease(_ context.Context, key string) (Lease, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	l, ok := m.leases[key]
	if !ok {
		return Lease{}, false, nil
	}
	if !m.now().Before(l.ExpiresAt) {
		delete(m.leases, key)
		return Lease{}, false, nil
	}
	l.Body = append([]byte(nil), l.Body...) // callers may not alias our copy
	return l, true, nil
}

func (m *memory) PutLease(_ context.Context, key string, l Lease) error {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if !now.Before(l.ExpiresAt) {
		delete(m.leases, key) // already expired: nothing to keep, and no older lease may survive it
		return nil
	}
	_, exists := m.leases[key]
	full := !exists && len(m.leases) >= m.maxLeases
	if full || now.Sub(m.lastSweep) >= sweepEvery {
		m.sweepLocked(now)
	}
	if full && len(m.leases) >= m.maxLeases {
		m.evictLocked()
	}
	l.Body = append([]byte(nil), l.Body...)
	m.leases[key] = l
	return nil
}

func (m *memory) DropLease(_ context.Context, key string) error {
	m.mu.Lock()
	delete(m.leases, key)
	m.mu.Unlock()
	return nil
}

func (m *memory) sweepLocked(now time.Time) {
	m.lastSweep = now
	for k, l := range m.leases {
		if !now.Before(l.ExpiresAt) {
			delete(m.leases, k)
		}
	}
}

// evictLocked drops the lease closest to expiry: losing it costs the least
// (a repeat is then forwarded, as without the proxy).
func (m *memory) evictLocked() {
	var victim string
	var first time.Time
	for k, l := range m.leases {
		if first.IsZero() || l.ExpiresAt.Before(first) {
			victim, first = k, l.ExpiresAt
		}
	}
	delete(m.leases, victim)
}
