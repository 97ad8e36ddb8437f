package lock

import (
	"container/heap"
	"context"
	"fmt"
	"sync"
	"time"
)

// defaultMaxLeases bounds the leases a memory store keeps when
// MemoryOptions.MaxLeases is not set.
const defaultMaxLeases = 100_000

// expiredPerPut bounds how many expired leases one PutLease pops from the top
// of the expiry heap: more than the one lease it can add, so expired leases
// never pile up, and few enough that no call does a sweep's work.
const expiredPerPut = 4

// memory is the one-process backend. Each key has its own mutex (a channel of
// capacity one, so a wait can end with its context); the map entry lives only
// while someone holds or waits for the key, so the map holds no dead keys.
// The map's own mutex is never held while waiting. Every lease operation
// costs O(log n) at most under it (see leaseSet): nothing scans the store.
type memory struct {
	mu        sync.Mutex
	locks     map[string]*memEntry
	leases    leaseSet
	maxLeases int
	onEvict   func()
	now       func() time.Time
}

type memEntry struct {
	token chan struct{}
	refs  int // holders plus waiters; the entry is deleted when it falls to 0
}

// MemoryOptions tune the in-process Store.
type MemoryOptions struct {
	// MaxLeases bounds the leases kept (100,000 when 0). At the bound, a new
	// lease first takes the place of an expired one, else evicts the live
	// lease closest to its expiry.
	MaxLeases int
	// OnEvict, when set, is called once per live lease evicted at the bound,
	// after the store's lock is released. It must not call the store.
	OnEvict func()
}

// NewMemory returns the in-process Store: correct for a single replica only.
// It starts no goroutine; expired leases are dropped lazily.
func NewMemory() Store {
	return NewMemoryWith(MemoryOptions{})
}

// NewMemoryWith is NewMemory with options.
func NewMemoryWith(o MemoryOptions) Store {
	return newMemory(o, time.Now)
}

func newMemory(o MemoryOptions, now func() time.Time) *memory {
	if o.MaxLeases <= 0 {
		o.MaxLeases = defaultMaxLeases
	}
	return &memory{
		locks:     make(map[string]*memEntry),
		leases:    leaseSet{index: make(map[leaseID]int32)},
		maxLeases: o.MaxLeases,
		onEvict:   o.OnEvict,
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

func (m *memory) GetLease(_ context.Context, key, owner string) (Lease, bool, error) {
	now := m.now().UnixNano()
	m.mu.Lock()
	defer m.mu.Unlock()
	slot, ok := m.leases.index[leaseID{key, owner}]
	if !ok {
		return Lease{}, false, nil
	}
	ml := &m.leases.slots[slot].ml
	if now >= ml.expires {
		m.leases.remove(slot)
		return Lease{}, false, nil
	}
	return ml.lease(), true, nil
}

func (m *memory) PutLease(_ context.Context, key string, l Lease) error {
	now := m.now()
	id := leaseID{key, l.Owner}
	if !now.Before(l.ExpiresAt) {
		m.DropLease(context.Background(), key, l.Owner) // already expired: nothing to keep, and no older lease may survive it
		return nil
	}
	ml := packLease(l) // outside the lock: it copies the body
	m.mu.Lock()
	m.leases.popExpired(now.UnixNano(), expiredPerPut)
	evicted := false
	if slot, ok := m.leases.index[id]; ok {
		m.leases.update(slot, ml)
	} else {
		if len(m.leases.index) >= m.maxLeases {
			// Full of live leases (expired ones went just above): the one
			// closest to expiry goes, it is the one whose loss costs least.
			m.leases.remove(m.leases.heap[0])
			evicted = true
		}
		m.leases.add(id, ml)
	}
	m.mu.Unlock()
	if evicted && m.onEvict != nil {
		m.onEvict()
	}
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

func (m *memory) DropLease(_ context.Context, key, owner string) error {
	m.mu.Lock()
	if slot, ok := m.leases.index[leaseID{key, owner}]; ok {
		m.leases.remove(slot)
	}
	m.mu.Unlock()
	return nil
}

// leaseSet holds the leases by key and in a min-heap on expiry, so that every
// operation is O(1) or O(log n): expired leases are popped from the top, and
// so is the lease evicted at the bound. Leases live in slots, reused through a
// free list, so a lease costs no allocation of its own but its packed bytes
// (the slot of a dropped lease is cleared for the collector).
type leaseSet struct {
	index map[leaseID]int32 // (key, owner) -> slot
	slots []leaseSlot
	free  []int32 // slots not in use
	heap  []int32 // slots in use, a min-heap on expiry (container/heap over *leaseSet)
}

// leaseID names one lease: an owner's on a key.
type leaseID struct{ key, owner string }

type leaseSlot struct {
	key leaseID
	ml  memLease
	pos int32 // the slot's position in heap
}

// add stores a lease under an id not yet in the set.
func (s *leaseSet) add(key leaseID, ml memLease) {
	var slot int32
	if n := len(s.free); n > 0 {
		slot, s.free = s.free[n-1], s.free[:n-1]
	} else {
		slot = int32(len(s.slots))
		s.slots = append(s.slots, leaseSlot{})
	}
	pos := int32(len(s.heap))
	s.slots[slot] = leaseSlot{key: key, ml: ml, pos: pos}
	s.heap = append(s.heap, slot)
	s.index[key] = slot
	heap.Fix(s, int(pos)) // not heap.Push: it would box the slot number
}

// update replaces the lease in slot and moves it to its new place.
func (s *leaseSet) update(slot int32, ml memLease) {
	s.slots[slot].ml = ml
	heap.Fix(s, int(s.slots[slot].pos))
}

// remove deletes the lease in slot.
func (s *leaseSet) remove(slot int32) {
	pos := int(s.slots[slot].pos)
	last := len(s.heap) - 1
	if pos != last {
		s.Swap(pos, last)
	}
	s.heap = s.heap[:last]
	if pos != last {
		heap.Fix(s, pos)
	}
	delete(s.index, s.slots[slot].key)
	s.slots[slot] = leaseSlot{pos: -1}
	s.free = append(s.free, slot)
}

// popExpired removes up to limit leases expired at now, soonest first.
func (s *leaseSet) popExpired(now int64, limit int) {
	for range limit {
		if len(s.heap) == 0 || s.slots[s.heap[0]].ml.expires > now {
			return
		}
		s.remove(s.heap[0])
	}
}

// heap.Interface. add and remove use heap.Fix only; Push and Pop are there
// for the interface, and keep the positions right if they are ever used.
func (s *leaseSet) Len() int { return len(s.heap) }
func (s *leaseSet) Less(i, j int) bool {
	return s.slots[s.heap[i]].ml.expires < s.slots[s.heap[j]].ml.expires
}
func (s *leaseSet) Swap(i, j int) {
	s.heap[i], s.heap[j] = s.heap[j], s.heap[i]
	s.slots[s.heap[i]].pos = int32(i)
	s.slots[s.heap[j]].pos = int32(j)
}
func (s *leaseSet) Push(x any) {
	slot := x.(int32)
	s.slots[slot].pos = int32(len(s.heap))
	s.heap = append(s.heap, slot)
}
func (s *leaseSet) Pop() any {
	n := len(s.heap) - 1
	slot := s.heap[n]
	s.heap = s.heap[:n]
	s.slots[slot].pos = -1
	return slot
}
