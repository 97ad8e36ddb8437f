// Package reqscope owns the request-scope value: set once at the top of the
// middleware chain, filled in by the handlers, read by the access log and the
// metrics at the end of the request.
package reqscope

import (
	"context"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Route names: a closed set, used as a metric label and a log field.
const (
	RoutePassthrough   = "passthrough"
	RouteLink          = "link"
	RouteCreate        = "create"
	RouteSessionCreate = "session_create"
	RouteSessionUpdate = "session_update"
)

// Scope is what one request carries through the chain. Fields other than the
// atomics are written by the one goroutine that serves the request.
type Scope struct {
	RequestID string
	Start     time.Time
	Logger    *zap.Logger // already carries request_id

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
