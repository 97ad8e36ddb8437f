package composiotest

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/composio-guard/composio-guard/internal/apierror"
)

// Route names: the closed set used by faults, the request log and Count.
const (
	RouteList          = "list"
	RouteLink          = "link"
	RouteCreate        = "create"
	RouteGet           = "get"
	RouteDelete        = "delete"
	RouteSessionCreate = "session_create"
	RouteSessionUpdate = "session_update"
	RouteSessionGet    = "session_get"
	RouteSessionLink   = "session_link"
	RouteOther         = "other" // no such route: answered 404
	RouteAny           = "any"   // faults only: every Composio route
)

var routeNames = map[string]bool{
	RouteList: true, RouteLink: true, RouteCreate: true, RouteGet: true, RouteDelete: true,
	RouteSessionCreate: true, RouteSessionUpdate: true, RouteSessionGet: true,
	RouteSessionLink: true, RouteOther: true, RouteAny: true,
}

// Defaults of the real API (2,000 requests a minute on the smallest plan).
const (
	DefaultRateLimit = 2000
	DefaultPageSize  = 20
	MaxPageSize      = 1000
	LinkTTL          = 10 * time.Minute
	maxBodyBytes     = 8 << 20
)

// Fake is the fake Composio. It is an http.Handler; all methods are safe for
// concurrent use.
type Fake struct {
	now            func() time.Time
	rateLimit      int
	rateEnforced   bool
	pageSize       int
	defaultToolkit string
	toolkits       map[string]string // auth config id -> toolkit slug
	managedOAuth   map[string]bool   // legacy create refused on these auth configs
	logLimit       int

	mu       sync.Mutex
	seq      int64
	accounts map[string]*Account
	order    []*Account // every stored account in seq order; removed ones marked gone
	gone     int        // removed accounts still in order
	sessions map[string]*session
	faults   map[string]*faultState
	log      []Request
	counts   map[countKey]int
	windows  map[string]*rateWindow

	closeOnce sync.Once
	closed    chan struct{}
}

// Option configures a Fake.
type Option func(*Fake)

// WithClock sets the time source (timestamps, link expiry, rate-limit windows).
func WithClock(now func() time.Time) Option { return func(f *Fake) { f.now = now } }

// WithRateLimit sets the requests allowed per credential per minute
// (X-RateLimit); default DefaultRateLimit.
func WithRateLimit(n int) Option { return func(f *Fake) { f.rateLimit = n } }

// WithRateLimitEnforced makes a request beyond the window's budget answer 429
// with Retry-After, as the real API does. Off by default so that soak tests
// are not throttled.
func WithRateLimitEnforced() Option { return func(f *Fake) { f.rateEnforced = true } }

// WithPageSize sets the list page size used when the request has no limit.
func WithPageSize(n int) Option { return func(f *Fake) { f.pageSize = n } }

// WithDefaultToolkit sets the toolkit slug of accounts whose auth config has
// none set with WithToolkit; default "github".
func WithDefaultToolkit(slug string) Option { return func(f *Fake) { f.defaultToolkit = slug } }

// WithToolkit maps an auth config to the toolkit of the accounts created on it.
func WithToolkit(authConfigID, slug string) Option {
	return func(f *Fake) { f.toolkits[authConfigID] = slug }
}

// WithManagedOAuth marks auth configs as Composio-managed OAuth: the legacy
// create answers 400 on them, as the real API does since the link migration.
func WithManagedOAuth(authConfigIDs ...string) Option {
	return func(f *Fake) {
		for _, id := range authConfigIDs {
			f.managedOAuth[id] = true
		}
	}
}

// WithRequestLogLimit keeps only the last n requests in the log (default
// 10000); Count keeps counting past it.
func WithRequestLogLimit(n int) Option { return func(f *Fake) { f.logLimit = n } }

// New returns an empty fake.
func New(opts ...Option) *Fake {
	f := &Fake{
		now:            time.Now,
		rateLimit:      DefaultRateLimit,
		pageSize:       DefaultPageSize,
		defaultToolkit: "github",
		toolkits:       map[string]string{},
		managedOAuth:   map[string]bool{},
		logLimit:       10000,
		accounts:       map[string]*Account{},
		sessions:       map[string]*session{},
		faults:         map[string]*faultState{},
		counts:         map[countKey]int{},
		windows:        map[string]*rateWindow{},
		closed:         make(chan struct{}),
	}
	for _, o := range opts {
		o(f)
	}
	return f
}

// Close releases requests held by hang and latency faults. The fake keeps
// answering afterwards, without those faults' waits.
func (f *Fake) Close() { f.closeOnce.Do(func() { close(f.closed) }) }

var apiPath = regexp.MustCompile(`^/api/v3(?:\.[0-9]+)?(/.*)$`)

// classify names the route of a request and extracts its id, if any.
func classify(method, path string) (route, id string) {
	m := apiPath.FindStringSubmatch(path)
	if m == nil {
		return RouteOther, ""
	}
	seg := strings.Split(strings.TrimPrefix(m[1], "/"), "/")
	switch {
	case len(seg) == 1 && seg[0] == "connected_accounts":
		switch method {
		case http.MethodGet:
			return RouteList, ""
		case http.MethodPost:
			return RouteCreate, ""
		}
	case len(seg) == 2 && seg[0] == "connected_accounts" && seg[1] == "link" && method == http.MethodPost:
		return RouteLink, ""
	case len(seg) == 2 && seg[0] == "connected_accounts" && seg[1] != "":
		switch method {
		case http.MethodGet:
			return RouteGet, seg[1]
		case http.MethodDelete:
			return RouteDelete, seg[1]
		}
	case len(seg) == 2 && seg[0] == "tool_router" && seg[1] == "session" && method == http.MethodPost:
		return RouteSessionCreate, ""
	case len(seg) == 3 && seg[0] == "tool_router" && seg[1] == "session" && seg[2] != "":
		switch method {
		case http.MethodPatch:
			return RouteSessionUpdate, seg[2]
		case http.MethodGet:
			return RouteSessionGet, seg[2]
		}
	case len(seg) == 4 && seg[0] == "tool_router" && seg[1] == "session" && seg[2] != "" && seg[3] == "link" && method == http.MethodPost:
		return RouteSessionLink, seg[2]
	}
	return RouteOther, ""
}

// ServeHTTP answers one request.
func (f *Fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/_fake" || strings.HasPrefix(r.URL.Path, "/_fake/") {
		f.serveControl(w, r)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes))
	if err != nil {
		// The client went away mid-body; nobody is left to answer.
		return
	}
	route, id := classify(r.Method, r.URL.Path)
	f.record(r, route, body)

	project, credErr := ProjectOf(r.Header)
	retryAfter := f.countRate(w.Header(), project)
	if rid := r.Header.Get("X-Request-Id"); rid != "" {
		w.Header().Set("X-Request-Id", rid)
	}

	nullAfter := 0 // the pagination quirk (Fault.CursorNullAfter)
	if fl, ok := f.takeFault(route); ok {
		nullAfter = fl.CursorNullAfter
		if f.applyFault(w, r, fl, func(w http.ResponseWriter) {
			f.handle(w, r, route, id, project, credErr, body, retryAfter, nullAfter)
		}) {
			return
		}
	}
	f.handle(w, r, route, id, project, credErr, body, retryAfter, nullAfter)
}

func (f *Fake) handle(w http.ResponseWriter, r *http.Request, route, id, project string, credErr error, body []byte, retryAfter, nullAfter int) {
	if credErr != nil {
		writeError(w, r, http.StatusUnauthorized, CodeUnauthorized, SlugUnauthorized, credErr.Error(),
			"Send exactly one credential header: x-api-key, x-user-api-key or x-org-api-key.")
		return
	}
	if retryAfter > 0 {
		// The real API's 429 body is not the error envelope.
		w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
		writeJSON(w, http.StatusTooManyRequests, map[string]string{
			"message": "Rate limit exceeded. Please retry after " + strconv.Itoa(retryAfter) + " seconds.",
		})
		return
	}
	switch route {
	case RouteList:
		f.handleList(w, r, project, nullAfter)
	case RouteLink:
		f.handleLink(w, r, project, body)
	case RouteCreate:
		f.handleCreate(w, r, project, body)
	case RouteGet:
		f.handleGet(w, r, project, id)
	case RouteDelete:
		f.handleDelete(w, r, project, id)
	case RouteSessionCreate:
		f.handleSessionCreate(w, r, project, body)
	case RouteSessionUpdate:
		f.handleSessionUpdate(w, r, project, id, body)
	case RouteSessionGet:
		f.handleSessionGet(w, r, project, id)
	case RouteSessionLink:
		f.handleSessionLink(w, r, project, id, body)
	default:
		writeError(w, r, http.StatusNotFound, CodeNotFound, SlugNotFound,
			"Cannot "+r.Method+" "+r.URL.Path, "Check the method and path against the Composio API reference.")
	}
}

// Credential header names.
const (
	HeaderAPIKey     = "X-Api-Key"
	HeaderUserAPIKey = "X-User-Api-Key"
	HeaderOrgAPIKey  = "X-Org-Api-Key"
	HeaderOrgID      = "X-Org-Id"
	HeaderProjectID  = "X-Project-Id"
)

// Errors of ProjectOf.
var (
	ErrNoCredential   = errors.New("missing credential: no x-api-key, x-user-api-key or x-org-api-key header")
	ErrTwoCredentials = errors.New("more than one credential header")
)

// ProjectOf names the project a request's credential opens, the key of the
// fake's state partition: the x-api-key value itself; "user:KEY|org:ORG|project:PROJECT"
// for x-user-api-key; "org:KEY|project:PROJECT" for x-org-api-key.
func ProjectOf(h http.Header) (string, error) {
	api, user, org := h.Get(HeaderAPIKey), h.Get(HeaderUserAPIKey), h.Get(HeaderOrgAPIKey)
	n := 0
	for _, v := range []string{api, user, org} {
		if v != "" {
			n++
		}
	}
	switch {
	case n == 0:
		return "", ErrNoCredential
	case n > 1:
		return "", ErrTwoCredentials
	case api != "":
		return api, nil
	case user != "":
		return "user:" + user + "|org:" + h.Get(HeaderOrgID) + "|project:" + h.Get(HeaderProjectID), nil
	default:
		return "org:" + org + "|project:" + h.Get(HeaderProjectID), nil
	}
}

type rateWindow struct {
	start time.Time
	used  int
}

// countRate charges one request to the project's window, sets the rate-limit
// headers, and returns the seconds to wait when the budget is spent and
// enforced (else 0).
func (f *Fake) countRate(h http.Header, project string) int {
	now := f.now()
	f.mu.Lock()
	win := f.windows[project]
	start := now.Truncate(time.Minute)
	if win == nil || !win.start.Equal(start) {
		win = &rateWindow{start: start}
		f.windows[project] = win
	}
	win.used++
	used := win.used
	f.mu.Unlock()

	remaining := max(f.rateLimit-used, 0)
	h.Set("X-RateLimit", strconv.Itoa(f.rateLimit))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(remaining))
	h.Set("X-RateLimit-Window-Size", "60s")
	if f.rateEnforced && used > f.rateLimit {
		return max(int(start.Add(time.Minute).Sub(now).Seconds()+0.999), 1)
	}
	return 0
}

// Codes and slugs of the errors the fake writes. ConnectedAccount_BadRequest
// (600) is the real one; the others are the fake's own (the real ones are not
// documented).
const (
	CodeBadRequest   = 600
	CodeNotFound     = 601
	CodeUnauthorized = 301
	CodeForbidden    = 303
	SlugBadRequest   = "ConnectedAccount_BadRequest"
	SlugNotFound     = "NotFound"
	SlugUnauthorized = "Unauthorized"
	SlugForbidden    = "Forbidden"
)

// writeError sends Composio's error envelope. The body's request_id is the
// inbound X-Request-Id when there is one.
func writeError(w http.ResponseWriter, r *http.Request, status, code int, slug, msg, fix string, errs ...string) {
	rid := r.Header.Get("X-Request-Id")
	if rid == "" {
		rid = newUUID()
	}
	if errs == nil {
		errs = []string{}
	}
	// The same envelope type the proxy writes: its extension members are
	// omitted when empty, so the fake's bodies carry only Composio's members.
	writeJSON(w, status, map[string]*apierror.Error{"error": {
		Message: msg, Code: code, Slug: slug, Status: status, RequestID: rid, SuggestedFix: fix, Errors: errs,
	}})
}

// writeJSON renders v fully before sending the header.
func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// Only the fake's own types reach here; they always encode.
		http.Error(w, "fake composio: encode: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

const idAlphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

// newID returns prefix + 12 random characters, like Composio's nano ids.
func newID(prefix string) string {
	b := make([]byte, 12)
	_, _ = rand.Read(b) // crypto/rand never fails on Linux
	for i := range b {
		b[i] = idAlphabet[int(b[i])%len(idAlphabet)]
	}
	return prefix + string(b)
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	const hex = "0123456789abcdef"
	out := make([]byte, 0, 36)
	for i, c := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out = append(out, '-')
		}
		out = append(out, hex[c>>4], hex[c&0xf])
	}
	return string(out)
}

func timestamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }
