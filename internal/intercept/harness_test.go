package intercept_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/composio-guard/composio-guard/internal/intercept"
	"github.com/composio-guard/composio-guard/internal/lock"
	"github.com/composio-guard/composio-guard/internal/metrics"
	"github.com/composio-guard/composio-guard/internal/reqscope"
	"github.com/composio-guard/composio-guard/internal/upstream"
)

const apiKey = "sk_live_SECRET_test_key_123"

// seenReq is a request as it reached the fake upstream.
type seenReq struct {
	Method   string
	Path     string // escaped, as sent
	RawQuery string
	Header   http.Header
	Body     []byte
	Trailer  http.Header
}

// fakeComposio is a small in-test Composio: links and legacy creates make
// INITIATED accounts that the fake lister sees.
type fakeComposio struct {
	mu       sync.Mutex
	accounts []upstream.Account
	seen     []seenReq
	links    atomic.Int32
	creates  atomic.Int32
	nextID   int
	gzipOut  bool         // answer links gzip-compressed
	status   atomic.Int32 // status of the default answer (session routes...), 200 when 0
}

func (f *fakeComposio) add(a upstream.Account) {
	f.mu.Lock()
	f.accounts = append(f.accounts, a)
	f.mu.Unlock()
}

func (f *fakeComposio) setStatus(id, status string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.accounts {
		if f.accounts[i].ID == id {
			f.accounts[i].Status = status
		}
	}
}

func (f *fakeComposio) requests() []seenReq {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]seenReq(nil), f.seen...)
}

func (f *fakeComposio) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.seen = append(f.seen, seenReq{r.Method, r.URL.EscapedPath(), r.URL.RawQuery, r.Header.Clone(), raw, r.Trailer.Clone()})
	f.mu.Unlock()
	plain := raw
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err == nil {
			plain, _ = io.ReadAll(zr)
		}
	}
	var body struct {
		UserID       string `json:"user_id"`
		AuthConfigID string `json:"auth_config_id"`
		AuthConfig   struct {
			ID string `json:"id"`
		} `json:"auth_config"`
		Connection struct {
			UserID string `json:"user_id"`
		} `json:"connection"`
	}
	_ = json.Unmarshal(plain, &body)
	p := r.URL.Path
	switch {
	case r.Method == http.MethodPost && strings.HasSuffix(strings.TrimSuffix(p, "/"), "/link"):
		f.links.Add(1)
		id := f.newAccount(body.UserID, body.AuthConfigID)
		ans := fmt.Sprintf(`{"link_token":"lt_%s","redirect_url":"https://connect.example/%s","expires_at":%q,"connected_account_id":%q}`,
			id, id, time.Now().Add(10*time.Minute).UTC().Format(time.RFC3339), id)
		w.Header().Set("Content-Type", "application/json")
		if f.gzipOut {
			w.Header().Set("Content-Encoding", "gzip")
			w.WriteHeader(http.StatusCreated)
			zw := gzip.NewWriter(w)
			_, _ = zw.Write([]byte(ans))
			_ = zw.Close()
			return
		}
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, ans)
	case r.Method == http.MethodPost && strings.HasSuffix(strings.TrimSuffix(p, "/"), "/connected_accounts"):
		f.creates.Add(1)
		user := body.Connection.UserID
		if user == "" {
			user = "default"
		}
		id := f.newAccount(user, body.AuthConfig.ID)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"id":%q,"status":"INITIATED","redirect_url":"https://connect.example/%s"}`, id, id)
	default:
		w.Header().Set("Content-Type", "application/json")
		if code := f.status.Load(); code != 0 {
			w.WriteHeader(int(code))
		}
		_, _ = io.WriteString(w, `{"ok":true}`)
	}
}

func (f *fakeComposio) newAccount(user, ac string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextID++
	id := fmt.Sprintf("ca_%d", f.nextID)
	f.accounts = append(f.accounts, upstream.Account{ID: id, Status: upstream.StatusInitiated, UserID: user, AuthConfigID: ac, CreatedAt: time.Now()})
	return id
}

// fakeLister answers from the fake upstream's accounts.
type fakeLister struct {
	f            *fakeComposio
	mu           sync.Mutex
	queries      []upstream.ListQuery
	err          error
	delay        time.Duration
	ignoreFilter bool // return every account: the guard must re-check items itself
}

func (l *fakeLister) List(ctx context.Context, q upstream.ListQuery) (upstream.ListResult, error) {
	l.mu.Lock()
	l.queries = append(l.queries, q)
	err, delay, all := l.err, l.delay, l.ignoreFilter
	l.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return upstream.ListResult{}, fmt.Errorf("list: %w", ctx.Err())
		}
	}
	if err != nil {
		return upstream.ListResult{}, err
	}
	l.f.mu.Lock()
	defer l.f.mu.Unlock()
	var res upstream.ListResult
	for _, a := range l.f.accounts {
		if all || (a.UserID == q.UserID && a.AuthConfigID == q.AuthConfigID && (a.Status == "ACTIVE" || a.Status == "INITIATED")) {
			res.Items = append(res.Items, a)
		}
	}
	return res, nil
}

func (l *fakeLister) calls() []upstream.ListQuery {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]upstream.ListQuery(nil), l.queries...)
}

// env is a guard in front of the fake upstream, over real HTTP, behind a
// minimal stand-in for the server's middleware (request id, logger, scope).
type env struct {
	up     *fakeComposio
	lister *fakeLister
	store  lock.Store
	m      *metrics.Metrics
	logs   *observer.ObservedLogs
	srv    *httptest.Server
	scopes chan seenScope // what each request's access line would carry, once served
}

type envOpt func(*env)

func withStore(s lock.Store) envOpt { return func(e *env) { e.store = s } }

func newEnv(t *testing.T, cfg intercept.Config, opts ...envOpt) *env {
	t.Helper()
	e := &env{up: &fakeComposio{}, store: lock.NewMemory(), m: metrics.New(metrics.Build{}), scopes: make(chan seenScope, 256)}
	e.lister = &fakeLister{f: e.up}
	for _, o := range opts {
		o(e)
	}
	upSrv := httptest.NewServer(e.up)
	t.Cleanup(upSrv.Close)
	target, _ := url.Parse(upSrv.URL)
	forward := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(target) }}
	core, logs := observer.New(zapcore.DebugLevel)
	e.logs = logs
	logger := zap.New(core)
	g := intercept.NewGuard(cfg, e.lister, e.store, forward, e.m)
	router := intercept.Router(g, forward)
	var n atomic.Int64
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-Id")
		if id == "" {
			id = fmt.Sprintf("req-%d", n.Add(1))
		}
		w.Header().Set("X-Request-Id", id)
		sc := &reqscope.Scope{RequestID: id, Start: time.Now(), Logger: logger.With(zap.String("request_id", id)), Route: reqscope.RoutePassthrough}
		router.ServeHTTP(w, r.WithContext(reqscope.With(r.Context(), sc)))
		select {
		case e.scopes <- seenScope{Route: sc.Route, Decision: sc.Decision, Reason: sc.Reason, Mode: sc.Mode, SandboxSize: sc.SandboxSize}:
		default:
		}
	}))
	// Cleanups run last first: the check runs once the server is closed.
	t.Cleanup(func() { checkSeriesClosed(t, e.m, e.store.Backend()) })
	t.Cleanup(e.srv.Close)
	return e
}

type seenScope struct{ Route, Decision, Reason, Mode, SandboxSize string }

// answer is what a client saw.
type answer struct {
	Status int
	Header http.Header
	Body   []byte
}

func (a answer) envelope(t *testing.T) map[string]any {
	t.Helper()
	var env struct {
		Error map[string]any `json:"error"`
	}
	if err := json.Unmarshal(a.Body, &env); err != nil || env.Error == nil {
		t.Fatalf("body is not an error envelope: %v: %s", err, a.Body)
	}
	return env.Error
}

func (e *env) do(t *testing.T, method, path string, body []byte, hdr ...string) answer {
	t.Helper()
	h := http.Header{"X-Api-Key": {apiKey}, "Content-Type": {"application/json"}}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			h.Del(hdr[i])
			continue
		}
		h.Set(hdr[i], hdr[i+1])
	}
	return e.doRaw(t, method, path, body, h)
}

func (e *env) link(t *testing.T, user, ac string, hdr ...string) answer {
	t.Helper()
	return e.do(t, "POST", "/api/v3.1/connected_accounts/link", linkBody(user, ac), hdr...)
}

func linkBody(user, ac string) []byte {
	return fmt.Appendf(nil, `{"auth_config_id":%q,"user_id":%q,"callback_url":"https://app.example/cb"}`, ac, user)
}

func gz(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// decisions returns the decision log entries.
func (e *env) decisions() []observer.LoggedEntry {
	return e.logs.FilterMessage("guard decision").All()
}
