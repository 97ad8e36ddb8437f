package upstream_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/composio-guard/composio-guard/internal/apierror"
	"github.com/composio-guard/composio-guard/internal/metrics"
	"github.com/composio-guard/composio-guard/internal/reqscope"
	"github.com/composio-guard/composio-guard/internal/upstream"
)

// proxyEnv is a ReverseProxy from NewProxy between a real client and a
// real upstream, behind a front server that sets the request scope as the
// server's middleware does.
type proxyEnv struct {
	up     *httptest.Server
	front  *httptest.Server
	m      *metrics.Metrics
	logs   *observer.ObservedLogs
	client *http.Client

	mu      sync.Mutex
	scopes  []*reqscope.Scope
	written []int // first status each request's handler wrote, 0 when none
}

type envOptions struct {
	proxy     upstream.ProxyOptions
	transport upstream.TransportSettings
	tls       bool
	target    string // overrides the upstream URL (a closed port, ...)
	wrap      func(http.Handler) http.Handler
}

func newProxyEnv(t *testing.T, up http.Handler, o envOptions) *proxyEnv {
	t.Helper()
	e := &proxyEnv{m: metrics.New(metrics.Build{})}
	if o.tls {
		e.up = httptest.NewTLSServer(up)
	} else {
		e.up = httptest.NewServer(up)
	}
	t.Cleanup(e.up.Close)
	target := e.up.URL
	if o.target != "" {
		target = o.target
	}
	o.proxy.Metrics = e.m
	tr := upstream.NewTransport(o.transport)
	if o.tls {
		tr.TLSClientConfig = trusting(e.up)
	}
	t.Cleanup(tr.CloseIdleConnections)
	p := upstream.NewProxy(mustURL(t, target), tr, o.proxy)
	core, logs := observer.New(zapcore.DebugLevel)
	e.logs = logs
	var h http.Handler = p
	if o.wrap != nil {
		h = o.wrap(h)
	}
	e.front = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := &reqscope.Scope{RequestID: testRequestID, Logger: zap.New(core).With(zap.String("request_id", testRequestID))}
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			e.mu.Lock()
			e.scopes = append(e.scopes, s)
			e.written = append(e.written, sw.status)
			e.mu.Unlock()
		}()
		h.ServeHTTP(sw, r.WithContext(reqscope.With(r.Context(), s)))
	}))
	t.Cleanup(e.front.Close)
	e.client = &http.Client{Transport: &http.Transport{DisableCompression: true}}
	t.Cleanup(e.client.CloseIdleConnections)
	return e
}

// lastWritten waits for the front handler of the last request to return.
func (e *proxyEnv) lastWritten(t *testing.T) (int, *reqscope.Scope) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		e.mu.Lock()
		if n := len(e.written); n > 0 {
			st, s := e.written[n-1], e.scopes[n-1]
			e.mu.Unlock()
			return st, s
		}
		e.mu.Unlock()
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("the proxy handler never returned")
	return 0, nil
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

type envelope struct {
	Error apierror.Error `json:"error"`
}

func TestPassThroughUnchanged(t *testing.T) {
	rec := &recorder{}
	up := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rec.add(r, body)
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Deprecation", "@1777334400")
		h.Set("Sunset", "Wed, 30 Dec 2026 23:59:59 GMT")
		h.Set("X-RateLimit", "2000")
		h.Set("X-RateLimit-Remaining", "1234")
		h.Set("X-RateLimit-Window-Size", "60")
		h.Set("Retry-After", "7")
		h.Add("Set-Cookie", "a=1")
		h.Add("Set-Cookie", "b=2")
		h.Set("X-Request-Id", "up-"+r.Method)
		w.WriteHeader(statusFor(r))
		if r.Method != http.MethodHead {
			fmt.Fprintf(w, `{"method":%q,"body":%q}`, r.Method, body)
		}
	})
	e := newProxyEnv(t, up, envOptions{})
	upHost := strings.TrimPrefix(e.up.URL, "http://")

	tests := []struct {
		method, path, body string
		want               int
	}{
		{http.MethodGet, "/api/v3/toolkits?limit=5&cursor=a%2Cb", "", http.StatusOK},
		{http.MethodPost, "/api/v3.1/tools/execute/GITHUB_STAR", `{"arguments":{"owner":"x"}}`, http.StatusCreated},
		{http.MethodPut, "/api/v3/auth_configs/ac_1", `{"name":"n"}`, http.StatusOK},
		{http.MethodDelete, "/api/v3/connected_accounts/ca_1", "", http.StatusAccepted},
		{http.MethodGet, "/api/v3/ratelimited", "", http.StatusTooManyRequests},
		{http.MethodPost, "/api/v3/broken", `{}`, http.StatusInternalServerError},
		{http.MethodGet, "/api/v3/missing", "", http.StatusNotFound},
	}
	for i, tc := range tests {
		t.Run(tc.method+tc.path, func(t *testing.T) {
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			req, _ := http.NewRequest(tc.method, e.front.URL+tc.path, body)
			req.Header.Set("x-api-key", "test_key_1")
			req.Header.Set("X-Custom", "kept")
			resp, err := e.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.want)
			}
			for k, want := range map[string]string{
				"Deprecation": "@1777334400", "Sunset": "Wed, 30 Dec 2026 23:59:59 GMT",
				"X-Ratelimit": "2000", "X-Ratelimit-Remaining": "1234", "X-Ratelimit-Window-Size": "60",
				"Retry-After": "7", "Content-Type": "application/json", "X-Request-Id": "up-" + tc.method,
			} {
				if v := resp.Header.Get(k); v != want {
					t.Errorf("answer header %s = %q, want %q", k, v, want)
				}
			}
			if c := resp.Header.Values("Set-Cookie"); len(c) != 2 {
				t.Errorf("Set-Cookie = %q, want both", c)
			}
			if want := fmt.Sprintf(`{"method":%q,"body":%q}`, tc.method, tc.body); string(got) != want {
				t.Errorf("body %s, want %s", got, want)
			}
			seen := rec.all()[i]
			target := seen.Path
			if seen.RawQuery != "" {
				target += "?" + seen.RawQuery
			}
			if seen.Method != tc.method || target != tc.path {
				t.Errorf("upstream saw %s %s?%s, want %s %s", seen.Method, seen.Path, seen.RawQuery, tc.method, tc.path)
			}
			if seen.Host != upHost {
				t.Errorf("upstream Host %q, want %q", seen.Host, upHost)
			}
			if string(seen.Body) != tc.body {
				t.Errorf("upstream body %q, want %q", seen.Body, tc.body)
			}
			if seen.Header.Get("X-Api-Key") != "test_key_1" || seen.Header.Get("X-Custom") != "kept" {
				t.Errorf("caller headers lost upstream: %v", seen.Header)
			}
		})
	}
	if got := value(e.m.RateLimitLeft); got != 1234 {
		t.Errorf("rate limit gauge %v, want 1234", got)
	}
}

func statusFor(r *http.Request) int {
	switch {
	case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/broken"):
		return http.StatusInternalServerError
	case r.Method == http.MethodPost:
		return http.StatusCreated
	case r.Method == http.MethodDelete:
		return http.StatusAccepted
	case strings.HasSuffix(r.URL.Path, "/ratelimited"):
		return http.StatusTooManyRequests
	case strings.HasSuffix(r.URL.Path, "/missing"):
		return http.StatusNotFound
	}
	return http.StatusOK
}

func TestQueryAndPathPassUnchanged(t *testing.T) {
	rec := &recorder{}
	e := newProxyEnv(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.add(r, nil)
	}), envOptions{})
	const pathQ = "/api/v3/connected_accounts?user_ids=a%2Cb&statuses=ACTIVE&x=%20y+z"
	resp, err := e.client.Get(e.front.URL + pathQ)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	seen := rec.all()[0]
	if got := seen.Path + "?" + seen.RawQuery; got != pathQ {
		t.Errorf("upstream saw %q, want %q", got, pathQ)
	}
}

func TestTargetPathPrefixJoined(t *testing.T) {
	rec := &recorder{}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { rec.add(r, nil) }))
	defer up.Close()
	e := newProxyEnv(t, http.NotFoundHandler(), envOptions{target: up.URL + "/composio/"})
	resp, err := e.client.Get(e.front.URL + "/api/v3/toolkits")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := rec.all()[0].Path; got != "/composio/api/v3/toolkits" {
		t.Errorf("upstream path %q, want /composio/api/v3/toolkits", got)
	}
}

// The upstream reads the first part of the body while the client has not
// written the rest: nothing buffers the request.
func TestRequestBodyStreams(t *testing.T) {
	firstSeen := make(chan string, 1)
	up := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 5)
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			t.Errorf("upstream read: %v", err)
			return
		}
		firstSeen <- string(buf)
		rest, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s%s", buf, rest)
	})
	e := newProxyEnv(t, up, envOptions{})
	pr, pw := io.Pipe()
	done := make(chan struct{})
	var got []byte
	var status int
	go func() {
		defer close(done)
		resp, err := e.client.Post(e.front.URL+"/api/v3/files/upload", "application/octet-stream", pr)
		if err != nil {
			t.Errorf("post: %v", err)
			return
		}
		got, _ = io.ReadAll(resp.Body)
		status = resp.StatusCode
		resp.Body.Close()
	}()
	if _, err := pw.Write([]byte("first")); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-firstSeen:
		if s != "first" {
			t.Fatalf("upstream read %q", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("upstream did not get the first bytes while the client was still writing")
	}
	_, _ = pw.Write([]byte("-second"))
	_ = pw.Close()
	<-done
	if status != http.StatusOK || string(got) != "first-second" {
		t.Errorf("answer %d %q", status, got)
	}
}

// The client gets the first part of the answer before the upstream
// finishes: server-sent events, and answers with a known length too.
func TestResponseStreams(t *testing.T) {
	tests := []struct {
		name, contentType, contentLength string
	}{
		{"sse", "text/event-stream", ""},
		{"known length", "application/octet-stream", "27"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			up := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tc.contentType)
				if tc.contentLength != "" {
					w.Header().Set("Content-Length", tc.contentLength)
				}
				io.WriteString(w, "data: first\n\n")
				w.(http.Flusher).Flush()
				select {
				case <-release:
				case <-r.Context().Done():
					return
				}
				io.WriteString(w, "data: second\n\n")
			})
			e := newProxyEnv(t, up, envOptions{})
			defer close(release)
			// Headers and first event both count: a proxy holding either
			// back until the upstream finishes fails here.
			line := make(chan string, 1)
			go func() {
				resp, err := e.client.Get(e.front.URL + "/api/v3/stream")
				if err != nil {
					line <- "error: " + err.Error()
					return
				}
				defer resp.Body.Close()
				l, _ := bufio.NewReader(resp.Body).ReadString('\n')
				line <- l
				io.Copy(io.Discard, resp.Body)
			}()
			select {
			case l := <-line:
				if l != "data: first\n" {
					t.Errorf("first line %q", l)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("first event held back until the upstream finished")
			}
		})
	}
}

func TestLargeBodiesIntact(t *testing.T) {
	const size = 10 << 20
	payload := make([]byte, size)
	if _, err := rand.Read(payload); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(payload)
	up := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			w.Header().Set("Content-Length", fmt.Sprint(size))
			w.Write(payload)
			return
		}
		h := sha256.New()
		n, _ := io.Copy(h, r.Body)
		fmt.Fprintf(w, "%d %x", n, h.Sum(nil))
	})
	for _, useTLS := range []bool{false, true} {
		t.Run(fmt.Sprintf("tls=%v", useTLS), func(t *testing.T) {
			e := newProxyEnv(t, up, envOptions{tls: useTLS})
			resp, err := e.client.Get(e.front.URL + "/download")
			if err != nil {
				t.Fatal(err)
			}
			h := sha256.New()
			n, err := io.Copy(h, resp.Body)
			resp.Body.Close()
			if err != nil || n != size || !bytes.Equal(h.Sum(nil), sum[:]) {
				t.Errorf("download: %d bytes, err %v, hash match %v", n, err, bytes.Equal(h.Sum(nil), sum[:]))
			}
			resp, err = e.client.Post(e.front.URL+"/upload", "application/octet-stream", bytes.NewReader(payload))
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if want := fmt.Sprintf("%d %s", size, hex.EncodeToString(sum[:])); string(got) != want {
				t.Errorf("upload: upstream got %q, want %q", got, want)
			}
		})
	}
}

func TestHTTPSUpstream(t *testing.T) {
	rec := &recorder{}
	up := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.add(r, nil)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"items":[]}`)
	})
	e := newProxyEnv(t, up, envOptions{tls: true})
	resp, err := e.client.Get(e.front.URL + "/api/v3/toolkits")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != `{"items":[]}` {
		t.Errorf("answer %d %s", resp.StatusCode, body)
	}
	if got, want := rec.all()[0].Host, strings.TrimPrefix(e.up.URL, "https://"); got != want {
		t.Errorf("upstream Host %q, want %q", got, want)
	}
}

func TestForwardedHeaders(t *testing.T) {
	sent := map[string]string{
		"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https",
		"Forwarded": "for=6.6.6.6",
	}
	tests := []struct {
		trust bool
		want  map[string]string // "" means absent
	}{
		{false, map[string]string{"X-Forwarded-For": "", "X-Forwarded-Host": "", "X-Forwarded-Proto": "", "Forwarded": ""}},
		{true, map[string]string{"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https", "Forwarded": ""}},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("trust=%v", tc.trust), func(t *testing.T) {
			rec := &recorder{}
			e := newProxyEnv(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { rec.add(r, nil) }),
				envOptions{proxy: upstream.ProxyOptions{TrustForwarded: tc.trust}})
			req, _ := http.NewRequest(http.MethodGet, e.front.URL+"/api/v3/toolkits", nil)
			for k, v := range sent {
				req.Header.Set(k, v)
			}
			resp, err := e.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			seen := rec.all()[0].Header
			for k, want := range tc.want {
				if got := strings.Join(seen.Values(k), ","); got != want {
					t.Errorf("upstream %s = %q, want %q", k, got, want)
				}
			}
		})
	}
}

// Whatever Host or absolute-form URL a client sends, the request goes to
// the configured upstream only.
func TestHostSpoofingGoesNowhereElse(t *testing.T) {
	var evilHits atomic.Int32
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { evilHits.Add(1) }))
	defer evil.Close()
	evilHost := strings.TrimPrefix(evil.URL, "http://")
	rec := &recorder{}
	e := newProxyEnv(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.add(r, nil)
		io.WriteString(w, "real")
	}), envOptions{})
	upHost := strings.TrimPrefix(e.up.URL, "http://")
	frontHost := strings.TrimPrefix(e.front.URL, "http://")

	for _, raw := range []string{
		"GET /api/v3/toolkits HTTP/1.1\r\nHost: " + evilHost + "\r\nConnection: close\r\n\r\n",
		"GET http://" + evilHost + "/api/v3/toolkits HTTP/1.1\r\nHost: " + evilHost + "\r\nConnection: close\r\n\r\n",
		"GET http://" + evilHost + "/api/v3/toolkits HTTP/1.1\r\nHost: " + frontHost + "\r\nConnection: close\r\n\r\n",
	} {
		conn, err := net.Dial("tcp", frontHost)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(conn, raw)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		conn.Close()
		if string(body) != "real" {
			t.Errorf("%q: answer %q, want the configured upstream's", raw, body)
		}
	}
	if n := evilHits.Load(); n != 0 {
		t.Errorf("the spoofed host got %d requests", n)
	}
	for _, s := range rec.all() {
		if s.Host != upHost || s.Path != "/api/v3/toolkits" {
			t.Errorf("upstream saw Host %q path %q", s.Host, s.Path)
		}
	}
}

func TestAllowMultipleHeaderRemoved(t *testing.T) {
	rec := &recorder{}
	e := newProxyEnv(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { rec.add(r, nil) }), envOptions{})
	req, _ := http.NewRequest(http.MethodPost, e.front.URL+"/api/v3/connected_accounts/link", strings.NewReader(`{}`))
	req.Header["x-composio-allow-multiple"] = []string{"true"} // as an SDK's defaultHeaders sends it
	req.Header.Add(apierror.HeaderAllowMultiple, "true")
	req.Header.Set("x-api-key", "k")
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	h := rec.all()[0].Header
	if v := h.Values(apierror.HeaderAllowMultiple); len(v) != 0 {
		t.Errorf("opt-in header reached the upstream: %q", v)
	}
	if h.Get("X-Api-Key") != "k" {
		t.Errorf("credential lost: %v", h)
	}
}

func TestRequestIDUpAndBack(t *testing.T) {
	tests := []struct {
		name, upstreamID, want string
	}{
		{"upstream sends none", "", testRequestID},
		{"upstream's own wins", "up-123", "up-123"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			e := newProxyEnv(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				rec.add(r, nil)
				if tc.upstreamID != "" {
					w.Header().Set("X-Request-Id", tc.upstreamID)
				}
			}), envOptions{})
			req, _ := http.NewRequest(http.MethodGet, e.front.URL+"/api/v3/x", nil)
			req.Header.Set("X-Request-Id", "client-made-up") // the scope's id is what goes up
			resp, err := e.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := rec.all()[0].Header.Values("X-Request-Id"); len(got) != 1 || got[0] != testRequestID {
				t.Errorf("upstream X-Request-Id %q, want [%s]", got, testRequestID)
			}
			if got := resp.Header.Get("X-Request-Id"); got != tc.want {
				t.Errorf("answer X-Request-Id %q, want %q", got, tc.want)
			}
		})
	}
}

// Time waiting on the upstream, body included, lands in the scope.
func TestUpstreamTimeInScope(t *testing.T) {
	const pause = 50 * time.Millisecond
	e := newProxyEnv(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "a")
		w.(http.Flusher).Flush()
		time.Sleep(pause)
		io.WriteString(w, "b")
	}), envOptions{})
	resp, err := e.client.Get(e.front.URL + "/x")
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	resp.Body.Close()
	_, s := e.lastWritten(t)
	if got := time.Duration(s.UpstreamNanos.Load()); got < pause {
		t.Errorf("UpstreamNanos %v, want at least the body's %v", got, pause)
	}
	if got := s.LookupNanos.Load(); got != 0 {
		t.Errorf("LookupNanos %v on a forward", got)
	}
}

func resetConn(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // close with RST
	}
	_ = conn.Close()
}

func TestUpstreamFailuresAnswered(t *testing.T) {
	tests := []struct {
		name       string
		up         http.HandlerFunc
		o          envOptions
		closedPort bool
		wantStatus int
		wantSlug   string
		wantReason string
	}{
		{
			name: "connection refused", closedPort: true,
			wantStatus: http.StatusBadGateway, wantSlug: apierror.SlugUpstreamError, wantReason: upstream.ReasonConnRefused,
		},
		{
			name: "reset before the answer",
			up: func(w http.ResponseWriter, r *http.Request) {
				io.ReadAll(r.Body)
				resetConn(w)
			},
			wantStatus: http.StatusBadGateway, wantSlug: apierror.SlugUpstreamError, wantReason: upstream.ReasonConnReset,
		},
		{
			name: "closed before the answer",
			up: func(w http.ResponseWriter, r *http.Request) {
				io.ReadAll(r.Body) // unread bytes would make the close a reset
				conn, _, _ := http.NewResponseController(w).Hijack()
				conn.Close()
			},
			wantStatus: http.StatusBadGateway, wantSlug: apierror.SlugUpstreamError, wantReason: upstream.ReasonEOF,
		},
		{
			name: "slow first byte past the response header timeout",
			up: func(w http.ResponseWriter, r *http.Request) {
				io.ReadAll(r.Body) // so that the server notices the proxy hanging up
				select {
				case <-r.Context().Done():
				case <-time.After(5 * time.Second):
				}
			},
			o:          envOptions{transport: upstream.TransportSettings{ResponseHeaderTimeout: 100 * time.Millisecond}},
			wantStatus: http.StatusGatewayTimeout, wantSlug: apierror.SlugUpstreamTimeout, wantReason: upstream.ReasonTimeout,
		},
		{
			name: "untrusted certificate",
			up:   func(w http.ResponseWriter, r *http.Request) {},
			o:    envOptions{tls: true, transport: upstream.TransportSettings{}},
			// newProxyEnv trusts the test certificate; break that below.
			wantStatus: http.StatusBadGateway, wantSlug: apierror.SlugUpstreamError, wantReason: upstream.ReasonTLS,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.o
			o.proxy.RetryAfterSeconds = 2
			if tc.closedPort {
				o.target = "http://" + closedAddr(t)
			}
			up := tc.up
			if up == nil {
				up = func(http.ResponseWriter, *http.Request) {}
			}
			var e *proxyEnv
			if tc.wantReason == upstream.ReasonTLS {
				// An https target whose certificate nobody trusts.
				tlsUp := httptest.NewUnstartedServer(up)
				tlsUp.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshake failure is expected
				tlsUp.StartTLS()
				defer tlsUp.Close()
				o.tls = false
				o.target = tlsUp.URL
				e = newProxyEnv(t, up, o)
			} else {
				e = newProxyEnv(t, up, o)
			}
			resp, err := e.client.Post(e.front.URL+"/api/v3/tools/execute/X", "application/json", strings.NewReader(`{"k":"v"}`))
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var env envelope
			if err := json.Unmarshal(raw, &env); err != nil {
				t.Fatalf("body is not the envelope: %s", raw)
			}
			if resp.StatusCode != tc.wantStatus || env.Error.Status != tc.wantStatus || env.Error.Slug != tc.wantSlug ||
				env.Error.Code != apierror.CodeUpstream {
				t.Errorf("got %d %+v, want %d %s", resp.StatusCode, env.Error, tc.wantStatus, tc.wantSlug)
			}
			if env.Error.RequestID != testRequestID || resp.Header.Get("X-Request-Id") != testRequestID {
				t.Errorf("request id: body %q header %q", env.Error.RequestID, resp.Header.Get("X-Request-Id"))
			}
			if resp.Header.Get("Retry-After") != "2" || resp.Header.Get("Content-Type") != "application/json" {
				t.Errorf("headers %v", resp.Header)
			}
			for _, leak := range []string{"dial", "tcp", "127.0.0.1", "EOF", "reset", "x509", "timeout awaiting"} {
				if strings.Contains(string(raw), leak) {
					t.Errorf("internal error text %q echoed to the client: %s", leak, raw)
				}
			}
			if got := upstreamErrs(e.m, upstream.OpForward, tc.wantReason); got != 1 {
				t.Errorf("upstream_errors_total{forward,%s} = %v, want 1", tc.wantReason, got)
			}
			entries := e.logs.FilterMessage("upstream call failed").All()
			if len(entries) != 1 || entries[0].Level != zapcore.WarnLevel ||
				entries[0].ContextMap()["request_id"] != testRequestID || entries[0].ContextMap()["reason"] != tc.wantReason ||
				entries[0].ContextMap()["error"] == "" {
				t.Errorf("log lines %+v", e.logs.All())
			}
		})
	}
}

// An answer cut off half way is never passed off as complete.
func TestResetMidAnswer(t *testing.T) {
	e := newProxyEnv(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		brw.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"items\":[")
		brw.Flush()
		time.Sleep(20 * time.Millisecond)
		if tc, ok := conn.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		conn.Close()
	}), envOptions{})
	resp, err := e.client.Get(e.front.URL + "/api/v3/connected_accounts")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || err == nil {
		t.Errorf("status %d, body %q, read error %v: want the cut to reach the client as an error", resp.StatusCode, body, err)
	}
	e.lastWritten(t)
	if got := upstreamErrs(e.m, upstream.OpForward, upstream.ReasonConnReset); got != 1 {
		t.Errorf("upstream_errors_total{forward,conn_reset} = %v, want 1", got)
	}
}

// A client that leaves gets nothing written, the upstream call is
// cancelled, and the proxy logs it at INFO.
func TestClientGone(t *testing.T) {
	arrived := make(chan struct{})
	cancelled := make(chan struct{})
	e := newProxyEnv(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		select {
		case <-r.Context().Done():
			close(cancelled)
		case <-time.After(5 * time.Second):
		}
	}), envOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.front.URL+"/api/v3/slow", nil)
	errc := make(chan error, 1)
	go func() {
		resp, err := e.client.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	<-arrived
	cancel()
	if err := <-errc; err == nil {
		t.Error("the client got an answer after leaving")
	}
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream request was not cancelled")
	}
	status, _ := e.lastWritten(t)
	if status != 0 {
		t.Errorf("the proxy wrote %d to a client that left", status)
	}
	if n := e.logs.FilterMessage("client gone").FilterField(zap.String("reason", upstream.ReasonClientGone)).Len(); n != 1 {
		t.Errorf("want one INFO 'client gone' line, got %+v", e.logs.All())
	}
	if n := e.logs.FilterLevelExact(zapcore.WarnLevel).Len(); n != 0 {
		t.Errorf("client gone logged at WARN: %+v", e.logs.All())
	}
	if got := upstreamErrs(e.m, upstream.OpForward, upstream.ReasonClientGone); got != 1 {
		t.Errorf("upstream_errors_total{forward,client_gone} = %v, want 1", got)
	}
}

// A request body cut by http.MaxBytesReader is answered 413.
func TestBodyTooLarge(t *testing.T) {
	e := newProxyEnv(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
	}), envOptions{wrap: func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			r.Body = http.MaxBytesReader(w, r.Body, 10)
			h.ServeHTTP(w, r)
		})
	}})
	pr, pw := io.Pipe()
	go func() {
		pw.Write(bytes.Repeat([]byte("x"), 1000))
		pw.Close()
	}()
	resp, err := e.client.Post(e.front.URL+"/api/v3/files", "application/octet-stream", pr)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var env envelope
	_ = json.Unmarshal(raw, &env)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || env.Error.Slug != apierror.SlugBodyTooLarge ||
		resp.Header.Get(apierror.HeaderShouldRetry) != "false" {
		t.Errorf("got %d %s %v", resp.StatusCode, raw, resp.Header)
	}
}

// An https upstream that speaks HTTP/2 gets HTTP/2 from the transport.
func TestHTTP2ToHTTPSUpstream(t *testing.T) {
	var proto atomic.Value
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proto.Store(r.Proto)
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Deprecation", "true")
		w.WriteHeader(http.StatusCreated)
		w.Write(body)
	}))
	up.EnableHTTP2 = true
	up.StartTLS()
	defer up.Close()
	tr := upstream.NewTransport(upstream.TransportSettings{})
	tr.TLSClientConfig = trusting(up)
	defer tr.CloseIdleConnections()
	p := upstream.NewProxy(mustURL(t, up.URL), tr, upstream.ProxyOptions{})
	front := httptest.NewServer(p)
	defer front.Close()
	resp, err := http.Post(front.URL+"/api/v3/x", "application/json", strings.NewReader(`{"a":1}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if proto.Load() != "HTTP/2.0" {
		t.Errorf("upstream saw %v, want HTTP/2.0", proto.Load())
	}
	if resp.StatusCode != http.StatusCreated || string(body) != `{"a":1}` || resp.Header.Get("Deprecation") != "true" {
		t.Errorf("answer %d %s %v", resp.StatusCode, body, resp.Header)
	}
}
