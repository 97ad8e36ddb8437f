// Package intercept owns the guarded routes: matching them on the canonical
// path, the shared body tools (bounded capture, one JSON reader, the request
// rebuilt for the forward), the policies side by side (the duplicate guard
// on the account-creating routes, the sandbox tier policy on the Tool Router
// session routes), each turning a request into a verdict, and the one
// responder that applies the mode and the failure mode to a verdict and
// writes the answer from one catalogue.
package intercept

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

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

// Guard routes the guarded requests to their policies and answers them.
type Guard struct {
	mode       string
	failOpen   bool
	retryAfter int
	forward    http.Handler
	m          *metrics.Metrics
	links      *duplicatePolicy
	sessions   *sandboxPolicy
	decisions  sync.Map // decisionKey -> prometheus.Counter
}

type decisionKey struct{ route, decision string }

// NewGuard builds the guard. forward sends a request to Composio (the one
// ReverseProxy); m may be nil in tests that do not read metrics.
func NewGuard(cfg Config, lister Lister, store lock.Store, forward http.Handler, m *metrics.Metrics) *Guard {
	cfg = withDefaults(cfg)
	if m == nil {
		m = metrics.New(metrics.Build{})
	}
	// Shadow mode forwards even a body it refuses, so the body tools keep
	// what they did not read for it.
	tools := newBodyTools(cfg, cfg.Mode == ModeShadow)
	return &Guard{
		mode: cfg.Mode, failOpen: cfg.FailureMode == FailOpen, retryAfter: cfg.RetryAfterSeconds,
		forward: forward, m: m,
		links:    newDuplicatePolicy(cfg, tools, lister, store, m),
		sessions: newSandboxPolicy(cfg, tools),
	}
}

// withDefaults fills in what a Config leaves zero.
func withDefaults(cfg Config) Config {
	str := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	dur := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	str(&cfg.Mode, ModeEnforce)
	str(&cfg.FailureMode, FailClosed)
	str(&cfg.PendingAction, PendingReplay)
	str(&cfg.AllowMultiple, AllowMultipleFlag)
	dur(&cfg.BodyReadTimeout, 15*time.Second)
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	if cfg.BodyBudgetBytes <= 0 {
		cfg.BodyBudgetBytes = defaultBodyBudget
	}
	dur(&cfg.LookupTimeout, 5*time.Second)
	dur(&cfg.LockWait, 10*time.Second)
	dur(&cfg.LockTTL, 60*time.Second)
	dur(&cfg.PendingMaxTTL, 10*time.Minute)
	if cfg.RetryAfterSeconds <= 0 {
		cfg.RetryAfterSeconds = 1
	}
	return cfg
}

// ServeHTTP guards a request on a guarded route and forwards anything else
// untouched.
func (g *Guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.dispatch(w, r, g.forward)
}

// Router labels every request's route in its scope, sends the guarded routes
// (POST link, POST legacy create, and the Tool Router session create and
// update for the sandbox policy) to g and everything else to passthrough.
func Router(g *Guard, passthrough http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.dispatch(w, r, passthrough)
	})
}

// dispatch classifies r once and hands it to its policy.
func (g *Guard) dispatch(w http.ResponseWriter, r *http.Request, passthrough http.Handler) {
	route, prefix := Classify(r.Method, r.URL.EscapedPath())
	sc := reqscope.From(r.Context())
	sc.Route = route
	var p policy
	switch route {
	case reqscope.RouteLink, reqscope.RouteCreate:
		p = g.links
	case reqscope.RouteSessionCreate, reqscope.RouteSessionUpdate:
		p = g.sessions
	default:
		if !disguised(r) {
			passthrough.ServeHTTP(w, r)
			return
		}
		p = disguisedPolicy{}
	}
	if overridden(r) {
		p = disguisedPolicy{}
	}
	g.respond(&call{w: w, r: r, sc: sc, route: route, prefix: prefix}, p)
}

// respond is the one place that applies the mode and the failure mode: it
// asks the policy for its verdict (not at all when the guard is off),
// records it, and answers: enforce writes the verdict's reply, shadow and
// off forward.
func (g *Guard) respond(c *call, p policy) {
	if g.mode == ModeOff {
		g.record(c, &verdict{decision: DecisionOff, reason: ReasonModeOff})
		g.forward.ServeHTTP(c.w, c.r)
		return
	}
	v := p.evaluate(c)
	if v.hold != nil {
		defer v.hold.release()
	}
	if v.failed {
		if g.failOpen {
			v.decision = DecisionFailedOpen
		} else {
			v.decision, v.refusal = DecisionFailedClosed, answerUnavailable(g.retryAfter)
		}
	}
	g.record(c, &v)
	if v.decision == DecisionClientGone {
		return // nobody to answer; the access log says 499
	}
	var out *http.Request
	if g.mode == ModeEnforce {
		if writeReply(c.w, &v, c.sc.RequestID) {
			return
		}
		out = v.act
	}
	if out == nil && v.fwd != nil {
		out = v.fwd.forwardRequest()
	}
	if out == nil {
		out = asSent(c.r, c.body)
	}
	g.forwardThen(c.w, out, &v)
}

// forwardThen forwards out and, when the verdict asks, shows it the answer.
func (g *Guard) forwardThen(w http.ResponseWriter, out *http.Request, v *verdict) {
	if v.follow == nil {
		g.forward.ServeHTTP(w, out)
		return
	}
	cw := &captureWriter{ResponseWriter: w, noBody: v.statusOnly}
	defer func() {
		// ReverseProxy aborts with a panic (http.ErrAbortHandler) when the
		// answer breaks after its headers went out: let the policy see that
		// first, then go on panicking.
		p := recover()
		v.follow.afterForward(cw, p != nil)
		if p != nil {
			panic(p)
		}
	}()
	g.forward.ServeHTTP(cw, out)
}

// record puts a decision on the request's scope (the access line reads it),
// counts it, and logs it on its own line: at WARN for a check that could
// not run (with its error), else at DEBUG.
func (g *Guard) record(c *call, v *verdict) {
	c.sc.Decision, c.sc.Reason, c.sc.Mode = v.decision, v.reason, g.mode
	g.decisionCounter(c.route, v.decision).Inc()
	if v.size != "" {
		c.sc.SandboxSize = v.size
		g.m.Sandbox.WithLabelValues(c.route, v.size, v.decision).Inc()
	}
	level := zap.DebugLevel
	if v.decision == DecisionFailedOpen || v.decision == DecisionFailedClosed {
		level = zap.WarnLevel
	}
	// Check first: the fields are only built when the line will be written.
	if ce := c.sc.Check(level, "guard decision"); ce != nil {
		fields := []zap.Field{
			zap.String(logging.FieldRoute, c.route), zap.String(logging.FieldDecision, v.decision),
			zap.String(logging.FieldReason, v.reason), zap.String(logging.FieldMode, g.mode),
			zap.Duration(logging.FieldLookupDuration, c.lookup),
		}
		if v.size != "" {
			fields = append(fields, zap.String(logging.FieldSandboxSize, v.size))
		}
		if v.err != nil {
			fields = append(fields, zap.Error(v.err))
		}
		ce.Write(fields...)
	}
}

// decisionCounter is the decisions_total child of route and decision, in
// the guard's mode: label lookups cost more than the count.
func (g *Guard) decisionCounter(route, decision string) prometheus.Counter {
	k := decisionKey{route, decision}
	if c, ok := g.decisions.Load(k); ok {
		return c.(prometheus.Counter)
	}
	c := g.m.Decisions.WithLabelValues(route, decision, g.mode)
	g.decisions.Store(k, c)
	return c
}
