// Package intercept owns the guarded routes: matching them on the canonical
// path, capturing and parsing their bodies, the opt-in flag, the
// duplicate-connection decision (per-key lock, lookup, pending-link leases),
// the sandbox tier policy of the Tool Router session routes, and the answers
// the guard writes itself.
package intercept

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/composio-guard/composio-guard/internal/apierror"
	"github.com/composio-guard/composio-guard/internal/config"
	"github.com/composio-guard/composio-guard/internal/lock"
	"github.com/composio-guard/composio-guard/internal/logging"
	"github.com/composio-guard/composio-guard/internal/metrics"
	"github.com/composio-guard/composio-guard/internal/reqscope"
	"github.com/composio-guard/composio-guard/internal/upstream"
)

// Lister runs the guard's lookup: the caller's own list query, all pages.
// A *upstream.StatusError is an answer to hand back to the caller (401, 403,
// 429); any other error means the lookup could not run.
type Lister interface {
	List(ctx context.Context, q upstream.ListQuery) (upstream.ListResult, error)
}

// Config is the guard's policy. Zero values take the defaults of NewGuard.
type Config struct {
	Mode                string        // "enforce" | "shadow" | "off"
	FailureMode         string        // "closed" | "open"
	MaxBodyBytes        int64         // cap on a guarded body, on the wire and decompressed
	BodyBudgetBytes     int64         // cap on all guarded bodies held at once (see budget.go)
	BodyReadTimeout     time.Duration // bound on receiving a guarded body (slow clients get 408)
	LookupTimeout       time.Duration // bounds the whole lookup (all pages)
	LockWait            time.Duration // longest wait for the per-key lock
	LockTTL             time.Duration // > LookupTimeout + upstream timeout; a forward under a lock that lapses (Redis) ends before it
	PendingAction       string        // "replay" | "reject" | "off"
	PendingMaxTTL       time.Duration // cap on a lease's life (the link's expires_at otherwise)
	AllowMultiple       string        // "flag" | "never"
	MultipleAuthConfigs []string      // auth configs on which multiple accounts are always allowed
	RetryAfterSeconds   int           // Retry-After on the proxy's 503s

	// Tool Router sandbox tier policy (config.Validate has checked them).
	// Empty means no restriction and no default; tiers are validated anyway.
	SandboxMaxSize      config.SandboxSize   // ceiling
	SandboxAllowedSizes []config.SandboxSize // allowed set
	SandboxDefaultSize  config.SandboxSize   // inserted on a session create that names no tier
}

// Guard serves the guarded routes.
type Guard struct {
	cfg     Config
	lister  Lister
	store   lock.Store
	forward http.Handler
	m       *metrics.Metrics
	backend string
	multi   map[string]struct{}
	work    time.Duration // deadline of the guarded work, inside LockTTL; 0 when locks never lapse
	sandbox sandboxPolicy
	bodies  *byteBudget // guarded bodies in flight, all requests together

	// Metric children resolved once: label lookups cost more than the count.
	lockWait  prometheus.Observer
	leases    map[string]prometheus.Counter // by result
	decisions sync.Map                      // decisionKey -> prometheus.Counter
}

type decisionKey struct{ route, decision string }

// decisionCounter is the decisions_total child of route and decision, in the guard's mode.
func (g *Guard) decisionCounter(route, decision string) prometheus.Counter {
	k := decisionKey{route, decision}
	if c, ok := g.decisions.Load(k); ok {
		return c.(prometheus.Counter)
	}
	c := g.m.Decisions.WithLabelValues(route, decision, g.cfg.Mode)
	g.decisions.Store(k, c)
	return c
}

// NewGuard builds the guard. forward sends a request to Composio (the one
// ReverseProxy); m may be nil in tests that do not read metrics.
func NewGuard(cfg Config, lister Lister, store lock.Store, forward http.Handler, m *metrics.Metrics) *Guard {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	defd := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.Mode, ModeEnforce)
	def(&cfg.FailureMode, FailClosed)
	def(&cfg.PendingAction, PendingReplay)
	def(&cfg.AllowMultiple, AllowMultipleFlag)
	if cfg.BodyReadTimeout <= 0 {
		cfg.BodyReadTimeout = 15 * time.Second
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	if cfg.BodyBudgetBytes <= 0 {
		cfg.BodyBudgetBytes = defaultBodyBudget
	}
	defd(&cfg.LookupTimeout, 5*time.Second)
	defd(&cfg.LockWait, 10*time.Second)
	defd(&cfg.LockTTL, 60*time.Second)
	defd(&cfg.PendingMaxTTL, 10*time.Minute)
	if cfg.RetryAfterSeconds <= 0 {
		cfg.RetryAfterSeconds = 1
	}
	if m == nil {
		m = metrics.New(metrics.Build{})
	}
	g := &Guard{cfg: cfg, lister: lister, store: store, forward: forward, m: m,
		backend: store.Backend(), multi: make(map[string]struct{}, len(cfg.MultipleAuthConfigs)),
		sandbox: newSandboxPolicy(cfg), bodies: newByteBudget(cfg.BodyBudgetBytes)}
	for _, id := range cfg.MultipleAuthConfigs {
		g.multi[id] = struct{}{}
	}
	g.lockWait = m.LockWait.WithLabelValues(g.backend)
	g.leases = make(map[string]prometheus.Counter, 4)
	for _, r := range []string{leaseHit, leaseMiss, leaseStale, leaseStored} {
		g.leases[r] = m.Leases.WithLabelValues(r)
	}
	// The work ends before the lock's TTL so that a Redis lock never lapses
	// while its holder still acts on it. A memory lock does not lapse.
	if _, ok := store.(lock.Expiring); ok {
		g.work = cfg.LockTTL - min(cfg.LockTTL/10, time.Second)
	}
	return g
}

// ServeHTTP guards a request on a guarded route and forwards anything else
// untouched.
func (g *Guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.dispatch(w, r, g.forward)
}

// call is one guarded request on its way through the guard.
type call struct {
	sc       *reqscope.Scope // its Log is the request's logger
	route    string
	prefix   string
	id       identity
	in       guarded
	key      string
	lookup   time.Duration
	leasesOn bool

	// What outgoing needs to build the request to forward, which is only
	// done when one is forwarded (a 409 never builds it).
	body       captured
	headerSeen bool   // the opt-in header is present
	querySeen  bool   // the opt-in query parameter is present
	query      string // the raw query without it
	// begin is when check began; the forward must end by begin+Guard.work.
	begin time.Time
	// digest of the members that shape the create (see requestDigest); "" until needed.
	digest string
}

func (g *Guard) serve(w http.ResponseWriter, r *http.Request, route, prefix string) {
	sc := reqscope.From(r.Context())
	sc.Route = route
	c := &call{sc: sc, route: route, prefix: prefix}
	if g.cfg.Mode == ModeOff {
		g.decide(c, DecisionOff, ReasonModeOff, nil)
		g.forward.ServeHTTP(w, r)
		return
	}
	enforce := g.cfg.Mode == ModeEnforce

	// Who the request acts as is read once, from the headers the forward
	// will really carry; everything after uses that one value.
	if h, changed := forwardHeader(r.Header); changed {
		r = r.WithContext(r.Context())
		r.Header = h
	}
	var body captured
	var br *badRequest
	if c.id, br = deriveIdentity(r.Header, sc.RequestID); br != nil {
		br.close = true // the body is left unread
	} else {
		body, br = g.readBody(w, r, enforce)
	}
	if br == nil {
		c.in, br = parseBody(route, body.plain)
		if br == nil && c.in.flagFound && body.gzip {
			br = &badRequest{
				status: http.StatusBadRequest, slug: apierror.SlugBadRequest, code: apierror.CodeBadRequest,
				reason: ReasonFlagInCompressed, message: "allow_multiple cannot be read from a compressed body: the proxy would have to change it",
				fix: "Send the header " + apierror.HeaderAllowMultiple + ": true instead of the allow_multiple body member.",
			}
		}
	}
	if br == nil {
		var headerOn, queryOn bool
		c.headerSeen, headerOn = optInHeader(r.Header)
		c.query, c.querySeen, queryOn = stripQuery(r.URL.RawQuery)
		c.in.optIn = headerOn || queryOn || c.in.flagOn
		if c.query != "" && !c.in.optIn {
			// The lookup cannot carry them: a parameter Composio might read
			// as who or what to create for would escape the check.
			br = bad(ReasonQueryParams, "a request that creates a connected account takes no query parameters unless it opts in to multiple accounts (got %q)", c.query)
			br.fix = "Send the request without query parameters, as the SDKs do."
		}
	}
	if br != nil {
		if br.status == statusClientGone {
			g.decide(c, DecisionClientGone, br.reason, nil)
			return // nobody to answer; the access log says 499
		}
		g.decide(c, DecisionInvalidRequest, br.reason, nil)
		if enforce {
			apierror.Write(w, &apierror.Error{Message: br.message, Code: br.code, Slug: br.slug, Status: br.status,
				RequestID: sc.RequestID, SuggestedFix: br.fix}, apierror.Options{NoRetry: br.status != http.StatusServiceUnavailable, Close: br.close})
			return
		}
		g.forward.ServeHTTP(w, asSent(r, body)) // shadow: forward everything
		return
	}

	c.body = body
	if c.in.optIn && g.cfg.AllowMultiple == AllowMultipleFlag {
		g.decide(c, DecisionAllowedMultiple, ReasonOptIn, nil)
		g.forward.ServeHTTP(w, c.outgoing(r, r.Context()))
		return
	}
	if _, ok := g.multi[c.in.AuthConfigID]; ok {
		g.decide(c, DecisionAllowedMultiple, ReasonMultipleAllowed, nil)
		g.forward.ServeHTTP(w, c.outgoing(r, r.Context()))
		return
	}
	c.leasesOn = g.cfg.PendingAction != PendingOff
	g.check(w, r, c)
}

// check runs the duplicate check under the per-key lock and answers or
// forwards. r is the request as received: only what is forwarded is rebuilt
// (see call.outgoing).
func (g *Guard) check(w http.ResponseWriter, r *http.Request, c *call) {
	// The lock wait, the lookup and the lease calls have bounds of their own;
	// only a forward needs the work deadline (see forwardGuarded).
	ctx := r.Context()
	c.begin = time.Now()
	in := c.in
	// One key for every create of (auth config, user, account type): link
	// and legacy create, any credential, any API version. The account type
	// is the one the request carries, so it is the one forwarded.
	c.key = lock.Key(in.AuthConfigID, in.UserID, in.AccountType)

	unlock, err := g.lock(ctx, c.key)
	g.lockWait.Observe(time.Since(c.begin).Seconds())
	if err != nil {
		reason := ReasonLockError // counted by the backend itself
		if errors.Is(err, lock.ErrTimeout) {
			reason = ReasonLockTimeout
			if !errors.Is(ctx.Err(), context.Canceled) { // the wait ran out; a caller gone says nothing about the lock
				g.m.LockErrors.WithLabelValues(g.backend, lockErrTimeout).Inc()
			}
		}
		g.fail(w, r, c, reason, err)
		return
	}
	defer unlock()

	q := upstream.ListQuery{
		APIPrefix:    c.prefix,
		UserID:       in.UserID,
		AuthConfigID: in.AuthConfigID,
		Statuses:     lookupStatuses,
		Header:       c.id.lookup,
		Tenant:       c.id.owner,
		StopAtActive: true, // one ACTIVE account decides: no need to read further
	}
	if in.AccountType == accountShared {
		q.AccountType = accountShared
	}
	qctx, qcancel := context.WithTimeout(ctx, g.cfg.LookupTimeout)
	start := time.Now()
	res, err := g.lister.List(qctx, q)
	qcancel()
	c.lookup = time.Since(start) // for the decision line; the list client's transport adds it to the scope
	if err != nil {
		if se, ok := errors.AsType[*upstream.StatusError](err); ok {
			g.decide(c, DecisionLookupRefused, ReasonLookupStatus, nil)
			if g.cfg.Mode == ModeEnforce {
				writeStatusError(w, se, c.sc.RequestID)
				return
			}
			g.forwardGuarded(w, r, c)
			return
		}
		if upstream.CallerCaused(err) && !errors.Is(ctx.Err(), context.Canceled) {
			g.unverifiable(w, r, c, err)
			return
		}
		reason := ReasonLookupError
		if errors.Is(err, context.DeadlineExceeded) {
			reason = ReasonLookupTimeout
		}
		g.fail(w, r, c, reason, err)
		return
	}

	// An item Composio returned for the query counts unless its own fields
	// contradict the query (Account.Matches).
	var active []string
	var initiated []upstream.Account
	for _, a := range res.Items {
		if !a.Matches(q) {
			continue
		}
		switch a.Status {
		case upstream.StatusActive:
			active = append(active, a.ID)
		case upstream.StatusInitiated:
			initiated = append(initiated, a)
		}
	}

	var lease lock.Lease
	haveLease := false
	if c.leasesOn {
		lease, haveLease, err = g.store.GetLease(ctx, c.key)
		if err != nil {
			g.fail(w, r, c, ReasonLeaseError, err)
			return
		}
	}

	if len(active) > 0 {
		if haveLease {
			g.dropLease(ctx, c)
		}
		g.refuse(w, r, c, DecisionRejectedDuplicate, ReasonActiveAccount, answerDuplicate(c, active))
		return
	}
	if !c.leasesOn { // GUARD_PENDING_ACTION=off: pending links do not block
		reason := ReasonNoAccount
		if len(initiated) > 0 {
			reason = ReasonPendingIgnored
		}
		g.decide(c, DecisionAllowed, reason, nil)
		g.forwardGuarded(w, r, c)
		return
	}

	reason := ReasonNoAccount
	if haveLease && lease.AccountID == "" {
		// An earlier forward's outcome is unknown (its answer was lost): an
		// INITIATED account may be the one it made, and there is nothing to replay.
		if len(initiated) > 0 {
			g.leases[leaseHit].Inc()
			g.refuse(w, r, c, DecisionRejectedPending, ReasonOutcomeUnknown, answerOutcomeUnknown(c, initiated))
			return
		}
		g.dropLease(ctx, c)
		haveLease = false
	}
	if haveLease {
		if listed(initiated, lease.AccountID) {
			g.leases[leaseHit].Inc()
			g.pending(w, r, c, lease)
			return
		}
		g.dropLease(ctx, c)
		reason = ReasonLeaseStale
	} else {
		g.leases[leaseMiss].Inc()
	}
	// A pending link this proxy holds no answer for (made with another
	// credential, on a replica without shared state, or around the proxy)
	// blocks as long as it may still be completed.
	if id := livePending(initiated, time.Now(), g.cfg.PendingMaxTTL); id != "" {
		g.refuse(w, r, c, DecisionRejectedPending, ReasonPendingUntracked, answerPending(c, id))
		return
	}
	g.decide(c, DecisionAllowed, reason, nil)
	g.forwardGuarded(w, r, c)
}

// livePending returns the id of the oldest INITIATED account still within
// its lifetime: created less than maxTTL ago. An account without a readable
// created_at counts as live: the side that cannot make a duplicate.
func livePending(initiated []upstream.Account, now time.Time, maxTTL time.Duration) string {
	id := ""
	var oldest time.Time
	for _, a := range initiated {
		if !a.CreatedAt.IsZero() && !now.Before(a.CreatedAt.Add(maxTTL)) {
			continue
		}
		if id == "" || (!a.CreatedAt.IsZero() && a.CreatedAt.Before(oldest)) {
			id, oldest = a.ID, a.CreatedAt
		}
	}
	return id
}

// listed reports whether the account id is among the INITIATED accounts.
func listed(initiated []upstream.Account, id string) bool {
	for _, a := range initiated {
		if a.ID == id {
			return true
		}
	}
	return false
}

// lock takes the per-key lock, waiting at most LockWait. A free lock of a
// backend that can take it at once costs no context and no timer.
func (g *Guard) lock(ctx context.Context, key string) (lock.Unlock, error) {
	if tl, ok := g.store.(lock.TryLocker); ok && ctx.Err() == nil {
		if u, ok := tl.TryLock(key, g.cfg.LockTTL); ok {
			return u, nil
		}
	}
	lctx, cancel := context.WithTimeout(ctx, g.cfg.LockWait)
	defer cancel()
	return g.store.Lock(lctx, key, g.cfg.LockTTL)
}

// pending answers a repeat while the first create's account is still
// INITIATED: a replay of the first answer when the repeat is the same
// request from the same credential, else a refusal naming the account.
func (g *Guard) pending(w http.ResponseWriter, r *http.Request, c *call, l lock.Lease) {
	switch {
	case g.cfg.PendingAction == PendingReject:
		g.refuse(w, r, c, DecisionRejectedPending, ReasonPendingLink, answerPending(c, l.AccountID))
		return
	case l.Owner != c.id.owner:
		g.refuse(w, r, c, DecisionRejectedPending, ReasonPendingOtherCaller, answerPending(c, l.AccountID))
		return
	case l.Request != c.requestDigest():
		g.refuse(w, r, c, DecisionRejectedPending, ReasonPendingDiffers, answerPending(c, l.AccountID))
		return
	}
	g.decide(c, DecisionReplayedPending, ReasonPendingLink, nil)
	if g.cfg.Mode != ModeEnforce {
		g.forwardGuarded(w, r, c)
		return
	}
	h := w.Header()
	if l.ContentType != "" {
		h.Set("Content-Type", l.ContentType)
	}
	h.Set("Content-Length", strconv.Itoa(len(l.Body)))
	h.Set(apierror.HeaderGuard, "replayed")
	h.Set(apierror.HeaderRequestID, c.sc.RequestID)
	w.WriteHeader(l.Status)
	_, _ = w.Write(l.Body)
}

// refuse records a refusal and, in enforce mode, writes its answer; shadow
// mode forwards the request instead.
func (g *Guard) refuse(w http.ResponseWriter, r *http.Request, c *call, decision, reason string, a answer) {
	g.decide(c, decision, reason, nil)
	if g.cfg.Mode != ModeEnforce {
		g.forwardGuarded(w, r, c)
		return
	}
	a.write(w, c.sc.RequestID)
}

// unverifiable refuses a request whose check cannot be completed because of
// what the request itself asks: Composio refused the query (414, 431, 400...),
// the user has more accounts than the lookup reads, or an item cannot be
// classified. Such a request is never forwarded unchecked, whatever the
// failure mode, and it says nothing about Composio's health.
func (g *Guard) unverifiable(w http.ResponseWriter, r *http.Request, c *call, err error) {
	reason := ReasonLookupRejected
	switch {
	case errors.Is(err, upstream.ErrTooManyPages):
		reason = ReasonTooManyAccounts
	case errors.Is(err, upstream.ErrUnknownItem):
		reason = ReasonUnknownItem
	}
	g.decide(c, DecisionRejectedUnverifiable, reason, err)
	if g.cfg.Mode != ModeEnforce {
		g.forwardGuarded(w, r, c)
		return
	}
	answerUnverifiable(c, reason).write(w, c.sc.RequestID)
}

// fail handles a check that could not run, by the failure mode.
func (g *Guard) fail(w http.ResponseWriter, r *http.Request, c *call, reason string, err error) {
	if errors.Is(r.Context().Err(), context.Canceled) {
		// The client went away (the work deadline would be DeadlineExceeded):
		// the check failing says nothing about Composio, and nobody is there to answer.
		g.decide(c, DecisionClientGone, ReasonClientGone, err)
		return
	}
	if g.cfg.FailureMode == FailOpen {
		g.decide(c, DecisionFailedOpen, reason, err)
		g.forwardGuarded(w, r, c)
		return
	}
	g.decide(c, DecisionFailedClosed, reason, err)
	if g.cfg.Mode != ModeEnforce {
		g.forwardGuarded(w, r, c)
		return
	}
	answerUnavailable(g.cfg.RetryAfterSeconds).write(w, c.sc.RequestID)
}

// forwardGuarded forwards a checked request and keeps its 2xx answer as the
// key's pending lease (link and legacy create alike).
func (g *Guard) forwardGuarded(w http.ResponseWriter, r *http.Request, c *call) {
	// The forward ends before the lock's TTL, so that a Redis lock never
	// lapses while its holder still acts on it.
	ctx := r.Context()
	if g.work > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, c.begin.Add(g.work))
		defer cancel()
	}
	r = c.outgoing(r, ctx)
	if !c.leasesOn {
		g.forward.ServeHTTP(w, r)
		return
	}
	cw := &captureWriter{ResponseWriter: w}
	defer func() {
		// ReverseProxy aborts with a panic (http.ErrAbortHandler) when the
		// answer breaks after its headers went out: remember the link first.
		p := recover()
		g.afterLink(r.Context(), c, cw, p != nil)
		if p != nil {
			panic(p)
		}
	}()
	g.forward.ServeHTTP(cw, r)
}

// afterLink keeps what a forwarded create's answer says for its repeats.
func (g *Guard) afterLink(ctx context.Context, c *call, cw *captureWriter, aborted bool) {
	if !aborted && cw.status >= 400 && cw.status < 500 {
		return // Composio refused the link: nothing was made
	}
	if aborted || cw.status < 200 || cw.status > 299 || cw.truncated || !g.storeLease(ctx, c, cw) {
		// No answer, a 5xx, or a 2xx that cannot be read: Composio may or may
		// not have made the account. Remember that, so a retry does not make a second.
		g.putLease(ctx, c, lock.Lease{Owner: c.id.owner, Request: c.requestDigest(),
			ExpiresAt: time.Now().Add(min(g.cfg.PendingMaxTTL, unknownOutcomeTTL))})
	}
}

// unknownOutcomeTTL bounds the memory of a link whose answer was lost: about
// a link's own life at Composio.
const unknownOutcomeTTL = 10 * time.Minute

// storeLease keeps a readable 2xx create answer as the key's lease.
func (g *Guard) storeLease(ctx context.Context, c *call, cw *captureWriter) bool {
	body := cw.body
	switch enc := strings.TrimSpace(cw.Header().Get("Content-Encoding")); {
	case enc == "" || strings.EqualFold(enc, "identity"):
	case strings.EqualFold(enc, "gzip"):
		// Kept decompressed: a replay is sent without Content-Encoding.
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return false
		}
		if body, err = io.ReadAll(io.LimitReader(zr, leaseBodyCap+1)); err != nil || len(body) > leaseBodyCap {
			return false
		}
	default:
		return false
	}
	id, expires := createAnswer(c.route, body)
	if id == "" {
		return false
	}
	now := time.Now()
	if limit := now.Add(g.cfg.PendingMaxTTL); expires.IsZero() || expires.After(limit) {
		expires = limit
	}
	g.putLease(ctx, c, lock.Lease{AccountID: id, Owner: c.id.owner, Request: c.requestDigest(),
		Status: cw.status, ContentType: cw.Header().Get("Content-Type"), Body: body, ExpiresAt: expires})
	return true
}

// putLease writes a lease even when the client has gone: what Composio did
// must be remembered for the retry that follows. The backend bounds the
// write itself (a Redis call has its GUARD_REDIS_TIMEOUT).
func (g *Guard) putLease(ctx context.Context, c *call, l lock.Lease) {
	ctx = context.WithoutCancel(ctx)
	if err := g.store.PutLease(ctx, c.key, l); err != nil {
		c.sc.Log().Warn("pending-link lease not stored", zap.String("route", c.route), zap.Error(err))
		return
	}
	g.leases[leaseStored].Inc()
}

func (g *Guard) dropLease(ctx context.Context, c *call) {
	g.leases[leaseStale].Inc()
	if err := g.store.DropLease(ctx, c.key); err != nil {
		c.sc.Log().Warn("stale pending-link lease not dropped", zap.String("route", c.route), zap.Error(err))
	}
}

// decide records and counts one decision. The request's access line carries
// it (decision, reason, mode, lookup_duration); a failure to check is also
// logged at WARN with its error, and every decision at DEBUG.
func (g *Guard) decide(c *call, decision, reason string, err error) {
	c.sc.Decision, c.sc.Reason, c.sc.Mode = decision, reason, g.cfg.Mode
	g.decisionCounter(c.route, decision).Inc()
	level := zap.DebugLevel
	if decision == DecisionFailedOpen || decision == DecisionFailedClosed {
		level = zap.WarnLevel
	}
	// Check first: the fields are only built when the line will be written.
	if ce := c.sc.Check(level, "guard decision"); ce != nil {
		fields := []zap.Field{
			zap.String(logging.FieldRoute, c.route), zap.String(logging.FieldDecision, decision),
			zap.String(logging.FieldReason, reason), zap.String(logging.FieldMode, g.cfg.Mode),
			zap.Duration(logging.FieldLookupDuration, c.lookup),
		}
		if err != nil {
			fields = append(fields, zap.Error(err))
		}
		ce.Write(fields...)
	}
}

// lookupStatuses is shared by every query; listers only read it.
var lookupStatuses = []string{upstream.StatusActive, upstream.StatusInitiated}

// writeStatusError hands a refused lookup's answer back as the upstream sent it.
func writeStatusError(w http.ResponseWriter, se *upstream.StatusError, requestID string) {
	h := w.Header()
	for k, vs := range se.Header {
		switch http.CanonicalHeaderKey(k) {
		case "Connection", "Keep-Alive", "Transfer-Encoding", "Content-Length", "Content-Encoding", "Trailer", "Upgrade":
			continue
		}
		h[http.CanonicalHeaderKey(k)] = append([]string(nil), vs...)
	}
	h.Set("Content-Length", strconv.Itoa(len(se.Body)))
	if requestID != "" {
		h.Set(apierror.HeaderRequestID, requestID)
	}
	w.WriteHeader(se.StatusCode)
	_, _ = w.Write(se.Body)
}

// requestDigest is a digest of what shapes the create besides its key: the
// route and the body without the opt-in member, compacted (whitespace does
// not count; member order does). A replay needs it to match, so a repeat
// with another callback_url, alias or experimental block is never handed
// the first request's link.
func (c *call) requestDigest() string {
	if c.digest != "" {
		return c.digest
	}
	b := c.body.plain
	if c.in.flagFound {
		b = stripFlag(b, c.in.flag)
	}
	var stack [1024]byte // a link body fits: no allocation but the digest's string
	buf := append(append(stack[:0], c.route...), 0)
	buf = appendCompact(buf, b)
	d := sha256.Sum256(buf)
	c.digest = hex.EncodeToString(d[:16])
	return c.digest
}

// appendCompact appends JSON b without the white space between its tokens
// (b is valid JSON: parseBody checked it), as json.Compact would write it.
func appendCompact(dst, b []byte) []byte {
	inString, escaped := false, false
	from := 0
	for i, ch := range b {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case ch == '\\':
				escaped = true
			case ch == '"':
				inString = false
			}
		case ch == '"':
			inString = true
		case ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r':
			dst = append(dst, b[from:i]...)
			from = i + 1
		}
	}
	return append(dst, b[from:]...)
}

// refuseDisguised refuses a request that could reach a guarded route at a
// server reading its method otherwise than the guard does (a lowercase
// method, a method-override header). Shadow mode forwards it.
func (g *Guard) refuseDisguised(w http.ResponseWriter, r *http.Request, route string) {
	c := &call{sc: reqscope.From(r.Context()), route: route}
	g.decide(c, DecisionInvalidRequest, ReasonDisguised, nil)
	if g.cfg.Mode != ModeEnforce {
		g.forward.ServeHTTP(w, r)
		return
	}
	br := bad(ReasonDisguised, "the request names its method as %q (or overrides it with a header) on a route that creates connected accounts or sessions", r.Method)
	br.fix = "Send the method in upper case (POST, PATCH) and no X-HTTP-Method-Override, X-HTTP-Method or X-Method-Override header."
	apierror.Write(w, &apierror.Error{Message: br.message, Code: br.code, Slug: br.slug, Status: br.status,
		RequestID: c.sc.RequestID, SuggestedFix: br.fix}, apierror.Options{NoRetry: true, Close: true})
}

// outgoing is the request to forward after a successful parse, under ctx:
// the opt-in flag gone from header, query and body, and the body restored.
// The caller's request stays as received: its header map is shared when
// nothing in it changes (the ReverseProxy copies it before it edits).
func (c *call) outgoing(r *http.Request, ctx context.Context) *http.Request {
	b := c.body.raw
	if c.in.flagFound { // never with gzip: that is refused before
		b = stripFlag(c.body.raw, c.in.flag)
	}
	out := r.WithContext(ctx) // shallow copy
	if c.headerSeen || r.Header.Get("Content-Length") != strconv.Itoa(len(b)) {
		out.Header = r.Header.Clone()
		out.Header.Del(apierror.HeaderAllowMultiple)
	}
	if c.querySeen {
		u := *r.URL
		u.RawQuery, u.ForceQuery = c.query, false
		out.URL = &u
	}
	setBody(out, b)
	return out
}

// asSent restores a body the guard read, unchanged, for a shadow-mode forward.
func asSent(r *http.Request, body captured) *http.Request {
	if !body.read {
		return r
	}
	out := r.WithContext(r.Context())
	if body.tail != nil {
		out.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body.raw), body.tail))
		out.GetBody = nil
		return out
	}
	out.Header = r.Header.Clone()
	setBody(out, body.raw)
	return out
}

// setBody installs b as the request body, with a matching length.
func setBody(r *http.Request, b []byte) {
	r.Body = io.NopCloser(bytes.NewReader(b))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	r.ContentLength = int64(len(b))
	r.TransferEncoding = nil
	r.Trailer = nil // sent with a fixed length: no trailer (a second credential, say) follows
	if n := strconv.Itoa(len(b)); r.Header.Get("Content-Length") != n {
		r.Header.Set("Content-Length", n)
	}
	if len(b) == 0 {
		r.Body, r.GetBody = http.NoBody, nil
	}
}
