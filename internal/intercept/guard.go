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
	"errors"
	"fmt"
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
		sandbox: newSandboxPolicy(cfg)}
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
// untouched. Router calls the guard directly without classifying twice.
func (g *Guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	route, prefix := Classify(r.Method, r.URL.EscapedPath())
	switch route {
	case reqscope.RouteLink, reqscope.RouteCreate:
		g.serve(w, r, route, prefix)
	case reqscope.RouteSessionCreate, reqscope.RouteSessionUpdate:
		g.serveSandbox(w, r, route)
	default:
		g.forward.ServeHTTP(w, r)
	}
}

// call is one guarded request on its way through the guard.
type call struct {
	sc       *reqscope.Scope // its Log is the request's logger
	route    string
	prefix   string
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

	body, br := g.readBody(w, r, enforce)
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
	if br != nil {
		if br.status == statusClientGone {
			g.decide(c, DecisionClientGone, br.reason, nil)
			return // nobody to answer; the access log says 499
		}
		g.decide(c, DecisionInvalidRequest, br.reason, nil)
		if enforce {
			apierror.Write(w, &apierror.Error{Message: br.message, Code: br.code, Slug: br.slug, Status: br.status,
				RequestID: sc.RequestID, SuggestedFix: br.fix}, apierror.Options{NoRetry: true, Close: br.close})
			return
		}
		g.forward.ServeHTTP(w, asSent(r, body)) // shadow: forward everything
		return
	}

	c.body = body
	var headerOn, queryOn bool
	c.headerSeen, headerOn = optInHeader(r.Header)
	c.query, c.querySeen, queryOn = stripQuery(r.URL.RawQuery)
	optIn := headerOn || queryOn || c.in.flagOn
	if optIn && g.cfg.AllowMultiple == AllowMultipleFlag {
		g.decide(c, DecisionAllowedMultiple, ReasonOptIn, nil)
		g.forward.ServeHTTP(w, c.outgoing(r, r.Context()))
		return
	}
	if _, ok := g.multi[c.in.AuthConfigID]; ok {
		g.decide(c, DecisionAllowedMultiple, ReasonMultipleAllowed, nil)
		g.forward.ServeHTTP(w, c.outgoing(r, r.Context()))
		return
	}
	c.leasesOn = route == reqscope.RouteLink && g.cfg.PendingAction != PendingOff
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
	accountType := in.AccountType
	if c.prefix == "/api/v3" {
		accountType = accountPrivate // v3 has no account types: every account is private
	}
	cred := credential(r.Header)
	c.key = lock.Key(cred, in.AuthConfigID, in.UserID, accountType)

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
		Header:       listHeader(r.Header, c.sc.RequestID),
	}
	if accountType == accountShared {
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
		reason := ReasonLookupError
		if errors.Is(err, context.DeadlineExceeded) {
			reason = ReasonLookupTimeout
		}
		g.fail(w, r, c, reason, err)
		return
	}

	var active []string
	initiated := false
	for _, a := range res.Items {
		// The filter is the upstream's; the decision is ours.
		if a.UserID != in.UserID || a.AuthConfigID != in.AuthConfigID {
			continue
		}
		switch a.Status {
		case upstream.StatusActive:
			active = append(active, a.ID)
		case upstream.StatusInitiated:
			initiated = true
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
		g.decide(c, DecisionRejectedDuplicate, ReasonActiveAccount, nil)
		if g.cfg.Mode == ModeEnforce {
			apierror.Write(w, &apierror.Error{
				Message: fmt.Sprintf("User %q already has an ACTIVE connected account on auth config %q.", in.UserID, in.AuthConfigID),
				Code:    apierror.CodeMultipleAccounts, Slug: apierror.SlugMultipleAccounts, Status: http.StatusConflict,
				RequestID: c.sc.RequestID,
				SuggestedFix: "Use the existing connected account, or, to create another one on purpose, send the header " +
					apierror.HeaderAllowMultiple + ": true.",
				ExistingAccountIDs: active, UserID: in.UserID, AuthConfigID: in.AuthConfigID,
			}, apierror.Options{NoRetry: true})
			return
		}
		g.forwardGuarded(w, r, c)
		return
	}

	reason := ReasonNoAccount
	if initiated {
		reason = ReasonInitiatedUntracked
	}
	if haveLease && lease.AccountID == "" {
		// An earlier forward's outcome is unknown (its answer was lost): an
		// INITIATED account may be the one it made, and there is nothing to replay.
		if initiated {
			g.leases[leaseHit].Inc()
			g.pendingUnknown(w, r, c)
			return
		}
		g.dropLease(ctx, c)
		haveLease = false
	}
	if haveLease {
		if pendingIn(res.Items, lease.AccountID, in) {
			g.leases[leaseHit].Inc()
			g.pending(w, r, c, lease)
			return
		}
		g.dropLease(ctx, c)
		reason = ReasonLeaseStale
	} else if c.leasesOn {
		g.leases[leaseMiss].Inc()
	}
	g.decide(c, DecisionAllowed, reason, nil)
	g.forwardGuarded(w, r, c)
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

// pending answers a repeat while the first link's account is still INITIATED.
func (g *Guard) pending(w http.ResponseWriter, r *http.Request, c *call, l lock.Lease) {
	if g.cfg.PendingAction == PendingReject {
		g.decide(c, DecisionRejectedPending, ReasonPendingLink, nil)
		if g.cfg.Mode != ModeEnforce {
			g.forwardGuarded(w, r, c)
			return
		}
		apierror.Write(w, &apierror.Error{
			Message: fmt.Sprintf("A connection link for user %q on auth config %q is still pending: connected account %s is INITIATED.",
				c.in.UserID, c.in.AuthConfigID, l.AccountID),
			Code: apierror.CodeLinkPending, Slug: apierror.SlugLinkPending, Status: http.StatusConflict,
			RequestID: c.sc.RequestID,
			SuggestedFix: "Let the user finish the pending link (or wait until it expires), or send the header " +
				apierror.HeaderAllowMultiple + ": true to create another one.",
			ExistingAccountIDs: []string{l.AccountID}, UserID: c.in.UserID, AuthConfigID: c.in.AuthConfigID,
		}, apierror.Options{NoRetry: true})
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

// pendingUnknown refuses a repeat of a link whose first answer was lost while
// an INITIATED account exists: it may be the one that link made, and with no
// answer to replay, forwarding could make a second.
func (g *Guard) pendingUnknown(w http.ResponseWriter, r *http.Request, c *call) {
	g.decide(c, DecisionRejectedPending, ReasonOutcomeUnknown, nil)
	if g.cfg.Mode != ModeEnforce {
		g.forwardGuarded(w, r, c)
		return
	}
	apierror.Write(w, &apierror.Error{
		Message: fmt.Sprintf("An earlier link for user %q on auth config %q may have been created but its answer was lost, and an INITIATED connected account exists.",
			c.in.UserID, c.in.AuthConfigID),
		Code: apierror.CodeLinkPending, Slug: apierror.SlugLinkPending, Status: http.StatusConflict,
		RequestID: c.sc.RequestID,
		SuggestedFix: "List the user's INITIATED connected accounts and use that link, wait until it expires, or send the header " +
			apierror.HeaderAllowMultiple + ": true to create another one.",
		UserID: c.in.UserID, AuthConfigID: c.in.AuthConfigID,
	}, apierror.Options{NoRetry: true})
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
	// x-should-retry is not forced: the clients' own retry of a 503 is welcome.
	apierror.Write(w, &apierror.Error{
		Message: "The duplicate-connection check could not run, so the request was not sent to Composio.",
		Code:    apierror.CodeGuardUnavailable, Slug: apierror.SlugGuardUnavailable, Status: http.StatusServiceUnavailable,
		RequestID:    c.sc.RequestID,
		SuggestedFix: "Retry after the Retry-After delay.",
	}, apierror.Options{RetryAfterSeconds: g.cfg.RetryAfterSeconds})
}

// forwardGuarded forwards a checked request and, for a link, keeps its 2xx
// answer as the key's pending lease.
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

// afterLink keeps what a forwarded link's answer says for its repeats.
func (g *Guard) afterLink(ctx context.Context, c *call, cw *captureWriter, aborted bool) {
	if !aborted && cw.status >= 400 && cw.status < 500 {
		return // Composio refused the link: nothing was made
	}
	if aborted || cw.status < 200 || cw.status > 299 || cw.truncated || !g.storeLease(ctx, c, cw) {
		// No answer, a 5xx, or a 2xx that cannot be read: Composio may or may
		// not have made the account. Remember that, so a retry does not make a second.
		g.putLease(ctx, c, lock.Lease{ExpiresAt: time.Now().Add(min(g.cfg.PendingMaxTTL, unknownOutcomeTTL))})
	}
}

// unknownOutcomeTTL bounds the memory of a link whose answer was lost: about
// a link's own life at Composio.
const unknownOutcomeTTL = 10 * time.Minute

// storeLease keeps a readable 2xx link answer as the key's lease.
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
	id, expires := linkAnswer(body)
	if id == "" {
		return false
	}
	now := time.Now()
	if limit := now.Add(g.cfg.PendingMaxTTL); expires.IsZero() || expires.After(limit) {
		expires = limit
	}
	g.putLease(ctx, c, lock.Lease{AccountID: id, Status: cw.status, ContentType: cw.Header().Get("Content-Type"), Body: body, ExpiresAt: expires})
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

// pendingIn reports whether the lease's account is listed as INITIATED for
// this user and auth config.
func pendingIn(items []upstream.Account, id string, in guarded) bool {
	for _, a := range items {
		if a.ID == id && a.Status == upstream.StatusInitiated && a.UserID == in.UserID && a.AuthConfigID == in.AuthConfigID {
			return true
		}
	}
	return false
}

// lookupStatuses is shared by every query; listers only read it.
var lookupStatuses = []string{upstream.StatusActive, upstream.StatusInitiated}

// Credential headers: exactly one scheme per request reaches Composio.
var credentialHeaders = []string{"X-Api-Key", "X-User-Api-Key", "X-Org-Id", "X-Project-Id", "X-Org-Api-Key"}

// credential joins the caller's credential header values into the lock key's
// credential part (hashed by lock.Key, never stored or logged).
func credential(h http.Header) string {
	var b strings.Builder
	for _, name := range credentialHeaders {
		for _, v := range h[name] {
			b.WriteString(name)
			b.WriteByte(0)
			b.WriteString(v)
			b.WriteByte(0)
		}
	}
	return b.String()
}

// listHeader picks only the caller's credential headers and the request id,
// their values shared unchanged (nothing on the way out changes them), in a
// map with room for the two headers the list client adds.
func listHeader(h http.Header, requestID string) http.Header {
	out := make(http.Header, 4)
	for _, name := range credentialHeaders {
		if vs := h[name]; len(vs) > 0 {
			out[name] = vs
		}
	}
	if vs := h[apierror.HeaderRequestID]; len(vs) == 1 && vs[0] == requestID {
		out[apierror.HeaderRequestID] = vs // as RequestID set it
	} else if requestID != "" {
		out.Set(apierror.HeaderRequestID, requestID)
	}
	return out
}

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
	if n := strconv.Itoa(len(b)); r.Header.Get("Content-Length") != n {
		r.Header.Set("Content-Length", n)
	}
	if len(b) == 0 {
		r.Body, r.GetBody = http.NoBody, nil
	}
}
