package upstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/composio-guard/composio-guard/internal/metrics"
)

// ListOptions tune the guard's lookup.
type ListOptions struct {
	// Timeout bounds the whole lookup (every page, the retry included).
	// 0 means DefaultLookupTimeout.
	Timeout time.Duration
	// PageLimit is the page size asked with `limit`. The SDK's own check
	// sends none and gets the server's default page; asking for a bigger one
	// finds an ACTIVE account behind many INITIATED ones in one call.
	// 0 sends no `limit` (byte for byte the SDK's query).
	PageLimit int
	// MaxPages bounds the pages read by following next_cursor; an answer
	// that still has a next page after MaxPages is an error (the guard fails
	// per its failure mode) rather than a silent miss. 0 means
	// DefaultLookupMaxPages.
	MaxPages int
	Breaker  BreakerOptions
	// UserAgent of the list call; "" means DefaultUserAgent.
	UserAgent string
}

// List client defaults and caps.
const (
	DefaultLookupTimeout  = 5 * time.Second
	DefaultLookupMaxPages = 10
	DefaultUserAgent      = "composio-guard"
	// MaxListAnswerBytes caps one page of the list answer.
	MaxListAnswerBytes = 16 << 20
	// MaxStatusErrorBody caps the body of a 401/403/429 handed back.
	MaxStatusErrorBody = 64 << 10
)

// Results of a lookup, the result label of composio_guard_lookup_duration_seconds.
const (
	LookupOK          = "ok"
	LookupError       = "error"        // no usable answer (5xx, bad JSON, too many pages, network)
	LookupTimeout     = "timeout"      // the lookup's deadline passed
	LookupRefused     = "refused"      // 401, 403 or 429: handed back to the caller
	LookupBreakerOpen = "breaker_open" // not tried: the circuit breaker is open
	LookupCanceled    = "canceled"     // the caller went away
)

// Errors of a lookup that got an answer the guard cannot use.
var (
	ErrBadAnswer        = errors.New("upstream: list answer is not the expected JSON")
	ErrUnexpectedStatus = errors.New("upstream: list answered an unexpected status")
	ErrTooManyPages     = errors.New("upstream: list has more pages than the lookup reads")
	ErrInvalidQuery     = errors.New("upstream: invalid list query")
)

// ListClient runs the guard's lookup: the list call the SDK makes, with the
// caller's own credentials, over every page. Safe for concurrent use.
type ListClient struct {
	base    *url.URL
	rt      http.RoundTripper
	timeout time.Duration
	limit   string // "" sends none
	pages   int
	ua      []string
	br      *breaker
	obs     map[string]prometheus.Observer // by result; nil without metrics
}

// NewListClient builds the lookup client. rt is the shared transport; with
// m set it is instrumented as op "lookup" (see Instrument), so pass the bare
// transport. m may be nil.
func NewListClient(base *url.URL, rt http.RoundTripper, o ListOptions, m *metrics.Metrics) *ListClient {
	c := &ListClient{
		base:    &url.URL{Scheme: base.Scheme, Host: base.Host, Path: strings.TrimRight(base.Path, "/")},
		rt:      rt,
		timeout: orDur(o.Timeout, DefaultLookupTimeout),
		pages:   orInt(o.MaxPages, DefaultLookupMaxPages),
		ua:      []string{DefaultUserAgent},
	}
	if o.PageLimit > 0 {
		c.limit = strconv.Itoa(o.PageLimit)
	}
	if o.UserAgent != "" {
		c.ua = []string{o.UserAgent}
	}
	var gauge prometheus.Gauge
	if m != nil {
		c.rt = Instrument(rt, OpLookup, m)
		gauge = m.BreakerState.WithLabelValues("lookup")
		c.obs = make(map[string]prometheus.Observer, 6)
		for _, r := range []string{LookupOK, LookupError, LookupTimeout, LookupRefused, LookupBreakerOpen, LookupCanceled} {
			c.obs[r] = m.Lookup.WithLabelValues(r)
		}
	}
	c.br = newBreaker(o.Breaker, gauge)
	return c
}

// List returns every account the list call finds for q, over all pages.
// A *StatusError (401, 403, 429) is an answer for the caller; ErrBreakerOpen
// comes back at once while Composio has been failing; any other error means
// the lookup could not run. The whole lookup runs under ListOptions.Timeout.
func (c *ListClient) List(ctx context.Context, q ListQuery) (ListResult, error) {
	start := time.Now()
	ok, probe := c.br.allow()
	if !ok {
		c.observe(LookupBreakerOpen, start)
		return ListResult{}, ErrBreakerOpen
	}
	lctx, cancel := ctx, noCancel
	// The guard already bounds its lookup, usually by the same timeout: a
	// second deadline would only cost a timer.
	if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > c.timeout {
		lctx, cancel = context.WithTimeout(ctx, c.timeout)
	}
	res, err := c.list(lctx, q)
	cancel()
	result, oc := classify(ctx, err)
	c.br.record(oc, probe)
	c.observe(result, start)
	return res, err
}

func noCancel() {}

func (c *ListClient) observe(result string, start time.Time) {
	if c.obs != nil {
		c.obs[result].Observe(time.Since(start).Seconds())
	}
}

// classify names a lookup's result and what it says about Composio's health.
// parent is the caller's context: its cancellation means the caller left.
func classify(parent context.Context, err error) (string, outcome) {
	if err == nil {
		return LookupOK, outcomeSuccess
	}
	_, refused := errors.AsType[*StatusError](err)
	switch {
	case refused:
		return LookupRefused, outcomeSuccess // Composio answered
	case errors.Is(err, ErrInvalidQuery):
		return LookupError, outcomeNeutral
	case errors.Is(err, context.Canceled) && errors.Is(parent.Err(), context.Canceled):
		return LookupCanceled, outcomeNeutral
	case errors.Is(err, errAnswered):
		return LookupError, outcomeSuccess // 4xx: Composio is up, the query is not welcome
	}
	if st, _ := StatusFor(err); st == http.StatusGatewayTimeout {
		return LookupTimeout, outcomeFailure
	}
	return LookupError, outcomeFailure
}

// errAnswered marks a non-2xx, non-5xx answer: an error for the lookup, but
// proof that Composio is up, so no breaker failure.
var errAnswered = errors.New("answered")

func (c *ListClient) list(ctx context.Context, q ListQuery) (ListResult, error) {
	if !strings.HasPrefix(q.APIPrefix, "/") || q.UserID == "" || q.AuthConfigID == "" ||
		strings.Contains(q.UserID, ",") || strings.Contains(q.AuthConfigID, ",") {
		return ListResult{}, fmt.Errorf("%w: prefix, user id and auth config id are required, without commas", ErrInvalidQuery)
	}
	u := *c.base
	u.Path += q.APIPrefix + "/connected_accounts"
	// The SDK's own encoding (what url.Values.Encode makes): keys sorted,
	// arrays one comma-joined value with the comma percent-encoded.
	// Written out by hand: this runs on every guarded request.
	var statuses string
	if len(q.Statuses) > 0 {
		statuses = strings.Join(q.Statuses, ",")
	}
	query := func(cursor string) string {
		var b strings.Builder
		b.Grow(128 + len(q.AuthConfigID) + len(q.UserID) + len(cursor))
		param := func(k, v string) {
			if b.Len() > 0 {
				b.WriteByte('&')
			}
			b.WriteString(k)
			b.WriteByte('=')
			b.WriteString(url.QueryEscape(v))
		}
		if q.AccountType != "" {
			param("account_type", q.AccountType)
		}
		param("auth_config_ids", q.AuthConfigID)
		if cursor != "" {
			param("cursor", cursor)
		}
		if c.limit != "" {
			param("limit", c.limit)
		}
		if statuses != "" {
			param("statuses", statuses)
		}
		param("user_ids", q.UserID)
		return b.String()
	}
	hdr := q.Header // handed over by the caller (see ListQuery.Header)
	if hdr == nil {
		hdr = make(http.Header, 2)
	}
	hdr["Accept"] = acceptJSON
	hdr["User-Agent"] = c.ua

	// The values an answer repeats: its strings reuse these, not new copies.
	known := [...]string{StatusActive, StatusInitiated, q.UserID, q.AuthConfigID}
	var res ListResult
	cursor := ""
	for page := 1; ; page++ {
		u.RawQuery = query(cursor)
		next, err := c.page(ctx, u.String(), hdr, &res, known[:])
		if err != nil {
			return ListResult{}, fmt.Errorf("lookup page %d: %w", page, err)
		}
		if next == "" {
			return res, nil
		}
		if page >= c.pages {
			return ListResult{}, fmt.Errorf("%w (%d pages read)", ErrTooManyPages, page)
		}
		cursor = next
	}
}

// acceptJSON is shared by every lookup; nothing changes it.
var acceptJSON = []string{"application/json"}

// page reads one page into res and returns the next cursor ("" at the end).
func (c *ListClient) page(ctx context.Context, rawURL string, hdr http.Header, res *ListResult, known []string) (string, error) {
	resp, err := c.roundTrip(ctx, rawURL, hdr)
	if err != nil {
		return "", withCtx(ctx, err)
	}
	defer func() {
		// Drain a little so the connection can be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		_ = resp.Body.Close()
	}()
	switch code := resp.StatusCode; {
	case code == http.StatusUnauthorized || code == http.StatusForbidden || code == http.StatusTooManyRequests:
		body, err := io.ReadAll(io.LimitReader(resp.Body, MaxStatusErrorBody))
		if err != nil {
			return "", fmt.Errorf("reading the %d answer: %w", code, withCtx(ctx, err))
		}
		return "", &StatusError{StatusCode: code, Header: resp.Header.Clone(), Body: body}
	case code >= 500 || code < 200:
		return "", fmt.Errorf("%w: %d", ErrUnexpectedStatus, code)
	case code >= 300:
		return "", fmt.Errorf("%w: %d: %w", ErrUnexpectedStatus, code, errAnswered)
	}
	next, err := decodePage(resp.Body, res, known...)
	if err != nil {
		if ce := ctx.Err(); ce != nil {
			return "", fmt.Errorf("reading the answer: %w: %w", ce, err)
		}
		return "", err
	}
	return next, nil
}

// decodePage reads one list answer, appends its items to res and returns
// the next cursor ("" on the last page). A string equal to one of known is
// that very string. Anything but the expected JSON is
// ErrBadAnswer.
func decodePage(body io.Reader, res *ListResult, known ...string) (string, error) {
	buf := pageBuffers.Get().(*bytes.Buffer)
	defer putPageBuffer(buf)
	buf.Reset()
	size, err := buf.ReadFrom(io.LimitReader(body, MaxListAnswerBytes+1))
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadAnswer, err)
	}
	if size > MaxListAnswerBytes {
		return "", fmt.Errorf("%w: larger than %d bytes", ErrBadAnswer, MaxListAnswerBytes)
	}
	n := len(res.Items)
	items, hasItems, next, err := parseListPage(buf.Bytes(), res.Items[n:], known)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadAnswer, err)
	}
	if !hasItems {
		return "", fmt.Errorf("%w: no items", ErrBadAnswer)
	}
	for i, it := range items {
		// An item the guard cannot attribute would be a silent miss.
		if it.ID == "" || it.Status == "" || it.UserID == "" || it.AuthConfigID == "" {
			return "", fmt.Errorf("%w: item %d lacks id, status, user_id or auth_config.id", ErrBadAnswer, i)
		}
	}
	res.Items = append(res.Items, items...)
	return next, nil
}

// pageBuffers recycles the buffers list answers are read into.
var pageBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func putPageBuffer(b *bytes.Buffer) {
	if b.Cap() <= 64<<10 { // a rare huge page is left to the GC
		pageBuffers.Put(b)
	}
}

// roundTrip sends one GET, and once more only when the first attempt could
// not connect: nothing reached Composio then. A failure after that, or a
// timeout, is never retried. (net/http itself already resends an idempotent
// request once on a reused keep-alive connection that turned out dead.)
func (c *ListClient) roundTrip(ctx context.Context, rawURL string, hdr http.Header) (*http.Response, error) {
	for attempt := 1; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidQuery, err)
		}
		req.Header = hdr
		resp, err := c.rt.RoundTrip(req)
		if err == nil {
			return resp, nil
		}
		if attempt > 1 || ctx.Err() != nil || !dialFailed(err) {
			return nil, err
		}
	}
}

// dialFailed: the connection could not be made, so no byte of the request
// was sent.
func dialFailed(err error) bool {
	op, ok := errors.AsType[*net.OpError](err)
	return ok && op.Op == "dial"
}

// withCtx makes sure a failure caused by the lookup's context says so
// (errors.Is(err, context.DeadlineExceeded) holds after a timeout), whatever
// words the transport chose.
func withCtx(ctx context.Context, err error) error {
	if ce := ctx.Err(); ce != nil && !errors.Is(err, ce) {
		return fmt.Errorf("%w: %w", ce, err)
	}
	return err
}
