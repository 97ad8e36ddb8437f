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

// SessionReader reads a Tool Router session with the caller's credential
// (upstream.SessionClient), and forgets one a PATCH may have changed.
type SessionReader interface {
	Session(ctx context.Context, prefix, id, tenant string, h http.Header) (upstream.Session, error)
	Invalidate(id string)
}

// Option adds what only some guards have.
type Option func(*Guard)

// WithSessions lets the guard check a Tool Router session's links: it reads
// whose account a link creates from the session.
func WithSessions(s SessionReader) Option {
	return func(g *Guard) { g.links.sessions, g.sessionReader = s, s }
}

// Guard routes the guarded requests to their policies and answers them.
type Guard struct {
	mode          Mode
	failOpen      bool
	retryAfter    int
	forward       http.Handler
	m             *metrics.Metrics
	links         *duplicatePolicy
	sessions      *sandboxPolicy
	sessionReader SessionReader // nil without WithSessions
	decisions     sync.Map      // decisionKey -> prometheus.Counter
}

type decisionKey struct{ route, decision string }

// NewGuard builds the guard. forward sends a request to Composio (the one
// ReverseProxy); m may be nil in tests that do not read metrics.
func NewGuard(cfg Config, lister Lister, store lock.Store, forward http.Handler, m *metrics.Metrics, opts ...Option) *Guard {
	cfg = withDefaults(cfg)
	if m == nil {
		m = metrics.New(metrics.Build{})
	}
	// Shadow mode forwards even a body it refuses, so the body tools keep
	// what they did not read for it.
	tools := newBodyTools(cfg, cfg.Mode == ModeShadow)
	g := &Guard{
		mode: cfg.Mode, failOpen: cfg.FailureMode == FailOpen, retryAfter: cfg.RetryAfterSeconds(),
		forward: forward, m: m,
		links:    newDuplicatePolicy(cfg, tools, lister, store, m),
		sessions: newSandboxPolicy(cfg, tools),
	}
	for _, o := range opts {
		o(g)
	}
	return g
}

// withDefaults fills in what a Config leaves zero from DefaultConfig, the
// one source of defaults (the settings' envDefault tags and the timing they
// give).
func withDefaults(cfg Config) Config {
	def := DefaultConfig()
	or := func(v, d string) string {
		if v == "" {
			return d
		}
		return v
	}
	dur := func(v, d time.Duration) time.Duration {
		if v <= 0 {
			return d
		}
		return v
	}
	cfg.Mode = Mode(or(string(cfg.Mode), string(def.Mode)))
	cfg.FailureMode = FailureMode(or(string(cfg.FailureMode), string(def.FailureMode)))
	cfg.PendingAction = PendingAction(or(string(cfg.PendingAction), string(def.PendingAction)))
	cfg.AllowMultiple = AllowMultiple(or(string(cfg.AllowMultiple), string(def.AllowMultiple)))
	cfg.BodyReadTimeout = dur(cfg.BodyReadTimeout, def.BodyReadTimeout)
	cfg.PendingMaxTTL = dur(cfg.PendingMaxTTL, def.PendingMaxTTL)
	cfg.RetryAfter = dur(cfg.RetryAfter, def.RetryAfter)
	cfg.LookupTimeout = dur(cfg.LookupTimeout, def.LookupTimeout)
	cfg.LockWait = dur(cfg.LockWait, def.LockWait)
	cfg.LockTTL = dur(cfg.LockTTL, def.LockTTL)
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = def.MaxBodyBytes
	}
	if cfg.BodyBudgetBytes <= 0 {
		cfg.BodyBudgetBytes = def.BodyBudgetBytes
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
	case reqscope.RouteLink, reqscope.RouteCreate, reqscope.RouteSessionLink:
		p = g.links
	case reqscope.RouteSessionUpdate:
		// A PATCH may change whose accounts the session's links create:
		// its cached config is forgotten before and after it.
		if g.sessionReader != nil {
			id := pathSessionID(r.URL.EscapedPath())
			g.sessionReader.Invalidate(id)
			defer g.sessionReader.Invalidate(id)
		}
		p = g.sessions
	case reqscope.RouteSessionCreate:
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
	c.sc.Decision, c.sc.Reason, c.sc.Mode = v.decision, v.reason, string(g.mode)
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
			zap.String(logging.FieldReason, v.reason), zap.String(logging.FieldMode, string(g.mode)),
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
	c := g.m.Decisions.WithLabelValues(route, decision, string(g.mode))
	g.decisions.Store(k, c)
	return c
}
