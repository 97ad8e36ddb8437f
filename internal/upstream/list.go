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

// ListOptions are what the lookup client needs beside its LookupSettings.
type ListOptions struct {
	// UserAgent of the list call; "" means DefaultUserAgent.
	UserAgent string
	// Metrics, when set, instruments the transport as op "lookup" (see
	// Instrument: pass the bare transport then) and receives the lookup's
	// durations and the breakers' state.
	Metrics *metrics.Metrics
	// BreakerMaxTenants caps the tenants whose breaker is remembered (see
	// breakers); 0 means DefaultBreakerMaxTenants.
	BreakerMaxTenants int
	// Now is the breakers' clock; nil means time.Now. Tests inject their own.
	Now func() time.Time
}

// List client defaults and caps.
const (
	DefaultUserAgent = "composio-guard"
	// MaxListAnswerBytes caps one page of the list answer.
	MaxListAnswerBytes = 16 << 20
	// MaxStatusErrorBody caps the body of a 401/403/429 handed back.
	MaxStatusErrorBody = 64 << 10
)

// Results of a lookup, the result label of composio_guard_lookup_duration_seconds.
const (
	LookupOK          = "ok"
	LookupError       = "error"        // no usable answer from Composio (5xx, a 2xx that is no list, network)
	LookupTimeout     = "timeout"      // the lookup's deadline passed
	LookupRefused     = "refused"      // 401, 403 or 429: handed back to the caller
	LookupRejected    = "rejected"     // caller-caused (see CallerCaused): Composio is up, the query cannot be answered
	LookupBreakerOpen = "breaker_open" // not tried: the tenant's circuit breaker is open
	LookupCanceled    = "canceled"     // the caller went away
)

// lookupResults is the closed set, each pre-created so that rate() over
// any of them works before the first one happens.
var lookupResults = [...]string{LookupOK, LookupError, LookupTimeout, LookupRefused, LookupRejected, LookupBreakerOpen, LookupCanceled}

// Errors of a lookup that got an answer the guard cannot use.
//
// Composio's own failures (ErrBadAnswer, ErrUnexpectedStatus alone, network
// errors, timeouts) count toward the tenant's circuit breaker. The three
// for which CallerCaused holds follow from the caller's input (its ids, its
// project's accounts): Composio answered, so they are proof that it is up,
// and they must not let a caller switch the guard off (fail open, or open a
// breaker) through its own input.
var (
	ErrBadAnswer        = errors.New("upstream: list answer is not the expected JSON")
	ErrUnexpectedStatus = errors.New("upstream: list answered an unexpected status")
	ErrInvalidQuery     = errors.New("upstream: invalid list query")
	// ErrTooManyPages: the user has more accounts than MaxPages pages hold.
	// Caller-caused.
	ErrTooManyPages = errors.New("upstream: list has more pages than the lookup reads")
	// ErrQueryRefused: Composio answered a 4xx other than 401, 403, 408 and
	// 429 (400, 404, 414 or 431 for an oversized id, 422, …). It also
	// matches ErrUnexpectedStatus. Caller-caused.
	ErrQueryRefused = errors.New("upstream: list query refused by Composio")
	// ErrUnknownItem: a listed item lacks id or status, so it cannot be
	// classified (it might be ACTIVE). Caller-caused: Composio did answer.
	ErrUnknownItem = errors.New("upstream: a listed account lacks id or status")
)

// CallerCaused reports whether err (wrapped or not) is ErrQueryRefused,
// ErrTooManyPages or ErrUnknownItem: an answer that follows from the
// caller's input, not a failure of Composio. The guard must not treat it as
// "Composio is down" (no fail-open); the list client already keeps it out of
// the breaker.
func CallerCaused(err error) bool {
	return err != nil && (errors.Is(err, ErrQueryRefused) || errors.Is(err, ErrTooManyPages) || errors.Is(err, ErrUnknownItem))
}

// ListClient runs the guard's lookup: the list call the SDK makes, with the
// caller's own credentials, over every page. Safe for concurrent use.
type ListClient struct {
	base    *url.URL
	rt      http.RoundTripper
	timeout time.Duration
	limit   string // "" sends none
	pages   int
	ua      []string
	br      *breakers
	obs     map[string]prometheus.Observer // by result; nil without metrics
}

// NewListClient builds the lookup client. rt is the shared transport. A
// zero Timeout or MaxPages of s takes its default (DefaultLookupSettings).
func NewListClient(base *url.URL, rt http.RoundTripper, s LookupSettings, o ListOptions) *ListClient {
	def := DefaultLookupSettings()
	c := &ListClient{
		base:    &url.URL{Scheme: base.Scheme, Host: base.Host, Path: strings.TrimRight(base.Path, "/")},
		rt:      rt,
		timeout: orDur(s.Timeout, def.Timeout),
		pages:   orInt(s.MaxPages, def.MaxPages),
		ua:      []string{DefaultUserAgent},
	}
	if s.PageLimit > 0 {
		c.limit = strconv.Itoa(s.PageLimit)
	}
	if o.UserAgent != "" {
		c.ua = []string{o.UserAgent}
	}
	var gauge stateGauge
	if m := o.Metrics; m != nil {
		c.rt = Instrument(rt, OpLookup, m)
		gauge = m.BreakerState.WithLabelValues(BreakerLookup)
		c.obs = make(map[string]prometheus.Observer, len(lookupResults))
		for _, r := range lookupResults {
			c.obs[r] = m.Lookup.WithLabelValues(r)
		}
	}
	c.br = newBreakers(breakerOptions{
		FailureThreshold: s.BreakerThreshold, CoolDown: s.BreakerCooldown, MaxTenants: o.BreakerMaxTenants, Now: o.Now,
	}, gauge)
	return c
}

// List returns every account the list call finds for q, over all pages
// (or up to the first matching ACTIVE one, with q.StopAtActive).
// A *StatusError (401, 403, 429) is an answer for the caller; an error for
// which CallerCaused holds is an answer too, one the guard cannot use;
// ErrBreakerOpen comes back at once while Composio has been failing for
// q.Tenant; any other error means Composio could not be asked. The whole
// lookup runs under LookupSettings.Timeout.
func (c *ListClient) List(ctx context.Context, q ListQuery) (ListResult, error) {
	start := time.Now()
	tk, ok := c.br.allow(q.Tenant)
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
	c.br.record(q.Tenant, tk, oc)
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
	case CallerCaused(err):
		return LookupRejected, outcomeSuccess // Composio answered; the query is the caller's
	case errors.Is(err, errAnswered):
		return LookupError, outcomeSuccess // 3xx: Composio is up, but no list came
	}
	if st, _ := StatusFor(err); st == http.StatusGatewayTimeout {
		return LookupTimeout, outcomeFailure
	}
	return LookupError, outcomeFailure
}

// errAnswered marks a 3xx answer: an error for the lookup, but proof that
// Composio is up, so no breaker failure.
var errAnswered = errors.New("answered")

func (c *ListClient) list(ctx context.Context, q ListQuery) (ListResult, error) {
	if !strings.HasPrefix(q.APIPrefix, "/") || q.UserID == "" || (q.AuthConfigID == "" && q.ToolkitSlug == "") ||
		strings.Contains(q.UserID, ",") || strings.Contains(q.AuthConfigID, ",") || strings.Contains(q.ToolkitSlug, ",") {
		return ListResult{}, fmt.Errorf("%w: prefix, user id and an auth config id or toolkit are required, without commas", ErrInvalidQuery)
	}
	u := *c.base
	u.Path += q.APIPrefix + "/connected_accounts"
	// The SDK's own encoding: keys sorted, arrays one comma-joined value with
	// the comma percent-encoded, a space as %20 (see queryEscape).
	// Written out by hand: this runs on every guarded request.
	var statuses string
	if len(q.Statuses) > 0 {
		statuses = strings.Join(q.Statuses, ",")
	}
	query := func(cursor string) string {
		var b strings.Builder
		b.Grow(128 + len(q.AuthConfigID) + len(q.ToolkitSlug) + len(q.UserID) + len(cursor))
		param := func(k, v string) {
			if b.Len() > 0 {
				b.WriteByte('&')
			}
			b.WriteString(k)
			b.WriteByte('=')
			queryEscape(&b, v)
		}
		if q.AccountType != "" {
			param("account_type", q.AccountType)
		}
		if q.AuthConfigID != "" {
			param("auth_config_ids", q.AuthConfigID)
		}
		if cursor != "" {
			param("cursor", cursor)
		}
		if c.limit != "" {
			param("limit", c.limit)
		}
		if statuses != "" {
			param("statuses", statuses)
		}
		if q.ToolkitSlug != "" {
			param("toolkit_slugs", q.ToolkitSlug)
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
	known := [...]string{StatusActive, StatusInitiated, q.UserID, q.AuthConfigID, q.ToolkitSlug}
	var res ListResult
	cursor := ""
	for page := 1; ; page++ {
		u.RawQuery = query(cursor)
		seen := len(res.Items)
		next, err := c.page(ctx, u.String(), hdr, &res, q.ToolkitSlug != "", known[:])
		if err != nil {
			return ListResult{}, fmt.Errorf("lookup page %d: %w", page, err)
		}
		if next == "" {
			if res.Total > int64(len(res.Items)) {
				// Composio has been seen to end the cursor early (next_cursor
				// null while items remain): an unread page may hold the
				// ACTIVE account. What the caller's own accounts make
				// unreadable is refused, never passed (ErrTooManyPages).
				return ListResult{}, fmt.Errorf("%w: the pages ended after %d accounts, total_items says %d", ErrTooManyPages, len(res.Items), res.Total)
			}
			return res, nil
		}
		// One matching ACTIVE account settles a duplicate check: the pages
		// behind it would cost calls (and, past MaxPages, the answer).
		if q.StopAtActive && activeMatch(res.Items[seen:], &q) {
			res.Partial = true
			return res, nil
		}
		if page >= c.pages {
			return ListResult{}, fmt.Errorf("%w (%d pages read)", ErrTooManyPages, page)
		}
		cursor = next
	}
}

// activeMatch reports whether items hold an ACTIVE account that Matches q.
func activeMatch(items []Account, q *ListQuery) bool {
	for i := range items {
		if items[i].Status == StatusActive && items[i].Matches(*q) {
			return true
		}
	}
	return false
}

// queryEscape writes v as a query component: what url.QueryEscape makes,
// except a space, which is %20 (as the SDKs send it) and not '+'. Nothing
// but letters, digits and "-_.~" is left as is, so a literal '+' is %2B and
// can never be read as a space.
func queryEscape(b *strings.Builder, v string) {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_', c == '.', c == '~':
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
}

// acceptJSON is shared by every lookup; nothing changes it.
var acceptJSON = []string{"application/json"}

// page reads one page into res and returns the next cursor ("" at the end).
func (c *ListClient) page(ctx context.Context, rawURL string, hdr http.Header, res *ListResult, withToolkit bool, known []string) (string, error) {
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
	case code >= 500 || code < 200 || code == http.StatusRequestTimeout:
		// 408: Composio (or its front) gave up waiting for a request it
		// had all of; nothing in the query causes that.
		return "", fmt.Errorf("%w: %d", ErrUnexpectedStatus, code)
	case code >= 400:
		// The query is the caller's (its ids, its API version): a 4xx
		// here must not read as Composio failing.
		return "", fmt.Errorf("%w: %w: %d", ErrQueryRefused, ErrUnexpectedStatus, code)
	case code >= 300:
		return "", fmt.Errorf("%w: %d: %w", ErrUnexpectedStatus, code, errAnswered)
	}
	next, err := decodePage(resp.Body, res, withToolkit, known...)
	if err != nil {
		// An unknown item was read whole: the context has no part in it.
		if ce := ctx.Err(); ce != nil && !errors.Is(err, ErrUnknownItem) {
			return "", fmt.Errorf("reading the answer: %w: %w", ce, err)
		}
		return "", err
	}
	return next, nil
}

// decodePage reads one list answer, appends its items to res and returns
// the next cursor ("" on the last page). A string equal to one of known is
// that very string. Anything but the expected JSON is ErrBadAnswer; an item
// without id or status is ErrUnknownItem.
func decodePage(body io.Reader, res *ListResult, withToolkit bool, known ...string) (string, error) {
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
	items, hasItems, next, total, err := parseListPage(buf.Bytes(), res.Items[n:], known, withToolkit)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadAnswer, err)
	}
	if !hasItems {
		return "", fmt.Errorf("%w: no items", ErrBadAnswer)
	}
	for i := range items {
		// An item the guard cannot classify might be the ACTIVE one:
		// skipping it would be a silent miss. user_id (deprecated) and
		// auth_config.id may be absent: see Account.Matches.
		if items[i].ID == "" || items[i].Status == "" {
			return "", fmt.Errorf("%w: item %d", ErrUnknownItem, i)
		}
	}
	res.Items = append(res.Items, items...)
	if total >= 0 {
		res.Total = total
	}
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
