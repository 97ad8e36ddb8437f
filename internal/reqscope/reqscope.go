// Package reqscope owns the request-scope value: set once at the top of the
// middleware chain, filled in by the handlers, read by the access log and the
// metrics at the end of the request.
package reqscope

import (
	"context"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/composio-guard/composio-guard/internal/logging"
)

// Route names: a closed set, used as a metric label and a log field.
const (
	RoutePassthrough   = "passthrough"
	RouteLink          = "link"
	RouteCreate        = "create"
	RouteSessionCreate = "session_create"
	RouteSessionUpdate = "session_update"
	RouteSessionLink   = "session_link" // a Tool Router session's authorize(toolkit)
)

// Routes lists every route name, the closed set of the route label.
func Routes() []string {
	return []string{RoutePassthrough, RouteLink, RouteCreate, RouteSessionCreate, RouteSessionUpdate, RouteSessionLink}
}

// Scope is what one request carries through the chain. Fields other than the
// atomics are written by the one goroutine that serves the request.
type Scope struct {
	RequestID string
	Start     time.Time
	// Logger carries request_id. The server leaves it nil and sets a base
	// instead (SetBaseLogger): most requests log nothing but their access
	// line, so Log builds it only on first use.
	Logger *zap.Logger
	base   *zap.Logger

	Route    string // one of the Route* constants
	Decision string // guard decision, "" when none was taken
	Reason   string // reason code behind the decision, "" when none
	Mode     string // the guard's mode (enforce, shadow, off) when it decided
	// SandboxSize is the tier a Tool Router session request asked for (or
	// had inserted), "default" or "invalid"; "" on other routes.
	SandboxSize string

	// Time spent waiting on Composio (lookup and forward round trips,
	// response bodies included), so the proxy's own overhead can be told apart.
	UpstreamNanos atomic.Int64
	LookupNanos   atomic.Int64

	// What the request holds of a process-wide bound until it ends (the
	// guard's body budget); see Hold.
	willEnd bool
	holder  Releaser
	held    int64
}

// Releaser takes back what requests held (the guard's body budget).
type Releaser interface {
	Release(n int64)
}

// WillEnd is the promise of the scope's owner that End runs once the request's
// handler has returned, panics included (the server's RequestID middleware
// keeps it). Only such a scope can Hold.
func (s *Scope) WillEnd() { s.willEnd = true }

// CanHold reports whether Hold(r, ...) would record: the owner promised End,
// and the request holds nothing of another Releaser.
func (s *Scope) CanHold(r Releaser) bool {
	return s.willEnd && (s.holder == nil || s.holder == r)
}

// Hold records that the request holds n more of r, given back by End. It
// records nothing and reports false when CanHold(r) does not hold: the
// caller must then not count n against r at all.
func (s *Scope) Hold(r Releaser, n int64) bool {
	if !s.CanHold(r) {
		return false
	}
	s.holder = r
	s.held += n
	return true
}

// Held is what the request holds of the Releaser it holds from.
func (s *Scope) Held() int64 { return s.held }

// End gives back everything the request holds. It is safe to call more than once.
func (s *Scope) End() {
	if s.holder != nil {
		s.holder.Release(s.held)
		s.holder, s.held = nil, 0
	}
}

// SetBaseLogger makes Log build the request's logger from base, with
// request_id, when it is first needed.
func (s *Scope) SetBaseLogger(base *zap.Logger) {
	s.base, s.Logger = base, nil
}

// Log returns the request's logger, which carries request_id.
func (s *Scope) Log() *zap.Logger {
	if s.Logger == nil {
		if s.base == nil {
			s.Logger = zap.NewNop()
		} else {
			s.Logger = s.base.With(zap.String(logging.FieldRequestID, s.RequestID))
		}
	}
	return s.Logger
}

// Check is Log().Check, without building the logger for a level that is off.
func (s *Scope) Check(lvl zapcore.Level, msg string) *zapcore.CheckedEntry {
	if s.Logger == nil && s.base != nil && !s.base.Core().Enabled(lvl) {
		return nil
	}
	return s.Log().Check(lvl, msg)
}

type ctxKey struct{}

// With returns ctx carrying s.
func With(ctx context.Context, s *Scope) context.Context {
	return context.WithValue(ctx, ctxKey{}, s)
}

// From returns the scope of ctx; a fresh detached one when there is none, so
// callers never need a nil check.
func From(ctx context.Context) *Scope {
	if s, ok := ctx.Value(ctxKey{}).(*Scope); ok {
		return s
	}
	return &Scope{Start: time.Now(), Logger: zap.NewNop(), Route: RoutePassthrough}
}
