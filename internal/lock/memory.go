package lock

import (
	"context"
	"fmt"
	"math"
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
	leases    map[string]memLease
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
		leases:    make(map[string]memLease),
		maxLeases: maxLeases,
		lastSweep: now(),
		now:       now,
	}
}

func (m *memory) Backend() string { return "memory" }

// Lock ignores ttl: in one process the holder always runs its deferred
// Unlock, so a memory lock never lapses (it is not lock.Expiring).
func (m *memory) Lock(ctx context.Context, key string, _ time.Duration) (Unlock, error) {
	e := m.ref(key)
	// Checked first so that an ended context never takes a free lock.
	if err := ctx.Err(); err != nil {
		m.release(key, e)
		return nil, fmt.Errorf("%w: %w", ErrTimeout, err)
	}
	select {
	case e.token <- struct{}{}:
	case <-ctx.Done():
		m.release(key, e)
		return nil, fmt.Errorf("%w: %w", ErrTimeout, ctx.Err())
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
	ml, ok := m.leases[key]
	if !ok {
		return Lease{}, false, nil
	}
	if m.now().UnixNano() >= ml.expires {
		delete(m.leases, key)
		return Lease{}, false, nil
	}
	return ml.lease(), true, nil
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
	m.leases[key] = packLease(l)
	return nil
}

// memLease is a Lease packed for a long stay in memory: its strings and body
// in one allocation of their own (a lease would otherwise keep alive the
// answer's whole header block, through its Content-Type), and no pointer
// but that one for the collector to follow.
type memLease struct {
	data    []byte // AccountID, Owner, Request, ContentType, Body
	idLen   int32
	owLen   int32
	rqLen   int32
	ctLen   int32
	status  int32
	expires int64 // ExpiresAt, Unix nanoseconds
}

func packLease(l Lease) memLease {
	data := make([]byte, 0, len(l.AccountID)+len(l.Owner)+len(l.Request)+len(l.ContentType)+len(l.Body))
	data = append(append(append(data, l.AccountID...), l.Owner...), l.Request...)
	data = append(append(data, l.ContentType...), l.Body...)
	return memLease{data: data, idLen: int32(len(l.AccountID)), owLen: int32(len(l.Owner)), rqLen: int32(len(l.Request)),
		ctLen: int32(len(l.ContentType)), status: int32(l.Status), expires: l.ExpiresAt.UnixNano()}
}

// lease unpacks ml. Body is the store's own bytes, capped so that an append
// cannot write into them (Store.GetLease: read-only).
func (ml memLease) lease() Lease {
	id, ow, rq, ct := int(ml.idLen), int(ml.owLen), int(ml.rqLen), int(ml.ctLen)
	l := Lease{
		AccountID: string(ml.data[:id]),
		Owner:     string(ml.data[id : id+ow]),
		Request:   string(ml.data[id+ow : id+ow+rq]),
		Status:    int(ml.status),
		ExpiresAt: time.Unix(0, ml.expires),
	}
	id += ow + rq // the rest is read after the digests
	if ctype := ml.data[id : id+ct]; string(ctype) == contentTypeJSON {
		l.ContentType = contentTypeJSON // the usual one, without a copy
	} else {
		l.ContentType = string(ctype)
	}
	if n := len(ml.data); n > id+ct {
		l.Body = ml.data[id+ct : n : n]
	}
	return l
}

const contentTypeJSON = "application/json"

func (m *memory) DropLease(_ context.Context, key string) error {
	m.mu.Lock()
	delete(m.leases, key)
	m.mu.Unlock()
	return nil
}

func (m *memory) sweepLocked(now time.Time) {
	m.lastSweep = now
	ns := now.UnixNano()
	for k, l := range m.leases {
		if ns >= l.expires {
			delete(m.leases, k)
		}
	}
}

// evictLocked drops the lease closest to expiry: losing it costs the least
// (a repeat is then forwarded, as without the proxy).
func (m *memory) evictLocked() {
	var victim string
	first := int64(math.MaxInt64)
	for k, l := range m.leases {
		if l.expires < first {
			victim, first = k, l.expires
		}
	}
	delete(m.leases, victim)
}
