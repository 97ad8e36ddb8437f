package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Scan defaults and caps.
const (
	// MaxPageSize is the largest page Composio's list accepts (limit), as
	// far as known (the fake's cap); see fallbackPageSize.
	MaxPageSize = 1000
	// fallbackPageSize is asked once when the first page's limit is refused.
	fallbackPageSize = 100
	// DefaultPendingTTL is the guard's GUARD_PENDING_MAX_TTL default.
	DefaultPendingTTL = 15 * time.Minute
	// MaxPageBytes caps one list answer read into memory.
	MaxPageBytes = 64 << 20
	// DefaultMaxRetries bounds the retries of one page (429, 5xx, network).
	DefaultMaxRetries = 5
	// DefaultMaxWait caps one wait before a retry, whatever Retry-After says.
	DefaultMaxWait = 2 * time.Minute
	// DefaultLowRemaining: at or below this X-RateLimit-Remaining the scan
	// spreads its next calls over the rest of the window.
	DefaultLowRemaining = 50
	// DefaultMaxPause caps one such pause.
	DefaultMaxPause = 10 * time.Second
	// DefaultWindow is the rate-limit window when X-RateLimit-Window-Size is absent.
	DefaultWindow = time.Minute
)

// Filter narrows the scan.
type Filter struct {
	AuthConfigIDs []string // auth_config_ids
	Toolkits      []string // toolkit_slugs
	UserIDs       []string // user_ids
	// IncludeInitiated lists INITIATED accounts too (statuses=ACTIVE,INITIATED)
	// and so applies the pending rules; without it only ACTIVE accounts are
	// listed and a duplicate is more than one ACTIVE account.
	IncludeInitiated bool
	// Since keeps the duplicate groups with a counted account created at or
	// after it (see Rules.Since); every account is still scanned, since an
	// older account is the other half of a newer duplicate.
	Since time.Time
}

// Options are one scan's target, credential and limits.
type Options struct {
	BaseURL   *url.URL    // Composio (GUARD_UPSTREAM_URL)
	APIPrefix string      // "/api/v3" or "/api/v3.1" (default)
	Header    http.Header // the credential headers, sent on every call and never shown
	// Client is the scan's own client (its own transport and timeouts);
	// nil: NewClient().
	Client     *http.Client
	UserAgent  string
	PageSize   int           // default and cap MaxPageSize
	PendingTTL time.Duration // default DefaultPendingTTL
	Filter     Filter

	MaxRetries   int           // default DefaultMaxRetries; negative: none
	MaxWait      time.Duration // default DefaultMaxWait
	LowRemaining int           // default DefaultLowRemaining; negative: never slow down
	MaxPause     time.Duration // default DefaultMaxPause
	// MinInterval is a rate cap: at least this long from one call's answer
	// to the next call (the periodic audit's rate cap). 0: no cap.
	MinInterval time.Duration

	Now      func() time.Time // default time.Now
	Progress func(Progress)   // after every page; nil: none
	Warn     func(string)     // warnings; nil: dropped
}

// Progress is reported after every page.
type Progress struct {
	Pages   int
	Scanned int
	Total   int64 // total_items of the last page; -1 unknown
	Elapsed time.Duration
}

// Report is a scan's result. A Report with Complete false is partial: its
// groups are what the pages read hold, and it must not read as clean.
type Report struct {
	Groups     []Group
	Totals     Totals
	Scanned    int   // accounts listed
	TotalItems int64 // total_items Composio reported; -1 when it never did
	Pages      int
	Duration   time.Duration
	Complete   bool
	// Incomplete says why Complete is false.
	Incomplete string
}

// ErrPartial is a scan that read fewer accounts than Composio said exist
// (or could not check it).
var ErrPartial = errors.New("partial result")

// ErrBadAnswer is a list answer that is not the expected JSON.
var ErrBadAnswer = errors.New("the list answer is not the expected JSON")

// Reason names why a scan did not complete, for
// composio_guard_audit_errors_total (metrics.AuditErrorReasons).
func Reason(err error) string {
	if es, ok := errors.AsType[*errStatus](err); ok {
		switch {
		case es.code == http.StatusTooManyRequests:
			return "rate_limited"
		case es.code >= 500 || es.code == http.StatusRequestTimeout:
			return "upstream"
		}
		return "refused"
	}
	switch {
	case errors.Is(err, ErrPartial):
		return "partial"
	case errors.Is(err, ErrBadAnswer):
		return "bad_answer"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	return "upstream"
}

// NewClient is the scan's own HTTP client: its own transport and
// connection pool, with timeouts, never the proxy's.
func NewClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ResponseHeaderTimeout = 60 * time.Second
	tr.MaxIdleConnsPerHost = 2
	return &http.Client{Transport: tr, Timeout: 5 * time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// Run scans one project and applies the duplicate rules. It returns a
// Report always; err is nil only for a complete scan. A scan that could
// not finish returns what it read (Complete false) with the reason.
func Run(ctx context.Context, o Options) (*Report, error) {
	s := newScanner(o)
	start := s.now()
	rep := &Report{TotalItems: -1}
	g := NewGrouper(0)
	err := s.scan(ctx, g, rep, start)
	rep.Groups, rep.Totals = g.Duplicates(Rules{PendingTTL: s.ttl, Now: s.now(), Since: o.Filter.Since})
	rep.Duration = s.now().Sub(start)
	if err == nil && g.Unplaceable > 0 {
		err = fmt.Errorf("%w: %d listed accounts lack user_id or auth_config.id and cannot be grouped", ErrPartial, g.Unplaceable)
	}
	if err != nil {
		rep.Incomplete = err.Error()
		return rep, err
	}
	rep.Complete = true
	return rep, nil
}

type scanner struct {
	o        Options
	client   *http.Client
	now      func() time.Time
	ttl      time.Duration
	pageSize int
	last     time.Time // when the last call's answer came, for MinInterval
	pause    time.Duration
}

func newScanner(o Options) *scanner {
	s := &scanner{o: o, client: o.Client, now: o.Now, ttl: o.PendingTTL, pageSize: o.PageSize}
	if s.client == nil {
		s.client = NewClient()
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.ttl <= 0 {
		s.ttl = DefaultPendingTTL
	}
	if s.pageSize <= 0 || s.pageSize > MaxPageSize {
		s.pageSize = MaxPageSize
	}
	if s.o.APIPrefix == "" {
		s.o.APIPrefix = "/api/v3.1"
	}
	if s.o.MaxRetries == 0 {
		s.o.MaxRetries = DefaultMaxRetries
	}
	if s.o.MaxWait <= 0 {
		s.o.MaxWait = DefaultMaxWait
	}
	if s.o.LowRemaining == 0 {
		s.o.LowRemaining = DefaultLowRemaining
	}
	if s.o.MaxPause <= 0 {
		s.o.MaxPause = DefaultMaxPause
	}
	return s
}

func (s *scanner) warn(format string, a ...any) {
	if s.o.Warn != nil {
		s.o.Warn(fmt.Sprintf(format, a...))
	}
}

// query is the list call's query: the SDK's encoding (one comma-joined
// parameter per array), keys sorted.
func (s *scanner) query(cursor string) string {
	f := s.o.Filter
	v := url.Values{}
	if s.o.APIPrefix != "/api/v3" {
		v.Set("account_type", "ALL") // v3.1+: every type, not PRIVATE only
	}
	if len(f.AuthConfigIDs) > 0 {
		v.Set("auth_config_ids", strings.Join(f.AuthConfigIDs, ","))
	}
	if cursor != "" {
		v.Set("cursor", cursor)
	}
	v.Set("limit", strconv.Itoa(s.pageSize))
	if f.IncludeInitiated {
		v.Set("statuses", StatusActive+","+StatusInitiated)
	} else {
		v.Set("statuses", StatusActive)
	}
	if len(f.Toolkits) > 0 {
		v.Set("toolkit_slugs", strings.Join(f.Toolkits, ","))
	}
	if len(f.UserIDs) > 0 {
		v.Set("user_ids", strings.Join(f.UserIDs, ","))
	}
	return strings.ReplaceAll(v.Encode(), "+", "%20")
}

func (s *scanner) scan(ctx context.Context, g *Grouper, rep *Report, start time.Time) error {
	base := *s.o.BaseURL
	base.Path = strings.TrimRight(base.Path, "/") + s.o.APIPrefix + "/connected_accounts"
	base.RawPath = ""
	match := newMatcher(s.o.Filter)
	cursors := map[string]bool{}
	cursor := ""
	var buf bytes.Buffer
	for {
		u := base
		u.RawQuery = s.query(cursor)
		if err := s.fetch(ctx, u.String(), &buf); err != nil {
			// The largest page Composio accepts is not documented: should
			// it refuse limit=1000, fall back once to its SDKs' usual 100.
			if es, ok := errors.AsType[*errStatus](err); ok && rep.Pages == 0 && s.pageSize > fallbackPageSize &&
				(es.code == http.StatusBadRequest || es.code == http.StatusUnprocessableEntity) {
				s.warn("Composio refused limit=%d (%d); asking pages of %d", s.pageSize, es.code, fallbackPageSize)
				s.pageSize = fallbackPageSize
				continue
			}
			return fmt.Errorf("page %d: %w", rep.Pages+1, err)
		}
		pg, err := parsePage(buf.Bytes(), func(it *Item) error {
			if it.ID == "" || it.Status == "" {
				return errors.New("a listed account lacks id or status")
			}
			rep.Scanned++
			if match(it) {
				g.Add(it)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("page %d: %w: %w", rep.Pages+1, ErrBadAnswer, err)
		}
		rep.Pages++
		if pg.hasTotal {
			rep.TotalItems = pg.total
		}
		if s.o.Progress != nil {
			s.o.Progress(Progress{Pages: rep.Pages, Scanned: rep.Scanned, Total: rep.TotalItems, Elapsed: s.now().Sub(start)})
		}
		if pg.next == "" {
			break
		}
		if pg.items == 0 {
			return fmt.Errorf("%w: page %d is empty but names a next page", ErrPartial, rep.Pages)
		}
		if rep.TotalItems >= 0 && int64(rep.Scanned) > 2*rep.TotalItems+int64(s.pageSize) {
			// New cursors over the same accounts: it would never end.
			return fmt.Errorf("%w: pagination runs on past twice total_items (%d accounts read, total_items %d)",
				ErrPartial, rep.Scanned, rep.TotalItems)
		}
		if cursors[pg.next] {
			return fmt.Errorf("%w: page %d repeats an earlier next_cursor", ErrPartial, rep.Pages)
		}
		cursors[pg.next] = true
		cursor = pg.next
	}
	switch {
	case rep.TotalItems < 0:
		return fmt.Errorf("%w: Composio did not report total_items, so the count cannot be checked", ErrPartial)
	case int64(rep.Scanned) < rep.TotalItems:
		return fmt.Errorf("%w: read %d accounts but Composio reports total_items %d (next_cursor ended early)",
			ErrPartial, rep.Scanned, rep.TotalItems)
	case int64(rep.Scanned) > rep.TotalItems:
		s.warn("read %d accounts, more than total_items %d: accounts were added during the scan", rep.Scanned, rep.TotalItems)
	}
	return nil
}

// newMatcher drops an item that contradicts the filter (a server that
// ignored a parameter), folding ids as the guard does.
func newMatcher(f Filter) func(*Item) bool {
	set := func(vs []string) map[string]bool {
		if len(vs) == 0 {
			return nil
		}
		m := make(map[string]bool, len(vs))
		for _, v := range vs {
			m[foldID(v)] = true
		}
		return m
	}
	users, configs, kits := set(f.UserIDs), set(f.AuthConfigIDs), set(f.Toolkits)
	in := func(m map[string]bool, v string) bool { return m == nil || v == "" || m[foldID(v)] }
	return func(it *Item) bool {
		if it.Status == StatusInitiated && !f.IncludeInitiated {
			return false
		}
		return in(users, it.UserID) && in(configs, it.AuthConfigID) && in(kits, it.Toolkit)
	}
}

func foldID(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// errStatus is a list answer that is no page.
type errStatus struct {
	code    int
	message string // Composio's error.message, when it sent one
}

func (e *errStatus) Error() string {
	msg := fmt.Sprintf("Composio answered %d %s", e.code, http.StatusText(e.code))
	switch e.code {
	case http.StatusUnauthorized:
		msg += " (check the credential in the environment)"
	case http.StatusForbidden:
		msg += " (the key may not be allowed to list connected accounts)"
	}
	if e.message != "" {
		msg += ": " + e.message
	}
	return msg
}

// fetch GETs one page into buf, retrying 429 (after Retry-After), 5xx and
// network failures up to MaxRetries times, and pacing calls as the rate
// limit runs low.
func (s *scanner) fetch(ctx context.Context, rawURL string, buf *bytes.Buffer) error {
	backoff := time.Second
	for attempt := 0; ; attempt++ {
		if err := s.wait(ctx); err != nil {
			return err
		}
		retryIn, err := s.once(ctx, rawURL, buf)
		s.last = s.now()
		if err == nil {
			return nil
		}
		if retryIn < 0 || attempt >= s.o.MaxRetries || s.o.MaxRetries < 0 {
			if retryIn >= 0 && s.o.MaxRetries >= 0 {
				err = fmt.Errorf("%w (after %d retries)", err, attempt)
			}
			return err
		}
		if retryIn == 0 {
			retryIn = backoff
			backoff = min(backoff*2, s.o.MaxWait)
		}
		retryIn = min(retryIn, s.o.MaxWait)
		s.warn("%v; retrying in %s", err, retryIn.Round(time.Millisecond))
		if err := sleep(ctx, retryIn); err != nil {
			return err
		}
	}
}

// wait holds the next call for the rate cap and the pacing pause.
func (s *scanner) wait(ctx context.Context) error {
	d := s.pause
	s.pause = 0
	if s.o.MinInterval > 0 && !s.last.IsZero() {
		d = max(d, s.o.MinInterval-s.now().Sub(s.last))
	}
	if d > 0 {
		return sleep(ctx, d)
	}
	return nil
}

// once sends one GET. retryIn is -1 when the error is final, 0 for a
// retry after the back-off, else the server's Retry-After.
func (s *scanner) once(ctx context.Context, rawURL string, buf *bytes.Buffer) (retryIn time.Duration, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return -1, err
	}
	for k, vs := range s.o.Header {
		req.Header[k] = vs
	}
	req.Header.Set("Accept", "application/json")
	if s.o.UserAgent != "" {
		req.Header.Set("User-Agent", s.o.UserAgent)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return -1, ctx.Err()
		}
		return 0, fmt.Errorf("calling Composio: %w", scrub(err))
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		_ = resp.Body.Close()
	}()
	s.pace(resp.Header)
	buf.Reset()
	n, rerr := buf.ReadFrom(io.LimitReader(resp.Body, MaxPageBytes+1))
	switch code := resp.StatusCode; {
	case code == http.StatusTooManyRequests:
		// Without Retry-After (0) the back-off applies.
		return retryAfter(resp.Header.Get("Retry-After"), s.now()), &errStatus{code: code}
	case code >= 500 || code == http.StatusRequestTimeout:
		return 0, &errStatus{code: code, message: s.envelopeMessage(buf.Bytes())}
	case code < 200 || code >= 300:
		return -1, &errStatus{code: code, message: s.envelopeMessage(buf.Bytes())}
	case rerr != nil:
		if ctx.Err() != nil {
			return -1, ctx.Err()
		}
		return 0, fmt.Errorf("reading the list answer: %w", scrub(rerr))
	case n > MaxPageBytes:
		return -1, fmt.Errorf("%w: larger than %d bytes", ErrBadAnswer, MaxPageBytes)
	}
	return 0, nil
}

// scrub drops the URL from a client error: it names only the host and
// query (no credential is in either), but keeps messages short.
func scrub(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return ue.Err
	}
	return err
}

// pace sets the pause before the next call from the rate-limit headers:
// at or below LowRemaining calls left, the rest of the window is spread
// over them (window / (remaining+1)), capped by MaxPause.
func (s *scanner) pace(h http.Header) {
	v := h.Get("X-RateLimit-Remaining")
	if v == "" || s.o.LowRemaining < 0 {
		return
	}
	left, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || left > s.o.LowRemaining {
		return
	}
	window := DefaultWindow
	if ws := strings.TrimSpace(h.Get("X-RateLimit-Window-Size")); ws != "" {
		if d, err := time.ParseDuration(ws); err == nil && d > 0 {
			window = d
		} else if n, err := strconv.Atoi(ws); err == nil && n > 0 {
			window = time.Duration(n) * time.Second
		}
	}
	s.pause = min(window/time.Duration(max(left, 0)+1), s.o.MaxPause)
}

// retryAfter reads Retry-After (seconds or an HTTP date); 0 when absent.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseFloat(v, 64); err == nil && n >= 0 {
		return time.Duration(n * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0)
	}
	return 0
}

// envelopeMessage is error.message of Composio's error envelope ("" when
// the body is not one), fit to print: every credential value sent masked (an
// answer may echo the key it refused), then cut short, control characters
// blanked.
func (s *scanner) envelopeMessage(b []byte) string {
	msg := parseEnvelope(b)
	for _, vs := range s.o.Header {
		for _, v := range vs {
			if v = strings.TrimSpace(v); v != "" {
				msg = strings.ReplaceAll(msg, v, "[redacted]")
			}
		}
	}
	if len(msg) > 200 {
		msg = msg[:200] + "…"
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, msg)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
