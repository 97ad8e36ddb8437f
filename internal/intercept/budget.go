package intercept

import (
	"errors"
	"net/http"
	"sync/atomic"

	"github.com/composio-guard/composio-guard/internal/apierror"
	"github.com/composio-guard/composio-guard/internal/reqscope"
)

// ReasonBodyBudget (decision invalid_request): the guarded bodies in flight,
// all requests together, hold GUARD_BODY_BUDGET_BYTES already, so this one is
// not read; enforce mode answers 503 with Retry-After, shadow mode forwards
// the body whole, streaming what was not read.
const ReasonBodyBudget = "body_budget_exhausted"

// firstBodyBuffer bounds the first buffer of a guarded body, whatever its
// Content-Length announces: memory grows with the bytes that arrive, never
// with the bytes promised. A link body (a few hundred bytes) fits in it.
const firstBodyBuffer = 4 << 10

// byteBudget is the global bound on guarded request bodies in flight. A
// body's buffer is reserved before it is allocated, one growth at a time
// (readAll doubles it, so a body costs a handful of reservations), and given
// back when the request ends: the reservation is recorded on the request's
// reqscope.Scope, which the server ends once the handler has returned,
// whether the body was forwarded, answered or refused.
type byteBudget struct {
	total int64
	used  atomic.Int64
}

func newByteBudget(total int64) *byteBudget { return &byteBudget{total: total} }

// take reserves n more bytes for a request that already holds own of them.
// It fails when the budget cannot cover them, unless the request is the only
// one holding any: a body the cap allows is then read whatever its size, so
// the budget can never refuse a request forever.
func (b *byteBudget) take(n, own int64) bool {
	for {
		used := b.used.Load()
		if used+n > b.total && used > own {
			return false
		}
		if b.used.CompareAndSwap(used, used+n) {
			return true
		}
	}
}

// Release gives back n bytes (reqscope.Releaser: the request's scope calls it
// when the request ends).
func (b *byteBudget) Release(n int64) { b.used.Add(-n) }

// inUse is what the requests in flight hold.
func (b *byteBudget) inUse() int64 { return b.used.Load() }

// bodyHold counts one request's guarded body against the budget.
type bodyHold struct {
	b  *byteBudget
	sc *reqscope.Scope // nil: nothing is counted
}

// grow reserves n more bytes for the request's body; false when the budget
// cannot cover them (nothing is then reserved).
func (h bodyHold) grow(n int64) bool {
	if h.sc == nil {
		return true
	}
	if !h.b.take(n, h.sc.Held()) {
		return false
	}
	h.sc.Hold(h.b, n)
	return true
}

// errBodyBudget ends readAll when the budget cannot cover the next buffer.
var errBodyBudget = errors.New("guarded body budget exhausted")

// proxyBusy is the refusal of a body the budget cannot cover. The body is
// not read to its end, so the connection is closed after the answer; the
// caller adds Retry-After (see readBody).
func proxyBusy() *badRequest {
	return &badRequest{
		status: http.StatusServiceUnavailable, slug: apierror.SlugProxyBusy, code: apierror.CodeProxyBusy, close: true,
		reason:  ReasonBodyBudget,
		message: "The proxy is holding as many request bodies as it may (GUARD_BODY_BUDGET_BYTES), so this request was not read and nothing was sent to Composio.",
		fix:     "Retry after the Retry-After delay.",
	}
}
