package upstream_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/composio-guard/composio-guard/internal/metrics"
	"github.com/composio-guard/composio-guard/internal/upstream"
)

type listEnv struct {
	srv  *httptest.Server
	rec  *recorder
	m    *metrics.Metrics
	c    *upstream.ListClient
	base string
}

// newListEnv serves h and builds a list client to it with s; o's Metrics is
// the env's own.
func newListEnv(t *testing.T, h http.HandlerFunc, s upstream.LookupSettings, opts ...upstream.ListOptions) *listEnv {
	t.Helper()
	e := &listEnv{rec: &recorder{}, m: metrics.New(metrics.Build{})}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.rec.add(r, nil)
		h(w, r)
	}))
	t.Cleanup(e.srv.Close)
	e.base = e.srv.URL
	tr := upstream.NewTransport(upstream.TransportSettings{})
	t.Cleanup(tr.CloseIdleConnections)
	var o upstream.ListOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	o.Metrics = e.m
	e.c = upstream.NewListClient(mustURL(t, e.base), tr, s, o)
	return e
}

// item renders a list item in the real answer's shape, extra members included.
func item(id, status, user, ac string) string {
	return fmt.Sprintf(`{"id":%q,"status":%q,"user_id":%q,"auth_config":{"id":%q,"is_composio_managed":true,"is_disabled":false},`+
		`"toolkit":{"slug":"github"},"created_at":"2026-04-28T10:00:00Z","updated_at":"2026-04-28T10:00:00Z","is_disabled":false,"data":{},"params":{}}`,
		id, status, user, ac)
}

func page(next string, items ...string) string {
	cursor := "null"
	if next != "" {
		cursor = fmt.Sprintf("%q", next)
	}
	return fmt.Sprintf(`{"items":[%s],"next_cursor":%s,"total_pages":1,"current_page":1,"total_items":%d}`,
		strings.Join(items, ","), cursor, len(items))
}

func serve(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, body)
	}
}

func query(prefix, user, ac, accountType string, h http.Header) upstream.ListQuery {
	return upstream.ListQuery{
		APIPrefix: prefix, UserID: user, AuthConfigID: ac, AccountType: accountType,
		Statuses: []string{upstream.StatusActive, upstream.StatusInitiated}, Header: h,
	}
}

// The query bytes are the SDK's own: sorted keys, one comma-joined value per
// array, the comma percent-encoded.
func TestListQueryBytes(t *testing.T) {
	tests := []struct {
		name         string
		q            upstream.ListQuery
		limit        int
		wantPath     string
		wantRawQuery string
	}{
		{"v3 as the SDK sends it", query("/api/v3", "u1", "ac_1", "", nil), 0,
			"/api/v3/connected_accounts", "auth_config_ids=ac_1&statuses=ACTIVE%2CINITIATED&user_ids=u1"},
		{"v3 with a page size", query("/api/v3", "u1", "ac_1", "", nil), 100,
			"/api/v3/connected_accounts", "auth_config_ids=ac_1&limit=100&statuses=ACTIVE%2CINITIATED&user_ids=u1"},
		{"v3.1 private", query("/api/v3.1", "u1", "ac_1", "", nil), 100,
			"/api/v3.1/connected_accounts", "auth_config_ids=ac_1&limit=100&statuses=ACTIVE%2CINITIATED&user_ids=u1"},
		{"v3.1 shared", query("/api/v3.1", "u1", "ac_1", "SHARED", nil), 100,
			"/api/v3.1/connected_accounts", "account_type=SHARED&auth_config_ids=ac_1&limit=100&statuses=ACTIVE%2CINITIATED&user_ids=u1"},
		{"ids needing escapes", query("/api/v3", "élève x&y=1", "ac/1", "", nil), 0,
			"/api/v3/connected_accounts", "auth_config_ids=ac%2F1&statuses=ACTIVE%2CINITIATED&user_ids=%C3%A9l%C3%A8ve%20x%26y%3D1"},
		{"active only", upstream.ListQuery{APIPrefix: "/api/v3", UserID: "u", AuthConfigID: "a", Statuses: []string{"ACTIVE"}}, 0,
			"/api/v3/connected_accounts", "auth_config_ids=a&statuses=ACTIVE&user_ids=u"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newListEnv(t, serve(page("")), upstream.LookupSettings{PageLimit: tc.limit})
			if _, err := e.c.List(context.Background(), tc.q); err != nil {
				t.Fatal(err)
			}
			seen := e.rec.all()
			if len(seen) != 1 || seen[0].Method != http.MethodGet || seen[0].Path != tc.wantPath || seen[0].RawQuery != tc.wantRawQuery {
				t.Fatalf("upstream saw %+v, want GET %s?%s", seen, tc.wantPath, tc.wantRawQuery)
			}
		})
	}
}

func TestListBasePathPrefix(t *testing.T) {
	e := newListEnv(t, serve(page("")), upstream.LookupSettings{})
	tr := upstream.NewTransport(upstream.TransportSettings{})
	defer tr.CloseIdleConnections()
	c := upstream.NewListClient(mustURL(t, e.base+"/composio/"), tr, upstream.LookupSettings{}, upstream.ListOptions{})
	if _, err := c.List(context.Background(), query("/api/v3", "u", "a", "", nil)); err != nil {
		t.Fatal(err)
	}
	if got := e.rec.all()[0].Path; got != "/composio/api/v3/connected_accounts" {
		t.Errorf("path %q", got)
	}
}

// The caller's credential headers and request id go up unchanged; nothing
// else of the caller's, and nothing else of ours but Accept and User-Agent.
func TestListHeaders(t *testing.T) {
	tests := []struct {
		name string
		h    http.Header
	}{
		{"project key", http.Header{"X-Api-Key": {"key_1"}, "X-Request-Id": {"rid-1"}}},
		{"user key with org and project", http.Header{"X-User-Api-Key": {"uk"}, "X-Org-Id": {"o"}, "X-Project-Id": {"p"}, "X-Request-Id": {"rid-2"}}},
		{"org key, lower-case name", http.Header{"x-org-api-key": {"ok"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newListEnv(t, serve(page("")), upstream.LookupSettings{}, upstream.ListOptions{UserAgent: "composio-guard/test"})
			if _, err := e.c.List(context.Background(), query("/api/v3", "u", "a", "", tc.h)); err != nil {
				t.Fatal(err)
			}
			got := e.rec.all()[0].Header
			want := http.Header{"Accept": {"application/json"}, "User-Agent": {"composio-guard/test"}}
			for k, v := range tc.h {
				want[http.CanonicalHeaderKey(k)] = v
			}
			if len(got) != len(want) {
				t.Errorf("upstream headers %v, want exactly %v", got, want)
			}
			for k, v := range want {
				if !slices.Equal(got[k], v) {
					t.Errorf("header %s = %q, want %q", k, got[k], v)
				}
			}
		})
	}
}

func TestListDecodesItems(t *testing.T) {
	e := newListEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-RateLimit-Remaining", "1500")
		serve(page("", item("ca_1", "ACTIVE", "u", "ac"), item("ca_2", "INITIATED", "u", "ac")))(w, r)
	}, upstream.LookupSettings{})
	ctx, s, _ := scoped(context.Background())
	res, err := e.c.List(ctx, query("/api/v3", "u", "ac", "", nil))
	if err != nil {
		t.Fatal(err)
	}
	created := time.Date(2026, 4, 28, 10, 0, 0, 0, time.UTC)
	want := []upstream.Account{
		{ID: "ca_1", Status: "ACTIVE", UserID: "u", AuthConfigID: "ac", CreatedAt: created},
		{ID: "ca_2", Status: "INITIATED", UserID: "u", AuthConfigID: "ac", CreatedAt: created},
	}
	if !slices.Equal(res.Items, want) {
		t.Errorf("items %+v, want %+v", res.Items, want)
	}
	if lookups(e.m, upstream.LookupOK) != 1 || value(e.m.RateLimitLeft) != 1500 {
		t.Errorf("lookup ok %v, rate limit %v", lookups(e.m, upstream.LookupOK), value(e.m.RateLimitLeft))
	}
	if s.LookupNanos.Load() <= 0 || s.UpstreamNanos.Load() < s.LookupNanos.Load() {
		t.Errorf("scope times: lookup %d upstream %d", s.LookupNanos.Load(), s.UpstreamNanos.Load())
	}
}

// An ACTIVE account behind the first page is found by following next_cursor.
func TestListFollowsCursor(t *testing.T) {
	pages := map[string]string{
		"":   page("c1", item("ca_1", "INITIATED", "u", "ac")),
		"c1": page("c2", item("ca_2", "INITIATED", "u", "ac")),
		"c2": page("", item("ca_3", "ACTIVE", "u", "ac")),
	}
	e := newListEnv(t, func(w http.ResponseWriter, r *http.Request) {
		serve(pages[r.URL.Query().Get("cursor")])(w, r)
	}, upstream.LookupSettings{PageLimit: 1, MaxPages: 3})
	res, err := e.c.List(context.Background(), query("/api/v3.1", "u", "ac", "", nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Items) != 3 || res.Items[2].ID != "ca_3" || res.Items[2].Status != "ACTIVE" {
		t.Errorf("items %+v", res.Items)
	}
	var raws []string
	for _, s := range e.rec.all() {
		raws = append(raws, s.RawQuery)
	}
	want := []string{
		"auth_config_ids=ac&limit=1&statuses=ACTIVE%2CINITIATED&user_ids=u",
		"auth_config_ids=ac&cursor=c1&limit=1&statuses=ACTIVE%2CINITIATED&user_ids=u",
		"auth_config_ids=ac&cursor=c2&limit=1&statuses=ACTIVE%2CINITIATED&user_ids=u",
	}
	if !slices.Equal(raws, want) {
		t.Errorf("queries\n%q\nwant\n%q", raws, want)
	}
}

func TestListMaxPagesExceeded(t *testing.T) {
	var n atomic.Int32
	e := newListEnv(t, func(w http.ResponseWriter, r *http.Request) {
		serve(page(fmt.Sprintf("c%d", n.Add(1)), item("ca", "INITIATED", "u", "ac")))(w, r)
	}, upstream.LookupSettings{MaxPages: 2})
	_, err := e.c.List(context.Background(), query("/api/v3", "u", "ac", "", nil))
	if !errors.Is(err, upstream.ErrTooManyPages) {
		t.Fatalf("err %v, want ErrTooManyPages", err)
	}
	if got := len(e.rec.all()); got != 2 {
		t.Errorf("%d pages asked, want 2", got)
	}
	// The user's own many accounts: caller-caused, not Composio failing.
	if lookups(e.m, upstream.LookupRejected) != 1 || lookups(e.m, upstream.LookupError) != 0 {
		t.Error("lookup not counted as rejected")
	}
}

// Answers the guard cannot use are errors, never a silent "no account".
// These are Composio's failures; the caller-caused ones (a 4xx, an item
// without id or status, too many pages) are in callercaused_test.go.
func TestListBadAnswers(t *testing.T) {
	truncated := func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		brw.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n" + `{"items":[` + item("ca_1", "ACTIVE", "u", "ac"))
		brw.Flush()
		conn.Close()
	}
	status := func(code int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			io.WriteString(w, `{"error":{"message":"x","status":`+fmt.Sprint(code)+`}}`)
		}
	}
	tests := []struct {
		name string
		h    http.HandlerFunc
		want error
	}{
		{"html", serve("<html>502 Bad Gateway</html>"), upstream.ErrBadAnswer},
		{"empty", serve(""), upstream.ErrBadAnswer},
		{"truncated", truncated, nil},
		{"no items member", serve(`{"data":[]}`), upstream.ErrBadAnswer},
		{"items null", serve(`{"items":null}`), upstream.ErrBadAnswer},
		{"items not a list", serve(`{"items":{"id":"ca"}}`), upstream.ErrBadAnswer},
		{"item not an object", serve(`{"items":[1]}`), upstream.ErrBadAnswer},
		{"item id not a string", serve(`{"items":[{"id":7,"status":"ACTIVE"}]}`), upstream.ErrBadAnswer},
		{"item auth_config not an object", serve(`{"items":[{"id":"ca","status":"ACTIVE","auth_config":"ac"}]}`), upstream.ErrBadAnswer},
		{"cursor not a string", serve(`{"items":[],"next_cursor":5}`), upstream.ErrBadAnswer},
		{"trailing data", serve(page("") + `{"items":[]}`), upstream.ErrBadAnswer},
		{"500", status(500), upstream.ErrUnexpectedStatus},
		{"502", status(502), upstream.ErrUnexpectedStatus},
		{"503", status(503), upstream.ErrUnexpectedStatus},
		{"408", status(408), upstream.ErrUnexpectedStatus},
		{"redirect", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://127.0.0.1:1/", http.StatusFound)
		}, upstream.ErrUnexpectedStatus},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newListEnv(t, tc.h, upstream.LookupSettings{})
			res, err := e.c.List(context.Background(), query("/api/v3", "u", "ac", "", nil))
			if err == nil {
				t.Fatalf("no error; items %+v", res.Items)
			}
			var se *upstream.StatusError
			if errors.As(err, &se) {
				t.Errorf("StatusError for a failure the caller must not see: %v", err)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("err %v, want %v", err, tc.want)
			}
			if upstream.CallerCaused(err) {
				t.Errorf("Composio's failure %v reads as caller-caused", err)
			}
			if len(res.Items) != 0 {
				t.Errorf("partial items returned: %+v", res.Items)
			}
			if got := lookups(e.m, upstream.LookupError); got != 1 {
				t.Errorf("lookup{error} = %v, want 1", got)
			}
		})
	}
}

func TestListTimeout(t *testing.T) {
	tests := []struct {
		name string
		h    http.HandlerFunc
	}{
		{"no answer", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }},
		{"answer stalls mid-body", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "1000")
			io.WriteString(w, `{"items":[`)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newListEnv(t, tc.h, upstream.LookupSettings{Timeout: 100 * time.Millisecond})
			_, err := e.c.List(context.Background(), query("/api/v3", "u", "ac", "", nil))
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("err %v, want DeadlineExceeded", err)
			}
			if got := lookups(e.m, upstream.LookupTimeout); got != 1 {
				t.Errorf("lookup{timeout} = %v", got)
			}
			if len(e.rec.all()) != 1 {
				t.Errorf("a timed-out lookup was retried: %d requests", len(e.rec.all()))
			}
		})
	}
}

// 401, 403 and 429 come back as the upstream sent them, for the caller.
func TestListStatusErrors(t *testing.T) {
	big := strings.Repeat("x", 100<<10)
	for _, code := range []int{401, 403, 429} {
		for _, body := range []string{`{"error":{"message":"no","code":` + fmt.Sprint(code) + `}}`, big} {
			t.Run(fmt.Sprintf("%d/%d bytes", code, len(body)), func(t *testing.T) {
				e := newListEnv(t, func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Content-Type", "application/json")
					w.Header().Set("Retry-After", "3")
					w.Header().Set("X-RateLimit-Remaining", "0")
					w.WriteHeader(code)
					io.WriteString(w, body)
				}, upstream.LookupSettings{})
				_, err := e.c.List(context.Background(), query("/api/v3", "u", "ac", "", nil))
				var se *upstream.StatusError
				if !errors.As(err, &se) {
					t.Fatalf("err %v, want *StatusError", err)
				}
				wantBody := body
				if len(wantBody) > upstream.MaxStatusErrorBody {
					wantBody = wantBody[:upstream.MaxStatusErrorBody]
				}
				if se.StatusCode != code || string(se.Body) != wantBody || se.Header.Get("Retry-After") != "3" ||
					se.Header.Get("Content-Type") != "application/json" {
					t.Errorf("StatusError %d %q… %v", se.StatusCode, se.Body[:min(len(se.Body), 40)], se.Header)
				}
				if lookups(e.m, upstream.LookupRefused) != 1 || value(e.m.RateLimitLeft) != 0 {
					t.Errorf("lookup{refused} %v", lookups(e.m, upstream.LookupRefused))
				}
			})
		}
	}
}

// dialCounter dials the real address, but fails the first `fail` dials the
// way a refused connection does.
type dialCounter struct {
	addr  string
	fail  int
	mu    sync.Mutex
	dials int
}

func (d *dialCounter) dial(ctx context.Context, network, _ string) (net.Conn, error) {
	d.mu.Lock()
	d.dials++
	n := d.dials
	d.mu.Unlock()
	if n <= d.fail {
		var dd net.Dialer
		return dd.DialContext(ctx, network, d.deadAddr())
	}
	var dd net.Dialer
	return dd.DialContext(ctx, network, d.addr)
}

var deadOnce struct {
	sync.Once
	addr string
}

func (d *dialCounter) deadAddr() string {
	deadOnce.Do(func() {
		l, _ := net.Listen("tcp", "127.0.0.1:0")
		deadOnce.addr = l.Addr().String()
		l.Close()
	})
	return deadOnce.addr
}

// One retry, and only when nothing reached Composio.
func TestListRetryOnlyBeforeSending(t *testing.T) {
	t.Run("refused once, then answered", func(t *testing.T) {
		e := newListEnv(t, serve(page("", item("ca", "ACTIVE", "u", "ac"))), upstream.LookupSettings{})
		d := &dialCounter{addr: strings.TrimPrefix(e.base, "http://"), fail: 1}
		tr := upstream.NewTransport(upstream.TransportSettings{})
		tr.DialContext = d.dial
		c := upstream.NewListClient(mustURL(t, e.base), tr, upstream.LookupSettings{}, upstream.ListOptions{Metrics: e.m})
		res, err := c.List(context.Background(), query("/api/v3", "u", "ac", "", nil))
		if err != nil || len(res.Items) != 1 {
			t.Fatalf("err %v items %v", err, res.Items)
		}
		if d.dials != 2 || len(e.rec.all()) != 1 {
			t.Errorf("%d dials, %d requests; want 2 and 1", d.dials, len(e.rec.all()))
		}
		if upstreamErrs(e.m, upstream.OpLookup, upstream.ReasonConnRefused) != 1 {
			t.Error("the refused attempt is not counted")
		}
	})
	t.Run("refused twice: never a third try", func(t *testing.T) {
		e := newListEnv(t, serve(page("")), upstream.LookupSettings{})
		d := &dialCounter{addr: strings.TrimPrefix(e.base, "http://"), fail: 100}
		tr := upstream.NewTransport(upstream.TransportSettings{})
		tr.DialContext = d.dial
		c := upstream.NewListClient(mustURL(t, e.base), tr, upstream.LookupSettings{}, upstream.ListOptions{})
		_, err := c.List(context.Background(), query("/api/v3", "u", "ac", "", nil))
		if st, reason := upstream.StatusFor(err); st != http.StatusBadGateway || reason != upstream.ReasonConnRefused {
			t.Errorf("err %v maps to %d %s", err, st, reason)
		}
		if d.dials != 2 {
			t.Errorf("%d dials, want 2", d.dials)
		}
	})
	t.Run("connection dropped after the request was sent: no retry", func(t *testing.T) {
		e := newListEnv(t, func(w http.ResponseWriter, r *http.Request) {
			conn, _, _ := http.NewResponseController(w).Hijack()
			conn.Close()
		}, upstream.LookupSettings{})
		_, err := e.c.List(context.Background(), query("/api/v3", "u", "ac", "", nil))
		if err == nil {
			t.Fatal("no error")
		}
		if n := len(e.rec.all()); n != 1 {
			t.Errorf("the request reached the upstream %d times, want 1", n)
		}
	})
	t.Run("dead keep-alive connection", func(t *testing.T) {
		e := newListEnv(t, serve(page("", item("ca", "ACTIVE", "u", "ac"))), upstream.LookupSettings{})
		q := query("/api/v3", "u", "ac", "", nil)
		if _, err := e.c.List(context.Background(), q); err != nil {
			t.Fatal(err)
		}
		// The idle connection the client keeps is now dead.
		e.srv.CloseClientConnections()
		res, err := e.c.List(context.Background(), q)
		if err != nil || len(res.Items) != 1 {
			t.Fatalf("after a dead keep-alive connection: err %v items %v", err, res.Items)
		}
		if n := len(e.rec.all()); n != 2 {
			t.Errorf("%d requests reached the upstream, want 2", n)
		}
	})
}

func TestListInvalidQuery(t *testing.T) {
	e := newListEnv(t, serve(page("")), upstream.LookupSettings{})
	for _, q := range []upstream.ListQuery{
		query("/api/v3", "a,b", "ac", "", nil),
		query("/api/v3", "u", "ac,2", "", nil),
		query("/api/v3", "", "ac", "", nil),
		query("api/v3", "u", "ac", "", nil),
	} {
		if _, err := e.c.List(context.Background(), q); !errors.Is(err, upstream.ErrInvalidQuery) {
			t.Errorf("%+v: err %v", q, err)
		}
	}
	if n := len(e.rec.all()); n != 0 {
		t.Errorf("%d invalid queries were sent", n)
	}
}

func TestListCallerGone(t *testing.T) {
	arrived := make(chan struct{})
	e := newListEnv(t, func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-r.Context().Done()
	}, upstream.LookupSettings{BreakerThreshold: 1, BreakerCooldown: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-arrived; cancel() }()
	_, err := e.c.List(ctx, query("/api/v3", "u", "ac", "", nil))
	if st, _ := upstream.StatusFor(err); st != upstream.StatusClientGone {
		t.Fatalf("err %v maps to %d", err, st)
	}
	if lookups(e.m, upstream.LookupCanceled) != 1 {
		t.Error("lookup{canceled} not counted")
	}
	// A caller leaving says nothing about Composio: the breaker stays closed.
	if got := value(e.m.BreakerState.WithLabelValues("lookup")); got != 0 {
		t.Errorf("breaker state %v after a caller left", got)
	}
}

// Composio has been seen to end the cursor (next_cursor null) while items
// remain. A lookup whose pages hold fewer items than total_items says is
// refused as unreadable (ErrTooManyPages, caller-caused: 422 in every
// failure mode), never taken as complete; a total that is absent, equal, or
// not a whole number changes nothing.
func TestListCursorEndsEarly(t *testing.T) {
	two := item("ca_1", upstream.StatusInitiated, "u", "ac") + "," + item("ca_2", upstream.StatusInitiated, "u", "ac")
	for _, tc := range []struct {
		name, total string
		wantErr     bool
	}{
		{"total above the items read", `5`, true},
		{"total equal", `2`, false},
		{"total below", `1`, false},
		{"no total", ``, false},
		{"null total", `null`, false},
		{"total as a string", `"5"`, false},
		{"total not whole", `5.5`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := `{"items":[` + two + `],"next_cursor":null`
			if tc.total != "" {
				body += `,"total_items":` + tc.total
			}
			body += `}`
			e := newListEnv(t, serve(body), upstream.LookupSettings{})
			res, err := e.c.List(context.Background(), query("/api/v3", "u", "ac", "", nil))
			if tc.wantErr {
				if !errors.Is(err, upstream.ErrTooManyPages) || !upstream.CallerCaused(err) {
					t.Fatalf("err %v, want a caller-caused ErrTooManyPages", err)
				}
				return
			}
			if err != nil || len(res.Items) != 2 {
				t.Fatalf("List = %d items, %v; want both, no error", len(res.Items), err)
			}
		})
	}
}
