package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"

	"github.com/composio-guard/composio-guard/internal/apierror"
	"github.com/composio-guard/composio-guard/internal/logging"
	"github.com/composio-guard/composio-guard/internal/reqscope"
)

// upstream stands in for the intercept Router: it records what reached it
// and acts per path.
type upstream struct {
	mu      sync.Mutex
	seen    []*http.Request
	entered chan struct{} // /slow signals arrival
	release chan struct{} // /slow waits for it
}

func newUpstream() *upstream {
	return &upstream{entered: make(chan struct{}, 16), release: make(chan struct{})}
}

func (u *upstream) last() *http.Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.seen) == 0 {
		return nil
	}
	return u.seen[len(u.seen)-1]
}

func boom() { panic("boom: something broke") }

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	u.seen = append(u.seen, r.Clone(context.Background()))
	u.mu.Unlock()
	switch r.URL.Path {
	case "/panic":
		boom()
	case "/panic-after-write":
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "partial")
		w.(http.Flusher).Flush()
		boom()
	case "/abort":
		panic(http.ErrAbortHandler)
	case "/slow":
		u.entered <- struct{}{}
		<-u.release
		_, _ = io.WriteString(w, "slow done")
	case "/wait-client":
		u.entered <- struct{}{}
		<-r.Context().Done() // client gives up; nothing is written
	case "/decision":
		s := reqscope.From(r.Context())
		s.Route = reqscope.RouteLink
		s.Decision = "rejected_duplicate"
		s.Reason = "active_account_exists"
		s.Mode = "enforce"
		s.LookupNanos.Store(int64(3 * time.Millisecond))
		s.UpstreamNanos.Store(int64(3 * time.Millisecond))
		s.Log().Info("guard decision", zap.String(logging.FieldDecision, s.Decision))
		w.WriteHeader(http.StatusConflict)
	case "/own-request-id":
		w.Header().Set(apierror.HeaderRequestID, "upstream-id")
		w.WriteHeader(http.StatusCreated)
	case "/sse":
		rc := http.NewResponseController(w)
		if err := rc.SetWriteDeadline(time.Time{}); err != nil {
			http.Error(w, "controller: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: one\n\n")
		if err := rc.Flush(); err != nil {
			return
		}
		<-u.release // the client must see "one" before this returns
		_, _ = io.WriteString(w, "data: two\n\n")
	default:
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "proxied "+r.URL.Path)
	}
}

func TestAccessLogLine(t *testing.T) {
	r := start(t, testConfig(t, map[string]string{"GUARD_LOG_LEVEL": "info"}), newUpstream(), nil)
	resp, body := do(t, r.client, "POST", r.proxyURL("/api/v3/things?token=QUERYSECRET"), map[string]string{
		"User-Agent": "Composio/JS 0.8.1", "X-Request-Id": "req-abc",
	}, `{"a":1}`)
	if resp.StatusCode != 200 || body != "proxied /api/v3/things" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	line := r.logs.accessLine(t, "req-abc")
	want := map[string]any{
		logging.FieldRoute: "passthrough", logging.FieldMethod: "POST", logging.FieldPath: "/api/v3/things",
		logging.FieldStatus: 200.0, logging.FieldBytesIn: 7.0, logging.FieldBytesOut: float64(len(body)),
		logging.FieldUserAgent: "Composio/JS 0.8.1", "level": "info",
	}
	for k, v := range want {
		if line[k] != v {
			t.Errorf("%s = %v, want %v", k, line[k], v)
		}
	}
	for _, k := range []string{logging.FieldDuration, logging.FieldUpstreamDuration} {
		if _, ok := line[k].(float64); !ok {
			t.Errorf("%s missing or not seconds: %v", k, line[k])
		}
	}
	if ra, _ := line[logging.FieldRemoteAddr].(string); !strings.HasPrefix(ra, "127.0.0.1:") {
		t.Errorf("remote_addr = %v", line[logging.FieldRemoteAddr])
	}
	for _, k := range []string{logging.FieldDecision, logging.FieldReason, logging.FieldLookupDuration, "panic", "aborted"} {
		if _, ok := line[k]; ok {
			t.Errorf("%s present on a plain pass-through", k)
		}
	}
	if strings.Contains(r.logs.String(), "QUERYSECRET") {
		t.Error("the query string reached the log")
	}
	if n := len(r.logs.lines(t, "request")); n != 1 {
		t.Errorf("want exactly one access line, got %d", n)
	}
}

func TestAccessLogDecision(t *testing.T) {
	r := start(t, testConfig(t, nil), newUpstream(), nil)
	resp, _ := do(t, r.client, "POST", r.proxyURL("/decision"), map[string]string{"X-Request-Id": "dec-1"}, "")
	if resp.StatusCode != http.StatusConflict {
		t.Fatalf("status %d", resp.StatusCode)
	}
	line := r.logs.accessLine(t, "dec-1")
	if line[logging.FieldRoute] != "link" || line[logging.FieldDecision] != "rejected_duplicate" ||
		line[logging.FieldReason] != "active_account_exists" || line[logging.FieldLookupDuration] != 0.003 ||
		line[logging.FieldStatus] != 409.0 || line[logging.FieldMode] != "enforce" {
		t.Errorf("access line %v", line)
	}
	// The handler's own line through Scope.Logger carries the request id.
	var found bool
	for _, m := range r.logs.lines(t, "guard decision") {
		found = found || m[logging.FieldRequestID] == "dec-1"
	}
	if !found {
		t.Errorf("Scope.Logger line lacks request_id:\n%s", r.logs.String())
	}
}

var hex32 = regexp.MustCompile(`^[0-9a-f]{32}$`)

func TestRequestID(t *testing.T) {
	tests := []struct {
		name     string
		path     string
		inbound  []string
		want     string // "" means a generated id
		wantResp string // when the handler sets its own
	}{
		{"accepted", "/x", []string{"python-7f3e-uuid"}, "python-7f3e-uuid", ""},
		{"generated when absent", "/x", nil, "", ""},
		{"too long", "/x", []string{strings.Repeat("a", 129)}, "", ""},
		{"longest accepted", "/x", []string{strings.Repeat("b", 128)}, strings.Repeat("b", 128), ""},
		{"space", "/x", []string{"a b"}, "", ""},
		{"non-ascii", "/x", []string{"id-é"}, "", ""},
		{"two values, first used", "/x", []string{"first", "second"}, "first", ""},
		{"handler's own kept", "/own-request-id", []string{"mine"}, "mine", "upstream-id"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			up := newUpstream()
			rr := start(t, testConfig(t, nil), up, nil)
			req, _ := http.NewRequest("GET", rr.proxyURL(tc.path), nil)
			for _, v := range tc.inbound {
				req.Header.Add("X-Request-Id", v)
			}
			resp, err := rr.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			sent := up.last().Header.Values("X-Request-Id")
			if len(sent) != 1 {
				t.Fatalf("upstream got X-Request-Id %q, want one value", sent)
			}
			id := sent[0]
			if tc.want != "" && id != tc.want {
				t.Errorf("upstream id %q, want %q", id, tc.want)
			}
			if tc.want == "" && !hex32.MatchString(id) {
				t.Errorf("generated id %q is not 32 hex digits", id)
			}
			wantResp := id
			if tc.wantResp != "" {
				wantResp = tc.wantResp
			}
			if got := resp.Header.Values("X-Request-Id"); len(got) != 1 || got[0] != wantResp {
				t.Errorf("answer X-Request-Id %q, want [%s]", got, wantResp)
			}
			rr.logs.accessLine(t, id)
		})
	}
}

// Credentials and cookies never reach a log line, even at debug level and
// even when the request panics.
func TestSecretsNeverLogged(t *testing.T) {
	r := start(t, testConfig(t, map[string]string{"GUARD_LOG_LEVEL": "debug"}), newUpstream(), nil)
	secrets := map[string]string{
		"x-api-key":      "ak_SECRET_project_key_1",
		"x-user-api-key": "uak_SECRET_user_key_2",
		"x-org-api-key":  "oak_SECRET_org_key_3",
		"x-org-id":       "org_SECRET_4",
		"x-project-id":   "proj_SECRET_5",
		"cookie":         "session=SECRET_cookie_6",
		"authorization":  "Bearer SECRET_bearer_7",
	}
	for _, path := range []string{"/api/v3/connected_accounts?x=SECRET_query_8", "/decision", "/panic", "/own-request-id"} {
		req, _ := http.NewRequest("POST", r.proxyURL(path), strings.NewReader(`{"user_id":"u"}`))
		for k, v := range secrets {
			req.Header.Set(k, v)
		}
		resp, err := r.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	logs := r.logs.String()
	// Run returns after every handler, access line included, has finished.
	if len(r.logs.lines(t, "request")) != 4 || len(r.logs.lines(t, "panic serving request")) != 1 {
		t.Fatalf("expected access and panic lines, got:\n%s", logs)
	}
	for name, v := range secrets {
		if strings.Contains(logs, strings.TrimPrefix(strings.TrimPrefix(v, "session="), "Bearer ")) {
			t.Errorf("%s value found in the logs", name)
		}
	}
	if strings.Contains(logs, "SECRET") {
		t.Errorf("a secret reached the logs:\n%s", logs)
	}
}

func TestRecover(t *testing.T) {
	r := start(t, testConfig(t, nil), newUpstream(), nil)
	resp, body := do(t, r.client, "POST", r.proxyURL("/panic"), map[string]string{"X-Request-Id": "pan-1"}, "{}")
	if resp.StatusCode != 500 || resp.Header.Get("Content-Type") != "application/json" ||
		resp.Header.Get("X-Should-Retry") != "false" || resp.Header.Get("X-Request-Id") != "pan-1" {
		t.Fatalf("answer %d %v", resp.StatusCode, resp.Header)
	}
	var env struct {
		Error apierror.Error `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &env); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
	if env.Error.Slug != apierror.SlugInternal || env.Error.Code != apierror.CodeInternal ||
		env.Error.Status != 500 || env.Error.RequestID != "pan-1" || strings.Contains(body, "boom") {
		t.Errorf("envelope %+v", env.Error)
	}
	if line := r.logs.accessLine(t, "pan-1"); line[logging.FieldStatus] != 500.0 || line["panic"] != true {
		t.Errorf("access line %v", line)
	}
	panics := r.logs.lines(t, "panic serving request")
	if len(panics) != 1 || panics[0]["level"] != "error" || panics[0][logging.FieldRequestID] != "pan-1" ||
		!strings.Contains(fmt.Sprint(panics[0]["stack"]), "server.boom") {
		t.Errorf("panic line %v", panics)
	}

	// After the headers went out the connection is aborted, not ended as if
	// the answer were complete; /abort is passed to net/http untouched.
	for _, path := range []string{"/panic-after-write", "/abort"} {
		resp, err := r.client.Get(r.proxyURL(path))
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		if err == nil {
			t.Errorf("%s: client saw a complete answer", path)
		}
	}
	// The process still serves.
	if resp, body := do(t, r.client, "GET", r.proxyURL("/after"), nil, ""); resp.StatusCode != 200 || body != "proxied /after" {
		t.Errorf("after panics: %d %q", resp.StatusCode, body)
	}
}

func TestDrain(t *testing.T) {
	up := newUpstream()
	r := start(t, testConfig(t, map[string]string{"GUARD_SHUTDOWN_GRACE": "20s"}), up, nil)
	if resp, _ := do(t, r.client, "GET", r.adminURL("/readyz"), nil, ""); resp.StatusCode != 200 {
		t.Fatalf("ready before drain: %d", resp.StatusCode)
	}
	type result struct {
		code int
		body string
		err  error
	}
	slow := make(chan result, 1)
	go func() {
		resp, err := r.client.Get(r.proxyURL("/slow"))
		if err != nil {
			slow <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		slow <- result{resp.StatusCode, string(b), err}
	}()
	<-up.entered
	r.cancel() // SIGTERM

	admin := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := admin.Get(r.adminURL("/readyz"))
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 503 && string(b) == "draining\n" {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("readyz never went 503")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if v := gaugeValue(t, r, "composio_guard_draining"); v != 1 {
		t.Errorf("draining gauge %v", v)
	}
	if resp, _ := do(t, admin, "GET", r.adminURL("/livez"), nil, ""); resp.StatusCode != 200 {
		t.Errorf("livez while draining: %d", resp.StatusCode)
	}
	select {
	case err := <-r.done:
		t.Fatalf("Run returned with a request in flight: %v", err)
	default:
	}
	close(up.release)
	res := <-slow
	if res.err != nil || res.code != 200 || res.body != "slow done" {
		t.Fatalf("in-flight request: %+v", res)
	}
	if err := r.stop(t); err != nil {
		t.Fatalf("Run after a clean drain: %v", err)
	}
	if _, err := net.DialTimeout("tcp", r.srv.ProxyAddr(), time.Second); err == nil {
		t.Error("proxy port still accepts after Run returned")
	}
	if len(r.logs.lines(t, "draining")) != 1 || len(r.logs.lines(t, "stopped")) != 1 {
		t.Errorf("lifecycle lines missing:\n%s", r.logs.String())
	}
}

func TestDrainGraceExceeded(t *testing.T) {
	up := newUpstream()
	r := start(t, testConfig(t, map[string]string{"GUARD_SHUTDOWN_GRACE": "200ms"}), up, nil)
	go func() {
		if resp, err := r.client.Get(r.proxyURL("/slow")); err == nil {
			resp.Body.Close()
		}
	}()
	<-up.entered
	err := r.stop(t)
	close(up.release)
	if !errors.Is(err, ErrGraceExceeded) {
		t.Fatalf("Run = %v, want ErrGraceExceeded", err)
	}
}

func TestDrainDelayKeepsServing(t *testing.T) {
	r := start(t, testConfig(t, map[string]string{"GUARD_DRAIN_DELAY": "300ms", "GUARD_SHUTDOWN_GRACE": "5s"}), newUpstream(), nil)
	r.cancel()
	// Readiness fails at once, but requests are still answered until the
	// delay ends, with Connection: close so clients move elsewhere.
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := r.client.Get(r.adminURL("/readyz"))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 503 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("readyz never went 503")
		}
	}
	resp, err := r.client.Get(r.proxyURL("/during"))
	if err != nil {
		t.Fatalf("request during the drain delay: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || !resp.Close {
		t.Errorf("during drain delay: %d close=%v", resp.StatusCode, resp.Close)
	}
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
}

func TestPortsAreSeparate(t *testing.T) {
	up := newUpstream()
	r := start(t, testConfig(t, nil), up, nil)
	for _, p := range []string{"/livez", "/readyz", "/metrics", "/debug/pprof/"} {
		resp, body := do(t, r.client, "GET", r.proxyURL(p), nil, "")
		if resp.StatusCode != 200 || body != "proxied "+p {
			t.Errorf("proxy port %s: %d %q, want it proxied", p, resp.StatusCode, body)
		}
	}
	tests := []struct {
		method, path string
		code         int
		body         string
	}{
		{"GET", "/livez", 200, "ok\n"},
		{"HEAD", "/livez", 200, ""},
		{"GET", "/readyz", 200, "ok\n"},
		{"GET", "/metrics", 200, "composio_guard_build_info"},
		{"GET", "/api/v3/connected_accounts", 404, ""},
		{"POST", "/api/v3/connected_accounts/link", 404, ""},
		{"GET", "/debug/pprof/", 404, ""},
		{"POST", "/livez", 405, ""},
	}
	for _, tc := range tests {
		resp, body := do(t, r.client, tc.method, r.adminURL(tc.path), nil, "")
		if resp.StatusCode != tc.code || !strings.Contains(body, tc.body) {
			t.Errorf("admin %s %s: %d %.80q, want %d %q", tc.method, tc.path, resp.StatusCode, body, tc.code, tc.body)
		}
	}
	up.mu.Lock()
	n := len(up.seen)
	up.mu.Unlock()
	if n != 4 {
		t.Errorf("the handler saw %d requests, want only the 4 from the proxy port", n)
	}
}

func TestPprofSetting(t *testing.T) {
	r := start(t, testConfig(t, map[string]string{"GUARD_PPROF": "true"}), newUpstream(), nil)
	for _, p := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/goroutine?debug=1"} {
		if resp, _ := do(t, r.client, "GET", r.adminURL(p), nil, ""); resp.StatusCode != 200 {
			t.Errorf("admin %s with pprof on: %d", p, resp.StatusCode)
		}
	}
	if resp, body := do(t, r.client, "GET", r.proxyURL("/debug/pprof/"), nil, ""); resp.StatusCode != 200 || body != "proxied /debug/pprof/" {
		t.Errorf("pprof must never be on the proxy port: %d %q", resp.StatusCode, body)
	}
}

func TestReadyCheck(t *testing.T) {
	var fail sync.Mutex
	failing := true
	r := start(t, testConfig(t, nil), newUpstream(), func() error {
		fail.Lock()
		defer fail.Unlock()
		if failing {
			return errors.New("backend at redis://:SECRETPW@r:6379 unreachable")
		}
		return nil
	})
	resp, body := do(t, r.client, "GET", r.adminURL("/readyz"), nil, "")
	if resp.StatusCode != 503 || body != "not ready\n" {
		t.Errorf("failing check: %d %q", resp.StatusCode, body)
	}
	fail.Lock()
	failing = false
	fail.Unlock()
	if resp, _ := do(t, r.client, "GET", r.adminURL("/readyz"), nil, ""); resp.StatusCode != 200 {
		t.Errorf("passing check: %d", resp.StatusCode)
	}
}

func TestMetricsLabels(t *testing.T) {
	up := newUpstream()
	r := start(t, testConfig(t, nil), up, nil)
	do(t, r.client, "GET", r.proxyURL("/a"), nil, "")
	do(t, r.client, "GET", r.proxyURL("/b?user=u_123"), nil, "")
	do(t, r.client, "POST", r.proxyURL("/decision"), nil, "")
	do(t, r.client, "BREW", r.proxyURL("/pot"), nil, "")
	do(t, r.client, "PATCH", r.proxyURL("/panic"), nil, "")

	// A client that gives up before any answer counts as 499.
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", r.proxyURL("/wait-client"), nil)
	req.Header.Set("X-Request-Id", "gone-1")
	errc := make(chan error, 1)
	go func() {
		resp, err := r.client.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	<-up.entered
	cancel()
	<-errc
	if line := r.logs.accessLine(t, "gone-1"); line[logging.FieldStatus] != 499.0 {
		t.Errorf("client gone: status %v", line[logging.FieldStatus])
	}

	want := map[string]float64{
		"passthrough GET 200":   2,
		"link POST 409":         1,
		"passthrough other 200": 1,
		"passthrough PATCH 500": 1,
		"passthrough GET 499":   1,
	}
	got := map[string]float64{}
	for _, mf := range gather(t, r, "composio_guard_http_requests_total") {
		l := labels(mf)
		got[l["route"]+" "+l["method"]+" "+l["code"]] = mf.GetCounter().GetValue()
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("http_requests_total{%s} = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("unexpected series: %v", got)
	}
	var linkOverhead uint64
	for _, mf := range gather(t, r, "composio_guard_proxy_overhead_seconds") {
		if labels(mf)["route"] == "link" {
			linkOverhead = mf.GetHistogram().GetSampleCount()
		}
	}
	if linkOverhead != 1 {
		t.Errorf("overhead samples for link: %d", linkOverhead)
	}
	if v := gaugeValue(t, r, "composio_guard_http_requests_in_flight"); v != 0 {
		t.Errorf("in flight after all answered: %v", v)
	}
}

func TestOversizeHeaders(t *testing.T) {
	r := start(t, testConfig(t, map[string]string{"GUARD_MAX_HEADER_BYTES": "8192"}), newUpstream(), nil)
	resp, _ := do(t, r.client, "GET", r.proxyURL("/x"), map[string]string{"X-Big": strings.Repeat("a", 32<<10)}, "")
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("status %d, want 431", resp.StatusCode)
	}
	if resp, _ := do(t, r.client, "GET", r.proxyURL("/x"), map[string]string{"X-Small": strings.Repeat("a", 2<<10)}, ""); resp.StatusCode != 200 {
		t.Errorf("normal headers: %d", resp.StatusCode)
	}
}

// A client dribbling its headers is cut by ReadHeaderTimeout, and others are
// served meanwhile.
func TestSlowloris(t *testing.T) {
	r := start(t, testConfig(t, map[string]string{"GUARD_READ_HEADER_TIMEOUT": "300ms"}), newUpstream(), nil)
	conn, err := net.Dial("tcp", r.srv.ProxyAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET /x HTTP/1.1\r\nHost: a\r\n"); err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		_, _ = io.Copy(io.Discard, conn) // returns when the server closes
	}()
	stopDribble := make(chan struct{})
	defer close(stopDribble)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stopDribble:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if _, err := fmt.Fprintf(conn, "X-H%d: v\r\n", i); err != nil {
				return
			}
		}
	}()
	if resp, body := do(t, r.client, "GET", r.proxyURL("/other"), nil, ""); resp.StatusCode != 200 || body != "proxied /other" {
		t.Errorf("another client while the slow one dribbles: %d %q", resp.StatusCode, body)
	}
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the dribbling connection was never cut")
	}
}

func TestForwardingHeaders(t *testing.T) {
	spoofed := map[string]string{
		"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https",
		"Forwarded": "for=6.6.6.6", "X-Real-Ip": "6.6.6.6",
	}
	for _, trust := range []bool{false, true} {
		t.Run(fmt.Sprint("trust=", trust), func(t *testing.T) {
			up := newUpstream()
			r := start(t, testConfig(t, map[string]string{"GUARD_TRUST_FORWARDED": fmt.Sprint(trust)}), up, nil)
			do(t, r.client, "GET", r.proxyURL("/x"), spoofed, "")
			h := up.last().Header
			for k, v := range spoofed {
				if got := h.Get(k); (got == v) != trust {
					t.Errorf("%s = %q with trust=%v", k, got, trust)
				}
			}
		})
	}
}

// Flush and http.ResponseController work through the wrapper: the first
// event reaches the client before the handler writes the second.
func TestStreamingFlush(t *testing.T) {
	up := newUpstream()
	r := start(t, testConfig(t, nil), up, nil)
	resp, err := r.client.Get(r.proxyURL("/sse"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d %s", resp.StatusCode, b)
	}
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != "data: one\n" {
		t.Fatalf("first event %q %v", line, err)
	}
	close(up.release)
	rest, _ := io.ReadAll(br)
	if string(rest) != "\ndata: two\n\n" {
		t.Errorf("rest %q", rest)
	}
}

func TestChainOrder(t *testing.T) {
	var order []string
	mw := func(name string) Middleware {
		return func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				order = append(order, name)
				next.ServeHTTP(w, r)
			})
		}
	}
	h := Chain(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { order = append(order, "h") }), mw("a"), mw("b"))
	h.ServeHTTP(nil, nil)
	if strings.Join(order, ",") != "a,b,h" {
		t.Errorf("order %v", order)
	}
}

func TestRunFailsOnBusyPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cfg := testConfig(t, map[string]string{"GUARD_ADMIN_ADDR": l.Addr().String()})
	err = New(Options{Settings: cfg}).Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "admin listener") {
		t.Errorf("Run = %v, want an admin listener error", err)
	}
}

func gather(t *testing.T, r *running, name string) []*dto.Metric {
	t.Helper()
	mfs, err := r.m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()
		}
	}
	return nil
}

func labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, lp := range m.GetLabel() {
		out[lp.GetName()] = lp.GetValue()
	}
	return out
}

func gaugeValue(t *testing.T, r *running, name string) float64 {
	t.Helper()
	ms := gather(t, r, name)
	if len(ms) != 1 {
		t.Fatalf("%s: %d series", name, len(ms))
	}
	return ms[0].GetGauge().GetValue()
}
