package faults_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/composio-guard/composio-guard/internal/apierror"
	"github.com/composio-guard/composio-guard/internal/composiotest"
	"github.com/composio-guard/composio-guard/internal/testproc"
	"github.com/composio-guard/composio-guard/test/faults/harness"
)

const (
	key        = "test_key_faults" // a test key: the fake's request log keeps it
	authConfig = "ac_faults"
)

var seq atomic.Int64

func user(prefix string) string { return fmt.Sprintf("%s_%d", prefix, seq.Add(1)) }

// wantEnvelope checks an answer the proxy wrote itself: status, slug, code,
// the request id in body and header agreeing, and no internal error text.
func wantEnvelope(t *testing.T, a harness.Answer, status int, slug string, code int) {
	t.Helper()
	if a.Err != nil || a.Status != status {
		t.Fatalf("got %v, want %d %s", a, status, slug)
	}
	e := a.Envelope()
	if e.Slug != slug || e.Code != code || e.Status != status {
		t.Errorf("envelope slug/code/status = %q/%d/%d, want %q/%d/%d; body %s", e.Slug, e.Code, e.Status, slug, code, status, a.Body)
	}
	if id := a.Header.Get(apierror.HeaderRequestID); id == "" || id != e.RequestID {
		t.Errorf("X-Request-Id %q and body request_id %q must be set and agree", id, e.RequestID)
	}
	if ct := a.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q, want JSON (the SDKs parse only JSON bodies)", ct)
	}
	for _, leak := range []string{"dial tcp", "connection refused", "connection reset", "127.0.0.1", "EOF", "timeout awaiting"} {
		if strings.Contains(string(a.Body), leak) {
			t.Errorf("body leaks internal error text %q: %s", leak, a.Body)
		}
	}
}

func wantRetryAfter(t *testing.T, a harness.Answer) {
	t.Helper()
	if n, err := strconv.Atoi(a.Header.Get("Retry-After")); err != nil || n < 1 {
		t.Errorf("Retry-After = %q, want whole seconds >= 1", a.Header.Get("Retry-After"))
	}
}

// linkPosts counts the link POSTs for u that reached the fake.
func linkPosts(up *harness.Upstream, u string) int {
	n := 0
	for _, s := range up.Seen() {
		if s.Method == http.MethodPost && strings.HasSuffix(s.Path, "/connected_accounts/link") && strings.Contains(string(s.Body), strconv.Quote(u)) {
			n++
		}
	}
	return n
}

// pendingOrActive counts u's ACTIVE and INITIATED accounts at the fake.
func pendingOrActive(up *harness.Upstream, u string) int {
	n := 0
	for _, a := range up.Accounts(key, u, authConfig) {
		if a.Status == composiotest.StatusActive || a.Status == composiotest.StatusInitiated {
			n++
		}
	}
	return n
}

// TestConnectionRefused: Composio's port is closed. Pass-through answers 502
// in Composio's envelope; a guarded create cannot be checked, so it is 503
// with Retry-After in fail-closed, and forwarded (then 502) in fail-open.
// Both come back at once, not after a timeout.
func TestConnectionRefused(t *testing.T) {
	t.Parallel()
	upstream := "http://" + harness.ClosedPort(t)
	closed := testproc.StartProxy(t, upstream, "GUARD_FAILURE_MODE=closed")
	open := testproc.StartProxy(t, upstream, "GUARD_FAILURE_MODE=open")
	c := harness.Client(t)
	h := map[string]string{"x-api-key": key}

	cases := []struct {
		name       string
		proxy      *testproc.Proxy
		method     string
		path       string
		body       string
		status     int
		slug       string
		code       int
		retryAfter bool
	}{
		{"passthrough GET", closed, http.MethodGet, "/api/v3/connected_accounts?user_ids=u1", "", 502, apierror.SlugUpstreamError, apierror.CodeUpstream, false},
		{"passthrough POST", closed, http.MethodPost, "/api/v3.1/tool_router/session", `{"user_id":"u1"}`, 502, apierror.SlugUpstreamError, apierror.CodeUpstream, false},
		{"link fail-closed", closed, http.MethodPost, "/api/v3/connected_accounts/link", harness.LinkBody("u1", authConfig), 503, apierror.SlugGuardUnavailable, apierror.CodeGuardUnavailable, true},
		{"legacy create fail-closed", closed, http.MethodPost, "/api/v3/connected_accounts", harness.CreateBody("u1", authConfig), 503, apierror.SlugGuardUnavailable, apierror.CodeGuardUnavailable, true},
		{"link fail-open", open, http.MethodPost, "/api/v3.1/connected_accounts/link", harness.LinkBody("u1", authConfig), 502, apierror.SlugUpstreamError, apierror.CodeUpstream, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Twice: the second may meet an open breaker, and must look the same.
			for range 2 {
				a := harness.Do(c, tc.method, tc.proxy.URL+tc.path, h, tc.body)
				wantEnvelope(t, a, tc.status, tc.slug, tc.code)
				if tc.retryAfter {
					wantRetryAfter(t, a)
				}
				if a.Took > 2*time.Second {
					t.Errorf("answered after %s; a refused connection should fail at once", a.Took)
				}
			}
		})
	}
}

// TestResetMidResponse: Composio drops the connection (RST) part-way. The
// client must never get a torn answer that looks complete; a link whose
// answer broke must not be created twice when the client (or its SDK, which
// retries connection errors) sends it again.
func TestResetMidResponse(t *testing.T) {
	t.Parallel()
	up := harness.NewUpstream(t)
	p := testproc.StartProxy(t, up.URL)
	c := harness.Client(t)
	h := map[string]string{"x-api-key": key}

	const tornLen = 4096
	var linkArmed atomic.Bool
	up.Hook(func(w http.ResponseWriter, r *http.Request, fake http.Handler) bool {
		switch {
		case r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/connected_accounts/ca_torn"):
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Length", strconv.Itoa(tornLen))
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write([]byte(`{"id":"ca_torn","padding":"` + strings.Repeat("x", tornLen/4)))
			harness.Reset(w)
			return true
		case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/connected_accounts/link") && linkArmed.CompareAndSwap(true, false):
			// The link takes effect, then the answer breaks half way.
			rec := httptest.NewRecorder()
			fake.ServeHTTP(rec, r)
			body := rec.Body.Bytes()
			for k, vs := range rec.Header() {
				w.Header()[k] = vs
			}
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.WriteHeader(rec.Code)
			_, _ = w.Write(body[:len(body)/2])
			harness.Reset(w)
			return true
		}
		return false
	})

	t.Run("passthrough answer cut after the headers", func(t *testing.T) {
		a := harness.Do(c, http.MethodGet, p.URL+"/api/v3/connected_accounts/ca_torn", h, "")
		if a.Err == nil && a.Status == http.StatusOK && len(a.Body) == tornLen {
			t.Fatalf("client got a complete-looking answer from a torn one: %v", a)
		}
		if a.Err == nil && a.Status != http.StatusBadGateway {
			t.Fatalf("got %v; want a broken answer (transport error) or a 502", a)
		}
		// The proxy itself is unharmed.
		if b := harness.Do(c, http.MethodGet, p.URL+"/api/v3/connected_accounts?user_ids=x", h, ""); b.Err != nil || b.Status != 200 {
			t.Fatalf("next request: %v", b)
		}
	})

	t.Run("passthrough reset before any byte", func(t *testing.T) {
		// Not limited to one request: the transport may retry an idempotent GET once.
		if err := up.Fake.SetFault(composiotest.RouteGet, composiotest.Fault{Reset: true}); err != nil {
			t.Fatal(err)
		}
		defer up.Fake.ClearFault(composiotest.RouteGet)
		a := harness.Do(c, http.MethodGet, p.URL+"/api/v3/connected_accounts/ca_1", h, "")
		wantEnvelope(t, a, http.StatusBadGateway, apierror.SlugUpstreamError, apierror.CodeUpstream)
	})

	t.Run("link reset before any byte, then retried", func(t *testing.T) {
		u := user("reset_before")
		if err := up.Fake.SetFault(composiotest.RouteLink, composiotest.Fault{Reset: true}); err != nil {
			t.Fatal(err)
		}
		a := harness.Link(c, p.URL, key, u, authConfig, nil)
		up.Fake.ClearFault(composiotest.RouteLink)
		wantEnvelope(t, a, http.StatusBadGateway, apierror.SlugUpstreamError, apierror.CodeUpstream)
		if n := pendingOrActive(up, u); n != 0 {
			t.Fatalf("%d accounts after a reset link; the fake resets before acting", n)
		}
		if b := harness.Link(c, p.URL, key, u, authConfig, nil); b.Err != nil || b.Status != http.StatusCreated {
			t.Fatalf("retry: %v", b)
		}
		if n := pendingOrActive(up, u); n != 1 {
			t.Fatalf("%d accounts after the retry, want 1", n)
		}
	})

	t.Run("link answer cut after the link took effect, then retried", func(t *testing.T) {
		u := user("reset_mid")
		linkArmed.Store(true)
		a := harness.Link(c, p.URL, key, u, authConfig, nil)
		if a.Err == nil && a.Status == http.StatusCreated && a.AccountID() != "" {
			t.Fatalf("client got a complete-looking link answer from a torn one: %v", a)
		}
		if n := pendingOrActive(up, u); n != 1 {
			t.Fatalf("%d accounts after the torn link, want 1 (it took effect)", n)
		}
		// What the SDKs do after a connection error: the same POST again.
		b := harness.Link(c, p.URL, key, u, authConfig, nil)
		if b.Err != nil {
			t.Fatalf("retry: %v", b)
		}
		if n := pendingOrActive(up, u); n != 1 {
			t.Errorf("the retry of a link whose answer broke created account number %d for the same user (retry answered %v); "+
				"the guard forwards it because the INITIATED account has no pending-link lease", n, b)
		}
	})
}

// TestSlowFirstByte: Composio sends nothing for longer than
// GUARD_UPSTREAM_RESPONSE_HEADER_TIMEOUT (forward) or GUARD_LOOKUP_TIMEOUT
// (lookup). The client gets 504 (forward) or 503 (guard cannot decide)
// after about that long, and a link cut this way was not created.
func TestSlowFirstByte(t *testing.T) {
	t.Parallel()
	up := harness.NewUpstream(t)
	p := testproc.StartProxy(t, up.URL,
		"GUARD_UPSTREAM_RESPONSE_HEADER_TIMEOUT=1s", "GUARD_LOOKUP_TIMEOUT=1s", "GUARD_FAILURE_MODE=closed")
	c := harness.Client(t)
	h := map[string]string{"x-api-key": key}
	const slow = 3 * time.Second

	t.Run("passthrough", func(t *testing.T) {
		if err := up.Fake.SetFault(composiotest.RouteGet, composiotest.Fault{Latency: slow, Times: 1}); err != nil {
			t.Fatal(err)
		}
		a := harness.Do(c, http.MethodGet, p.URL+"/api/v3/connected_accounts/ca_slow", h, "")
		wantEnvelope(t, a, http.StatusGatewayTimeout, apierror.SlugUpstreamTimeout, apierror.CodeUpstream)
		if a.Took < 900*time.Millisecond || a.Took > 2500*time.Millisecond {
			t.Errorf("504 after %s, want about the 1s response-header timeout", a.Took)
		}
	})

	t.Run("link forward", func(t *testing.T) {
		u := user("slow_link")
		if err := up.Fake.SetFault(composiotest.RouteLink, composiotest.Fault{Latency: slow, Times: 1}); err != nil {
			t.Fatal(err)
		}
		sent := time.Now()
		a := harness.Link(c, p.URL, key, u, authConfig, nil)
		wantEnvelope(t, a, http.StatusGatewayTimeout, apierror.SlugUpstreamTimeout, apierror.CodeUpstream)
		// Past the fake's latency: had the proxy not cancelled the
		// upstream request, the account would exist by now.
		time.Sleep(time.Until(sent.Add(slow + 500*time.Millisecond)))
		if n := pendingOrActive(up, u); n != 0 {
			t.Fatalf("%d accounts: the timed-out link was not cancelled upstream", n)
		}
		if b := harness.Link(c, p.URL, key, u, authConfig, nil); b.Err != nil || b.Status != http.StatusCreated {
			t.Fatalf("retry: %v", b)
		}
		if n := pendingOrActive(up, u); n != 1 {
			t.Fatalf("%d accounts after the retry, want 1", n)
		}
	})

	t.Run("lookup", func(t *testing.T) {
		u := user("slow_lookup")
		if err := up.Fake.SetFault(composiotest.RouteList, composiotest.Fault{Latency: slow, Times: 1}); err != nil {
			t.Fatal(err)
		}
		a := harness.Link(c, p.URL, key, u, authConfig, nil)
		wantEnvelope(t, a, http.StatusServiceUnavailable, apierror.SlugGuardUnavailable, apierror.CodeGuardUnavailable)
		wantRetryAfter(t, a)
		if a.Took > 2500*time.Millisecond {
			t.Errorf("503 after %s, want about the 1s lookup timeout", a.Took)
		}
		if n := linkPosts(up, u); n != 0 {
			t.Errorf("%d link POSTs reached Composio although the guard could not decide", n)
		}
	})
}

// TestListAnswerBroken: the lookup gets 200 with a body it cannot use. In
// fail-closed the link is refused with 503 and never forwarded; in fail-open
// it is forwarded (once).
func TestListAnswerBroken(t *testing.T) {
	t.Parallel()
	faults := []struct {
		name  string
		fault composiotest.Fault
	}{
		{"truncated", composiotest.Fault{Truncate: true}},
		{"not JSON", composiotest.Fault{NotJSON: true}},
		{"wrong shape", composiotest.Fault{Status: 200, Body: `{"items":{"id":"ca_1"},"next_cursor":null}`}},
	}
	for _, mode := range []string{"closed", "open"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			up := harness.NewUpstream(t)
			// The breaker is off so that each case meets the broken answer itself.
			p := testproc.StartProxy(t, up.URL, "GUARD_FAILURE_MODE="+mode, "GUARD_LOOKUP_BREAKER_THRESHOLD=0", "GUARD_LOOKUP_TIMEOUT=3s")
			c := harness.Client(t)
			for _, f := range faults {
				t.Run(f.name, func(t *testing.T) {
					u := user("broken_list")
					if err := up.Fake.SetFault(composiotest.RouteList, f.fault); err != nil {
						t.Fatal(err)
					}
					a := harness.Link(c, p.URL, key, u, authConfig, nil)
					up.Fake.ClearFault(composiotest.RouteList)
					if a.Took > 2*time.Second {
						t.Errorf("answered after %s: a broken answer is no reason to wait", a.Took)
					}
					if mode == "closed" {
						wantEnvelope(t, a, http.StatusServiceUnavailable, apierror.SlugGuardUnavailable, apierror.CodeGuardUnavailable)
						wantRetryAfter(t, a)
						if n := linkPosts(up, u); n != 0 {
							t.Errorf("%d link POSTs reached Composio in fail-closed", n)
						}
						return
					}
					if a.Err != nil || a.Status != http.StatusCreated {
						t.Fatalf("fail-open: got %v, want the link forwarded (201)", a)
					}
					if n := pendingOrActive(up, u); n != 1 {
						t.Errorf("%d accounts, want 1", n)
					}
				})
			}
		})
	}
}

// TestRateLimitPassedThrough: a 429 from Composio reaches the client as
// Composio sent it (status, Retry-After, rate-limit headers, body), whether
// it answered a pass-through call, the guard's lookup or the forwarded link,
// and nothing is created.
func TestRateLimitPassedThrough(t *testing.T) {
	t.Parallel()
	up := harness.NewUpstream(t)
	p := testproc.StartProxy(t, up.URL)
	c := harness.Client(t)
	const body = `{"message":"Rate limit exceeded. Please retry after 7 seconds."}`
	fault := composiotest.Fault{Status: http.StatusTooManyRequests, Body: body,
		Headers: map[string]string{"Retry-After": "7", "X-RateLimit-Remaining": "0", "Content-Type": "application/json"}}

	cases := []struct {
		name   string
		route  string // where the fault plays
		method string
		path   string
		body   func(u string) string
	}{
		{"passthrough list", composiotest.RouteList, http.MethodGet, "/api/v3/connected_accounts?user_ids=u1", func(string) string { return "" }},
		{"link: the lookup is limited", composiotest.RouteList, http.MethodPost, "/api/v3/connected_accounts/link", func(u string) string { return harness.LinkBody(u, authConfig) }},
		{"link: the link is limited", composiotest.RouteLink, http.MethodPost, "/api/v3.1/connected_accounts/link", func(u string) string { return harness.LinkBody(u, authConfig) }},
		{"legacy create: the lookup is limited", composiotest.RouteList, http.MethodPost, "/api/v3/connected_accounts", func(u string) string { return harness.CreateBody(u, authConfig) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u := user("limited")
			if err := up.Fake.SetFault(tc.route, fault); err != nil {
				t.Fatal(err)
			}
			a := harness.Do(c, tc.method, p.URL+tc.path, map[string]string{"x-api-key": key}, tc.body(u))
			up.Fake.ClearFault(tc.route)
			if a.Err != nil || a.Status != http.StatusTooManyRequests {
				t.Fatalf("got %v, want Composio's 429", a)
			}
			if string(a.Body) != body {
				t.Errorf("body changed:\n got %s\nwant %s", a.Body, body)
			}
			for k, want := range map[string]string{"Retry-After": "7", "X-RateLimit-Remaining": "0", "Content-Type": "application/json"} {
				if got := a.Header.Get(k); got != want {
					t.Errorf("%s = %q, want %q as Composio sent it", k, got, want)
				}
			}
			if v := a.Header.Values(apierror.HeaderShouldRetry); len(v) > 0 {
				t.Errorf("x-should-retry %q added: the SDKs must retry a 429 after Retry-After", v)
			}
			if n := pendingOrActive(up, u); n != 0 {
				t.Errorf("%d accounts created by a rate-limited request", n)
			}
		})
	}
}

// TestLookupBreaker: a storm of 5xx on the list call. After
// GUARD_LOOKUP_BREAKER_THRESHOLD failures in a row guarded requests fail
// fast (closed: 503; open: forwarded) without calling the list route; the
// state is on /metrics; after the cool-down one probe runs, a failed probe
// opens it again, and once Composio is healthy it closes by itself.
func TestLookupBreaker(t *testing.T) {
	t.Parallel()
	const (
		threshold = 3
		coolDown  = 2 * time.Second
		latency   = 800 * time.Millisecond // each failing lookup costs this much
		fast      = 250 * time.Millisecond // "fail fast": well under the latency and the 3s lookup timeout
	)
	state := map[string]string{"breaker": "lookup"}
	for _, mode := range []string{"closed", "open"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			up := harness.NewUpstream(t)
			p := testproc.StartProxy(t, up.URL, "GUARD_FAILURE_MODE="+mode,
				"GUARD_LOOKUP_BREAKER_THRESHOLD="+strconv.Itoa(threshold), "GUARD_LOOKUP_BREAKER_COOLDOWN="+coolDown.String(),
				"GUARD_LOOKUP_TIMEOUT=3s")
			c := harness.Client(t)
			var users []string
			link := func() harness.Answer {
				u := user("storm_" + mode)
				users = append(users, u)
				return harness.Link(c, p.URL, key, u, authConfig, nil)
			}
			wantFailed := func(a harness.Answer) {
				t.Helper()
				if mode == "closed" {
					wantEnvelope(t, a, http.StatusServiceUnavailable, apierror.SlugGuardUnavailable, apierror.CodeGuardUnavailable)
					wantRetryAfter(t, a)
					return
				}
				if a.Err != nil || a.Status != http.StatusCreated {
					t.Fatalf("fail-open: got %v, want the link forwarded", a)
				}
			}
			wantState := func(want float64) {
				t.Helper()
				if v, ok := p.Metric(t, "composio_guard_circuit_breaker_state", state); !ok || v != want {
					t.Fatalf("composio_guard_circuit_breaker_state{breaker=\"lookup\"} = %v (found %v), want %v", v, ok, want)
				}
			}
			lists := func() int { return up.Fake.Count(http.MethodGet, composiotest.RouteList) }

			wantState(0)
			if err := up.Fake.SetFault(composiotest.RouteList, composiotest.Fault{Status: 503, Latency: latency}); err != nil {
				t.Fatal(err)
			}
			for range threshold {
				a := link()
				wantFailed(a)
				if a.Took < latency-100*time.Millisecond {
					t.Fatalf("a failure before the breaker opened took %s; the lookup should have waited for the fake", a.Took)
				}
			}
			wantState(2)

			before := lists()
			for range 5 {
				a := link()
				wantFailed(a)
				if a.Took > fast {
					t.Errorf("with the breaker open the answer took %s, want < %s", a.Took, fast)
				}
			}
			if n := lists() - before; n != 0 {
				t.Errorf("%d list calls reached Composio while the breaker was open", n)
			}

			// Cool-down over, Composio still failing: one probe, then open again.
			time.Sleep(coolDown + 200*time.Millisecond)
			before = lists()
			wantFailed(link())
			if n := lists() - before; n != 1 {
				t.Errorf("%d list calls after the cool-down, want exactly 1 probe", n)
			}
			wantState(2)
			if a := link(); a.Took > fast {
				t.Errorf("after a failed probe the answer took %s, want < %s", a.Took, fast)
			}

			// Composio healthy again: the breaker closes by itself.
			up.Fake.ClearFault(composiotest.RouteList)
			time.Sleep(coolDown + 200*time.Millisecond)
			before = lists()
			for range 2 {
				if a := link(); a.Err != nil || a.Status != http.StatusCreated {
					t.Fatalf("after recovery: %v", a)
				}
			}
			if n := lists() - before; n != 2 {
				t.Errorf("%d list calls for 2 links after recovery, want 2 (every link checked again)", n)
			}
			wantState(0)

			for i, u := range users {
				n := pendingOrActive(up, u)
				want := 1
				if mode == "closed" && i < len(users)-2 {
					want = 0 // refused during the storm, never forwarded
				}
				if n != want {
					t.Errorf("user %s: %d accounts, want %d", u, n, want)
				}
			}
		})
	}
}
