package audit

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/composio-guard/composio-guard/internal/lock"
	"github.com/composio-guard/composio-guard/internal/metrics"
)

// Keys of the periodic audit in the lock store (the Redis backend prefixes
// them): the lock one audit holds while it runs, and the lease that carries
// the last complete result to every replica.
const (
	RunLockKey    = "audit:run"
	ResultKey     = "audit:result"
	lockWait      = 2 * time.Second
	maxKeptKeys   = 200_000 // group digests kept for "new since the last audit"
	resultOwner   = "audit"
	resultMIME    = "application/json"
	keepIntervals = 10 // the shared result outlives this many intervals
)

// PeriodicOptions are what the periodic audit needs beside its Settings.
type PeriodicOptions struct {
	BaseURL    *url.URL      // Composio (GUARD_UPSTREAM_URL)
	PendingTTL time.Duration // the guard's GUARD_PENDING_MAX_TTL
	// Store is the proxy's lock store: with Redis, replicas share one
	// audit an interval; with memory, each process audits.
	Store     lock.Store
	Metrics   *metrics.Metrics
	Logger    *zap.Logger
	UserAgent string
	Client    *http.Client // nil: NewClient(), the audit's own
}

// Periodic runs the proxy's background audit: one at a time, rate capped,
// with its own HTTP client (never the lookup's transport, breaker or body
// budget).
type Periodic struct {
	s   Settings
	o   PeriodicOptions
	log *zap.Logger

	id string // this process, as the shared result names its auditor

	mu   sync.Mutex
	last *sharedResult // the last complete result this process knows
}

// sharedResult is the last complete audit, kept in the store.
type sharedResult struct {
	Auditor         string    `json:"auditor"` // a random id of the process that audited
	FinishedAt      time.Time `json:"finished_at"`
	Scanned         int       `json:"scanned"`
	DuplicateGroups int       `json:"duplicate_groups"`
	NewGroups       int       `json:"new_groups"`
	// Digests of the duplicate groups (8 bytes of SHA-256 of the guard's
	// lock key; no id in clear), to tell the next audit's new groups.
	// Absent when there were more than maxKeptKeys.
	Groups []uint64 `json:"groups,omitempty"`
}

// NewPeriodic builds the periodic audit and sets its interval gauge.
func NewPeriodic(s Settings, o PeriodicOptions) *Periodic {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Client == nil {
		o.Client = NewClient()
	}
	if o.Metrics != nil {
		o.Metrics.AuditInterval.Set(s.AuditInterval.Seconds())
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	return &Periodic{s: s, o: o, id: hex.EncodeToString(id[:]), log: o.Logger.With(zap.String("component", "audit"))}
}

// Run audits once at start, then AuditInterval after the end of each
// audit, until ctx ends.
func (p *Periodic) Run(ctx context.Context) {
	for {
		p.Tick(ctx)
		t := time.NewTimer(p.s.AuditInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// Tick is one turn: audit, unless another replica is auditing, or is the
// one that audits (its last result is younger than an interval plus an
// audit's timeout): the replica that audited keeps doing so while it
// succeeds, and another takes over once its results stop. Either way the
// gauges show the newest complete result this process knows.
func (p *Periodic) Tick(ctx context.Context) {
	lctx, cancel := context.WithTimeout(ctx, lockWait)
	unlock, err := p.o.Store.Lock(lctx, RunLockKey, p.s.Timeout()+30*time.Second)
	cancel()
	switch {
	case errors.Is(err, lock.ErrTimeout) && ctx.Err() == nil:
		// Another replica is auditing: show what it found last.
		p.mirror(ctx)
		return
	case err != nil:
		if ctx.Err() == nil {
			p.fail("lock", err)
		}
		return
	}
	defer unlock()
	prev := p.shared(ctx)
	if prev != nil && prev.Auditor != p.id && time.Since(prev.FinishedAt) < p.s.AuditInterval+p.s.Timeout()+2*lockWait {
		p.show(prev) // another replica audits
		return
	}
	if prev == nil {
		p.mu.Lock()
		prev = p.last
		p.mu.Unlock()
	}
	p.audit(ctx, prev)
}

func (p *Periodic) audit(ctx context.Context, prev *sharedResult) {
	actx, cancel := context.WithTimeout(ctx, p.s.Timeout())
	defer cancel()
	rate := time.Duration(float64(time.Second) / p.s.AuditMaxRate)
	low := p.s.AuditMinRemaining
	if low == 0 {
		low = -1 // never slow down
	}
	rep, err := Run(actx, Options{
		BaseURL: p.o.BaseURL, APIPrefix: p.s.AuditAPIPrefix,
		Header: http.Header{"X-Api-Key": {p.s.AuditAPIKey}},
		Client: p.o.Client, UserAgent: p.o.UserAgent, PendingTTL: p.o.PendingTTL,
		Filter:      Filter{IncludeInitiated: p.s.AuditIncludeInitiated},
		MinInterval: rate, LowRemaining: low,
		Warn: func(msg string) { p.log.Warn("audit", zap.String("warning", msg)) },
	})
	if err != nil {
		if ctx.Err() != nil {
			return // shutting down: not an audit failure
		}
		p.fail(Reason(err), err)
		return
	}
	res := &sharedResult{Auditor: p.id, FinishedAt: time.Now(), Scanned: rep.Scanned, DuplicateGroups: rep.Totals.DuplicateGroups}
	if len(rep.Groups) <= maxKeptKeys {
		res.Groups = make([]uint64, len(rep.Groups))
		for i, g := range rep.Groups {
			res.Groups[i] = digest(g)
		}
	}
	res.NewGroups = newGroups(prev, res)
	p.show(res)
	if err := p.put(ctx, res); err != nil {
		p.log.Warn("audit: sharing the result", zap.Error(err))
	}
	p.log.Info("audit done", zap.Int("accounts_scanned", rep.Scanned), zap.Int("pages", rep.Pages),
		zap.Int("duplicate_groups", res.DuplicateGroups), zap.Int("new_duplicate_groups", res.NewGroups),
		zap.Duration("duration", rep.Duration))
}

// newGroups counts the groups of cur that prev did not report: by digest
// when both have them, else by the rise of the count. The first audit has
// nothing to compare with: 0.
func newGroups(prev, cur *sharedResult) int {
	switch {
	case prev == nil:
		return 0
	case prev.Groups == nil && prev.DuplicateGroups > 0 || cur.Groups == nil:
		return max(cur.DuplicateGroups-prev.DuplicateGroups, 0)
	}
	seen := make(map[uint64]bool, len(prev.Groups))
	for _, d := range prev.Groups {
		seen[d] = true
	}
	n := 0
	for _, d := range cur.Groups {
		if !seen[d] {
			n++
		}
	}
	return n
}

// digest is 8 bytes of SHA-256 of the group's lock key (ids folded).
func digest(g Group) uint64 {
	sum := sha256.Sum256([]byte(lock.Key(g.AuthConfigID, g.UserID, g.AccountType)))
	return binary.BigEndian.Uint64(sum[:8])
}

func (p *Periodic) fail(reason string, err error) {
	if p.o.Metrics != nil {
		p.o.Metrics.AuditErrors.WithLabelValues(reason).Inc()
	}
	p.log.Warn("audit failed", zap.String("reason", reason), zap.Error(err))
}

// show sets the gauges from res unless this process knows a newer result.
func (p *Periodic) show(res *sharedResult) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.last != nil && p.last.FinishedAt.After(res.FinishedAt) {
		return
	}
	p.last = res
	if m := p.o.Metrics; m != nil {
		m.AuditDuplicateGroups.Set(float64(res.DuplicateGroups))
		m.AuditNewGroups.Set(float64(res.NewGroups))
		m.AuditScanned.Set(float64(res.Scanned))
		m.AuditLastSuccess.Set(float64(res.FinishedAt.UnixMilli()) / 1000)
	}
}

// mirror shows the shared result, if any.
func (p *Periodic) mirror(ctx context.Context) {
	if res := p.shared(ctx); res != nil {
		p.show(res)
	}
}

// shared reads the last complete result from the store; nil when there is
// none or it cannot be read.
func (p *Periodic) shared(ctx context.Context) *sharedResult {
	l, ok, err := p.o.Store.GetLease(ctx, ResultKey, resultOwner)
	if err != nil || !ok || l.Owner != resultOwner {
		return nil
	}
	var res sharedResult
	if json.Unmarshal(l.Body, &res) != nil {
		return nil
	}
	return &res
}

func (p *Periodic) put(ctx context.Context, res *sharedResult) error {
	b, err := json.Marshal(res)
	if err != nil {
		return err
	}
	return p.o.Store.PutLease(ctx, ResultKey, lock.Lease{
		Owner: resultOwner, Status: http.StatusOK, ContentType: resultMIME, Body: b,
		ExpiresAt: res.FinishedAt.Add(keepIntervals * p.s.AuditInterval),
	})
}
