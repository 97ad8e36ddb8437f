package upstream

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/composio-guard/composio-guard/internal/metrics"
	"github.com/composio-guard/composio-guard/internal/reqscope"
)

// Operations, the op label of composio_guard_upstream_errors_total.
const (
	OpForward = "forward"
	OpLookup  = "lookup"
)

// HeaderRateLimitRemaining is Composio's count of calls left in the window.
const HeaderRateLimitRemaining = "X-Ratelimit-Remaining"

// Instrument wraps base so that every call is accounted for: calls that got
// no answer count in metrics.UpstreamErrs{op, reason} (promhttp-style
// instrumentation records nothing then), every answer's
// X-RateLimit-Remaining sets metrics.RateLimitLeft, and the time from the
// start of RoundTrip until the answer's body is closed (or the error) is
// added to the request scope's UpstreamNanos, and to LookupNanos for
// op "lookup". m may be nil (no metrics).
func Instrument(base http.RoundTripper, op string, m *metrics.Metrics) http.RoundTripper {
	return &instrumented{base: base, op: op, lookup: op == OpLookup, m: m}
}

type instrumented struct {
	base   http.RoundTripper
	op     string
	lookup bool
	m      *metrics.Metrics
}

func (t *instrumented) RoundTrip(r *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.base.RoundTrip(r)
	if err != nil {
		t.addTime(r.Context(), start)
		t.countErr(err)
		return nil, err
	}
	if t.m != nil {
		if v := resp.Header.Get(HeaderRateLimitRemaining); v != "" {
			if f, perr := strconv.ParseFloat(v, 64); perr == nil {
				t.m.RateLimitLeft.Set(f)
			}
		}
	}
	// A 101 answer's body is the raw connection (an io.ReadWriteCloser the
	// ReverseProxy needs as such): count the wait for the answer only.
	if resp.StatusCode == http.StatusSwitchingProtocols || resp.Body == nil || resp.Body == http.NoBody {
		t.addTime(r.Context(), start)
		return resp, nil
	}
	resp.Body = &timedBody{ReadCloser: resp.Body, t: t, ctx: r.Context(), start: start}
	return resp, nil
}

func (t *instrumented) addTime(ctx context.Context, start time.Time) {
	d := int64(time.Since(start))
	s := reqscope.From(ctx)
	s.UpstreamNanos.Add(d)
	if t.lookup {
		s.LookupNanos.Add(d)
	}
}

func (t *instrumented) countErr(err error) {
	if t.m == nil {
		return
	}
	_, reason := StatusFor(err)
	t.m.UpstreamErrs.WithLabelValues(t.op, reason).Inc()
}

// timedBody stops the clock when the answer's body is closed, and counts a
// body cut short (reset mid-answer) as a call that got no full answer.
type timedBody struct {
	io.ReadCloser
	t      *instrumented
	ctx    context.Context
	start  time.Time
	failed bool
	closed atomic.Bool
}

func (b *timedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && !errors.Is(err, io.EOF) && !b.failed && !b.closed.Load() {
		b.failed = true
		b.t.countErr(err)
	}
	return n, err
}

func (b *timedBody) Close() error {
	if b.closed.CompareAndSwap(false, true) {
		b.t.addTime(b.ctx, b.start)
	}
	return b.ReadCloser.Close()
}
