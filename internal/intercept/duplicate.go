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
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/composio-guard/composio-guard/internal/apierror"
	"github.com/composio-guard/composio-guard/internal/lock"
	"github.com/composio-guard/composio-guard/internal/metrics"
	"github.com/composio-guard/composio-guard/internal/reqscope"
	"github.com/composio-guard/composio-guard/internal/upstream"
)

// duplicatePolicy is the duplicate-connection guard of the routes that
// create a connected account (link, legacy create): under a per-key lock it
// asks Composio for the user's accounts and refuses a duplicate, replays or
// refuses a repeat while a link is pending, and keeps the forwarded answer
// as the key's lease.
type duplicatePolicy struct {
	tools         *bodyTools
	lister        Lister
	sessions      SessionReader // nil: a session link cannot be checked (failure mode)
	store         lock.Store
	m             *metrics.Metrics
	allowMultiple bool // the opt-in is honoured (GUARD_ALLOW_MULTIPLE=flag)
	pending       PendingAction
	pendingMaxTTL time.Duration
	lookupTimeout time.Duration
	lockWait      time.Duration
	lockTTL       time.Duration
	multi         map[string]struct{}
	work          time.Duration // deadline of the guarded work, inside lockTTL

	// Metric children resolved once: label lookups cost more than the count.
	backend     string
	lockWaitObs prometheus.Observer
	leases      map[string]prometheus.Counter // by result
}

func newDuplicatePolicy(cfg Config, tools *bodyTools, lister Lister, store lock.Store, m *metrics.Metrics) *duplicatePolicy {
	p := &duplicatePolicy{tools: tools, lister: lister, store: store, m: m,
		allowMultiple: cfg.AllowMultiple == AllowMultipleFlag, pending: cfg.PendingAction, pendingMaxTTL: cfg.PendingMaxTTL,
		lookupTimeout: cfg.LookupTimeout, lockWait: cfg.LockWait, lockTTL: cfg.LockTTL,
		multi: make(map[string]struct{}, len(cfg.MultipleAuthConfigs)), backend: store.Backend()}
	for _, id := range cfg.MultipleAuthConfigs {
		p.multi[id] = struct{}{}
	}
	p.lockWaitObs = m.LockWait.WithLabelValues(p.backend)
	results := LeaseResults()
	p.leases = make(map[string]prometheus.Counter, len(results))
	for _, r := range results {
		p.leases[r] = m.Leases.WithLabelValues(r)
	}
	// The work ends before the lock's TTL so that a Redis lock never lapses
	// while its holder still acts on it. A memory lock does not lapse, but
	// the same deadline bounds how long one stalled forward (an answer body
	// that never ends) keeps every other create of its key waiting.
	if cfg.LockTTL > 0 {
		p.work = cfg.LockTTL - min(cfg.LockTTL/10, time.Second)
	}
	return p
}

// linkCall is what the duplicate guard knows of one request.
type linkCall struct {
	*call
	id  identity
	in  guarded
	key string

	headerSeen bool   // the opt-in header is present
	querySeen  bool   // the opt-in query parameter is present
	query      string // the raw query without it
	begin      time.Time
	digest     string // of the members that shape the create (see requestDigest); "" until needed
	maxActive  int    // ACTIVE accounts allowed before a refusal: 1, or a session's max_accounts_per_toolkit
	multi      bool   // the session has multi-account on

	// What the verdict holds until the request is answered.
	p      *duplicatePolicy
	fctx   context.Context // a forward runs under it (the work deadline)
	cancel context.CancelFunc
	unlock lock.Unlock
}

// evaluate reads who asks and what for, then checks.
func (p *duplicatePolicy) evaluate(c *call) verdict {
	// Who the request acts as is read once, from the headers the forward
	// will really carry; everything after uses that one value.
	if h, changed := forwardHeader(c.r.Header); changed {
		c.r = c.r.WithContext(c.r.Context())
		c.r.Header = h
	}
	lc := &c.link
	lc.call, lc.p, lc.fctx = c, p, c.r.Context()
	var br *badRequest
	if lc.id, br = deriveIdentity(c.r.Header, c.sc.RequestID); br != nil {
		br.close = true // the body is left unread
		return invalid(br)
	}
	if br = p.tools.read(c); br == nil {
		lc.in, br = parseBody(c.route, c.body.plain)
	}
	if br == nil && lc.in.flagFound && c.body.gzip {
		br = &badRequest{
			status: http.StatusBadRequest, slug: apierror.SlugBadRequest, code: apierror.CodeBadRequest,
			reason: ReasonFlagInCompressed, message: "allow_multiple cannot be read from a compressed body: the proxy would have to change it",
			fix: "Send the header " + apierror.HeaderAllowMultiple + ": true instead of the allow_multiple body member.",
		}
	}
	if br != nil {
		return invalid(br)
	}
	var headerOn, queryOn bool
	lc.headerSeen, headerOn = optInHeader(c.r.Header)
	lc.query, lc.querySeen, queryOn = stripQuery(c.r.URL.RawQuery)
	optIn := headerOn || queryOn || lc.in.flagOn
	if lc.query != "" && !optIn {
		// The lookup cannot carry them: a parameter Composio might read
		// as who or what to create for would escape the check.
		br = bad(ReasonQueryParams, "a request that creates a connected account takes no query parameters unless it opts in to multiple accounts (got %q)", lc.query)
		br.fix = "Send the request without query parameters, as the SDKs do."
		return invalid(br)
	}
	if optIn && p.allowMultiple {
		return verdict{decision: DecisionAllowedMultiple, reason: ReasonOptIn, fwd: lc}
	}
	lc.maxActive = 1
	if c.route == reqscope.RouteSessionLink {
		if v, ok := p.resolveSession(lc); !ok {
			return v
		}
	}
	if _, ok := p.multi[lc.in.AuthConfigID]; ok && lc.in.AuthConfigID != "" {
		return verdict{decision: DecisionAllowedMultiple, reason: ReasonMultipleAllowed, fwd: lc}
	}
	return p.check(lc)
}

// check runs the duplicate check under the per-key lock. The verdict holds
// the lock until the request is answered, and the forward (if any) ends
// before a lock that lapses does.
func (p *duplicatePolicy) check(c *linkCall) verdict {
	ctx := c.r.Context()
	c.begin = time.Now()
	in := c.in
	// One key for every create of (auth config, user, account type): link,
	// legacy create and a session link on a pinned auth config, any
	// credential, any API version. The account type is the one the request
	// carries, so it is the one forwarded. A session link on Composio's
	// default auth config is keyed by its toolkit.
	on := in.AuthConfigID
	if on == "" {
		on = "toolkit:" + in.Toolkit
	}
	c.key = lock.Key(on, in.UserID, in.AccountType)

	unlock, err := p.lock(ctx, c.key)
	p.lockWaitObs.Observe(time.Since(c.begin).Seconds())
	if err != nil {
		reason := ReasonLockError // counted by the backend itself
		if errors.Is(err, lock.ErrUnreplicated) {
			reason = ReasonLockUnreplicated // counted by the backend too (lock_unreplicated_total)
		}
		if errors.Is(err, lock.ErrTimeout) {
			reason = ReasonLockTimeout
			if !errors.Is(ctx.Err(), context.Canceled) { // the wait ran out; a caller gone says nothing about the lock
				p.m.LockErrors.WithLabelValues(p.backend, lockErrTimeout).Inc()
			}
		}
		return p.withLease(c, p.failed(c, reason, err))
	}
	c.unlock = unlock
	v := p.withLease(c, p.decide(c))
	v.hold = c
	return v
}

// withLease has a checked request's forward (allowed, or forwarded anyway
// in shadow or fail-open mode) keep its answer as the key's lease.
func (p *duplicatePolicy) withLease(c *linkCall, v verdict) verdict {
	if v.fwd != nil && p.pending != PendingOff {
		v.follow = c
	}
	return v
}

// decide looks the user's accounts up and decides, under the lock.
func (p *duplicatePolicy) decide(c *linkCall) verdict {
	ctx := c.r.Context()
	in := c.in
	q := upstream.ListQuery{
		APIPrefix:    c.prefix,
		UserID:       in.UserID,
		AuthConfigID: in.AuthConfigID,
		Statuses:     lookupStatuses,
		Header:       c.id.lookup,
		ToolkitSlug:  in.Toolkit,
		Tenant:       c.id.owner,
		// One ACTIVE account decides: no need to read further (a session
		// with multi-account on needs the count).
		StopAtActive: c.maxActive <= 1,
	}
	if in.AccountType == accountShared {
		q.AccountType = accountShared
	}
	qctx, qcancel := context.WithTimeout(ctx, p.lookupTimeout)
	start := time.Now()
	res, err := p.lister.List(qctx, q)
	qcancel()
	c.lookup = time.Since(start) // for the decision line; the list client's transport adds it to the scope
	if err != nil {
		if se, ok := errors.AsType[*upstream.StatusError](err); ok {
			return verdict{decision: DecisionLookupRefused, reason: ReasonLookupStatus, passBack: se, fwd: c}
		}
		if upstream.CallerCaused(err) && !errors.Is(ctx.Err(), context.Canceled) {
			// What the request itself asks makes the check impossible:
			// refused in every failure mode, never forwarded unchecked.
			reason := ReasonLookupRejected
			switch {
			case errors.Is(err, upstream.ErrTooManyPages):
				reason = ReasonTooManyAccounts
			case errors.Is(err, upstream.ErrUnknownItem):
				reason = ReasonUnknownItem
			}
			v := refused(DecisionRejectedUnverifiable, reason, answerUnverifiable(in, reason))
			v.err, v.fwd = err, c
			return v
		}
		reason := ReasonLookupError
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			reason = ReasonLookupTimeout
		case errors.Is(err, upstream.ErrBreakerOpen):
			reason = ReasonLookupBreaker
		}
		return p.failed(c, reason, err)
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
	forwarded := func(reason string) verdict {
		return verdict{decision: DecisionAllowed, reason: reason, fwd: c}
	}
	refusal := func(decision, reason string, a answer) verdict {
		v := refused(decision, reason, a)
		v.fwd = c // shadow mode forwards it
		return v
	}

	if len(active) >= max(c.maxActive, 1) {
		// A lease of the key is stale now; it expires by itself, so the
		// 409 costs no call to the store.
		if c.multi {
			return refusal(DecisionRejectedDuplicate, ReasonMaxAccounts, answerMaxAccounts(in, active, c.maxActive))
		}
		return refusal(DecisionRejectedDuplicate, ReasonActiveAccount, answerDuplicate(in, active))
	}
	leasesOn := p.pending != PendingOff
	var lease lock.Lease
	haveLease := false
	if leasesOn {
		lease, haveLease, err = p.store.GetLease(ctx, c.key, c.id.owner)
		if err != nil {
			return p.failed(c, ReasonLeaseError, err)
		}
	}
	if !leasesOn { // GUARD_PENDING_ACTION=off: pending links do not block
		if len(initiated) > 0 {
			return forwarded(ReasonPendingIgnored)
		}
		return forwarded(ReasonNoAccount)
	}

	reason := ReasonNoAccount
	if haveLease && lease.AccountID == "" {
		// An earlier forward's outcome is unknown (its answer was lost): an
		// INITIATED account may be the one it made, and there is nothing to replay.
		if len(initiated) > 0 {
			p.leases[leaseHit].Inc()
			return refusal(DecisionRejectedPending, ReasonOutcomeUnknown, answerOutcomeUnknown(in, initiated))
		}
		p.dropLease(ctx, c)
		haveLease = false
	}
	if haveLease {
		if listed(initiated, lease.AccountID) {
			p.leases[leaseHit].Inc()
			// The lease is this credential's own (one per owner): a replay
			// of the first answer when the repeat is the same request, else
			// a refusal naming the account.
			switch {
			case p.pending == PendingReject:
				return refusal(DecisionRejectedPending, ReasonPendingLink, answerPending(in, lease.AccountID))
			case lease.Request != c.requestDigest():
				return refusal(DecisionRejectedPending, ReasonPendingDiffers, answerPending(in, lease.AccountID))
			}
			return verdict{decision: DecisionReplayedPending, reason: ReasonPendingLink, replay: lease, replaying: true, fwd: c}
		}
		p.dropLease(ctx, c)
		reason = ReasonLeaseStale
	} else {
		p.leases[leaseMiss].Inc()
	}
	// A pending link this proxy holds no answer for (made with another
	// credential, on a replica without shared state, or around the proxy)
	// blocks as long as it may still be completed.
	if id := livePending(initiated, time.Now(), p.pendingMaxTTL); id != "" {
		return refusal(DecisionRejectedPending, ReasonPendingUntracked, answerPending(in, id))
	}
	return forwarded(reason)
}

// resolveSession reads whose account a session link creates: the session's
// user, the auth config it pins for the toolkit ("" for Composio's
// default), and how many ACTIVE accounts per toolkit it allows. ok is false
// with the verdict to answer when it cannot be read.
func (p *duplicatePolicy) resolveSession(c *linkCall) (verdict, bool) {
	id := pathSessionID(c.r.URL.EscapedPath())
	if len(id) > MaxIDBytes || hasControl(id) || !validText(id) {
		br := bad(ReasonBadMember, "the session id in the path must be at most %d bytes of text", MaxIDBytes)
		return invalid(br), false
	}
	if p.sessions == nil {
		return p.failed(c, ReasonSessionError, errNoSessions), false
	}
	s, err := p.sessions.Session(c.r.Context(), c.prefix, id, c.id.owner, c.id.lookup)
	if err != nil {
		if se, ok := errors.AsType[*upstream.StatusError](err); ok {
			return verdict{decision: DecisionLookupRefused, reason: ReasonSessionStatus, passBack: se, fwd: c}, false
		}
		return p.failed(c, ReasonSessionError, err), false
	}
	if s.UserID == "" {
		v := refused(DecisionRejectedUnverifiable, ReasonSessionNoUser, answerSessionUnreadable(id))
		v.fwd = c
		return v, false
	}
	c.in.UserID = s.UserID
	c.in.AuthConfigID = s.AuthConfigs[c.in.Toolkit]
	if s.PinUnsure[c.in.Toolkit] {
		// The session names the toolkit in other than lower case (or
		// twice): whether Composio applies the pin is unknown. Checked as
		// if unpinned, every account of the toolkit counts and the lock is
		// the toolkit's: no guess can let a duplicate through
		// (docs/security.md).
		c.in.AuthConfigID = ""
	}
	if s.MultiAccount {
		c.multi, c.maxActive = true, s.MaxAccounts
	}
	return verdict{}, true
}

var errNoSessions = errors.New("no session reader: a session link cannot be checked")

// failed is the verdict of a check that could not run.
func (p *duplicatePolicy) failed(c *linkCall, reason string, err error) verdict {
	if errors.Is(c.r.Context().Err(), context.Canceled) {
		// The client went away (the work deadline would be DeadlineExceeded):
		// the check failing says nothing about Composio, and nobody is there to answer.
		return verdict{decision: DecisionClientGone, reason: ReasonClientGone, err: err}
	}
	return failedCheck(reason, err, c)
}

// lock takes the per-key lock, waiting at most lockWait. A free lock of a
// backend that can take it at once costs no context and no timer.
func (p *duplicatePolicy) lock(ctx context.Context, key string) (lock.Unlock, error) {
	if tl, ok := p.store.(lock.TryLocker); ok && ctx.Err() == nil {
		if u, ok := tl.TryLock(key, p.lockTTL); ok {
			return u, nil
		}
	}
	lctx, cancel := context.WithTimeout(ctx, p.lockWait)
	defer cancel()
	return p.store.Lock(lctx, key, p.lockTTL)
}

// forwardRequest is the request to forward, under the work deadline.
// Only a forward needs the work deadline, so it is made here: a refusal or
// a replay costs no context and no timer. It counts from the lock's taking.
func (c *linkCall) forwardRequest() *http.Request {
	if c.p.work > 0 && c.cancel == nil && c.unlock != nil {
		c.fctx, c.cancel = context.WithDeadline(c.fctx, c.begin.Add(c.p.work))
	}
	return c.outgoing(c.fctx)
}

// release ends the deadline and frees the lock.
func (c *linkCall) release() {
	if c.cancel != nil {
		c.cancel()
	}
	if c.unlock != nil {
		c.unlock()
	}
}

// afterForward keeps what a forwarded create's answer says for its repeats.
func (c *linkCall) afterForward(cw *captureWriter, aborted bool) { c.p.afterCreate(c, cw, aborted) }

// afterCreate keeps what a forwarded create's answer says for its repeats.
func (p *duplicatePolicy) afterCreate(c *linkCall, cw *captureWriter, aborted bool) {
	ctx := c.r.Context()
	if !aborted && cw.status >= 400 && cw.status < 500 {
		return // Composio refused the create: nothing was made
	}
	if aborted || cw.status < 200 || cw.status > 299 || cw.truncated || !p.storeLease(ctx, c, cw) {
		// No answer, a 5xx, or a 2xx that cannot be read: Composio may or may
		// not have made the account. Remember that, so a retry does not make a second.
		p.putLease(ctx, c, lock.Lease{Owner: c.id.owner, Request: c.requestDigest(),
			ExpiresAt: time.Now().Add(min(p.pendingMaxTTL, unknownOutcomeTTL))})
	}
}

// unknownOutcomeTTL bounds the memory of a link whose answer was lost: about
// a link's own life at Composio.
const unknownOutcomeTTL = 10 * time.Minute

// storeLease keeps a readable 2xx create answer as the key's lease.
func (p *duplicatePolicy) storeLease(ctx context.Context, c *linkCall, cw *captureWriter) bool {
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
	if limit := now.Add(p.pendingMaxTTL); expires.IsZero() || expires.After(limit) {
		expires = limit
	}
	p.putLease(ctx, c, lock.Lease{AccountID: id, Owner: c.id.owner, Request: c.requestDigest(),
		Status: cw.status, ContentType: cw.Header().Get("Content-Type"), Body: body, ExpiresAt: expires})
	return true
}

// putLease writes a lease even when the client has gone: what Composio did
// must be remembered for the retry that follows. The backend bounds the
// write itself (a Redis call has its GUARD_REDIS_TIMEOUT).
func (p *duplicatePolicy) putLease(ctx context.Context, c *linkCall, l lock.Lease) {
	ctx = context.WithoutCancel(ctx)
	if err := p.store.PutLease(ctx, c.key, l); err != nil {
		if errors.Is(err, lock.ErrUnreplicated) {
			// Stored on the primary, where it serves; a failover before it
			// reaches a replica loses it, and a repeat then meets the
			// pending-link rule (Composio's INITIATED account) instead of a replay.
			c.sc.Log().Warn("pending-link lease stored but not replicated in time", zap.String("route", c.route), zap.Error(err))
			p.leases[leaseStored].Inc()
			return
		}
		c.sc.Log().Warn("pending-link lease not stored", zap.String("route", c.route), zap.Error(err))
		return
	}
	p.leases[leaseStored].Inc()
}

func (p *duplicatePolicy) dropLease(ctx context.Context, c *linkCall) {
	p.leases[leaseStale].Inc()
	if err := p.store.DropLease(ctx, c.key, c.id.owner); err != nil {
		c.sc.Log().Warn("stale pending-link lease not dropped", zap.String("route", c.route), zap.Error(err))
	}
}

// outgoing is the request to forward after a successful parse, under ctx:
// the opt-in flag gone from header, query and body, and the body restored.
// The caller's request stays as received: its header map is shared when
// nothing in it changes (the ReverseProxy copies it before it edits).
func (c *linkCall) outgoing(ctx context.Context) *http.Request {
	r := c.r
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

// requestDigest is a digest of what shapes the create besides its key: the
// route and the body without the opt-in member, compacted (whitespace does
// not count; member order does). A replay needs it to match, so a repeat
// with another callback_url, alias or experimental block is never handed
// the first request's link.
func (c *linkCall) requestDigest() string {
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

// lookupStatuses is shared by every query; listers only read it.
var lookupStatuses = []string{upstream.StatusActive, upstream.StatusInitiated}

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
