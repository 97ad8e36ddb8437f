package e2e_test

import (
	"bytes"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/composio-guard/composio-guard/internal/apierror"
	"github.com/composio-guard/composio-guard/internal/composiotest"
	"github.com/composio-guard/composio-guard/internal/composiotest/fakeserver"
	"github.com/composio-guard/composio-guard/internal/intercept"
)

const (
	lookupTimeout  = 400 * time.Millisecond
	forwardTimeout = time.Second // upstream response header timeout of the fail-closed proxy
)

// TestLookupFailure: when the guard's lookup cannot run, a fail-closed proxy
// answers 503 and forwards nothing, a fail-open one forwards and counts; a
// 401/403/429 of the lookup goes back to the caller as Composio sent it.
// Faults are global on a fake, so these cases run one after the other.
func TestLookupFailure(t *testing.T) {
	t.Parallel()
	f := startFake(t)
	common := []string{
		"GUARD_LOOKUP_TIMEOUT=" + lookupTimeout.String(),
		"GUARD_LOOKUP_BREAKER_THRESHOLD=0", // every case must reach the fake
		"GUARD_RETRY_AFTER=3s",
	}
	closed := startProxy(t, "fail-closed", f.URL, append(common, "GUARD_FAILURE_MODE=closed",
		"GUARD_UPSTREAM_RESPONSE_HEADER_TIMEOUT="+forwardTimeout.String())...)
	open := startProxy(t, "fail-open", f.URL, append(common, "GUARD_FAILURE_MODE=open")...)

	for _, c := range []struct {
		name  string
		fault composiotest.Fault
	}{
		{"500", composiotest.Fault{Status: 500, Body: `{"error":{"message":"boom","code":500,"slug":"Internal","status":500}}`}},
		{"502 html", composiotest.Fault{Status: 502, Body: `<html>bad gateway</html>`, Headers: map[string]string{"Content-Type": "text/html"}}},
		{"not JSON", composiotest.Fault{NotJSON: true}},
		{"truncated JSON", composiotest.Fault{Truncate: true}},
		{"connection reset", composiotest.Fault{Reset: true}},
		{"hang past the lookup timeout", composiotest.Fault{Hang: true}},
		{"slower than the lookup timeout", composiotest.Fault{Latency: 3 * lookupTimeout}},
	} {
		t.Run(c.name, func(t *testing.T) {
			f.SetFault(t, composiotest.RouteList, c.fault)
			defer f.ClearFaults(t)

			cred, user, ac := uniq("key"), uniq("user"), uniq("ac")
			a := link(t, closed, "/api/v3", cred, user, ac)
			wantEnvelope(t, a, http.StatusServiceUnavailable, apierror.SlugGuardUnavailable)
			if got := a.header.Get("Retry-After"); got != "3" {
				t.Errorf("Retry-After = %q, want 3 (GUARD_RETRY_AFTER)", got)
			}
			if n := len(posts(t, f, cred)); n != 0 {
				t.Errorf("fail-closed forwarded %d POSTs, want 0", n)
			}
			if len(f.RequestsOf(t, cred, composiotest.RouteList)) == 0 {
				t.Errorf("the fault was never met: no lookup reached the fake")
			}

			// One failed lookup is one upstream error, however many layers see it.
			lookupErrs := map[string]string{"op": "lookup"}
			errsBefore := metric(t, closed, "composio_guard_upstream_errors_total", lookupErrs)
			cred, user, ac = uniq("key"), uniq("user"), uniq("ac")
			wantEnvelope(t, link(t, closed, "/api/v3", cred, user, ac), http.StatusServiceUnavailable, apierror.SlugGuardUnavailable)
			if c.fault.Reset || c.fault.Hang || c.fault.Latency > 0 {
				if d := metric(t, closed, "composio_guard_upstream_errors_total", lookupErrs) - errsBefore; d != 1 {
					t.Errorf("upstream_errors_total{op=lookup} rose by %v for one failed lookup, want 1", d)
				}
			}

			labels := map[string]string{"route": "link", "decision": intercept.DecisionFailedOpen, "mode": "enforce"}
			before := metric(t, open, "composio_guard_decisions_total", labels)
			cred, user, ac = uniq("key"), uniq("user"), uniq("ac")
			a = link(t, open, "/api/v3", cred, user, ac)
			if a.status != http.StatusCreated {
				t.Fatalf("fail-open: got %s, want the upstream's 201", a)
			}
			if n := len(f.Accounts(t, cred)); n != 1 {
				t.Errorf("fail-open: accounts at the fake = %d, want 1", n)
			}
			if after := metric(t, open, "composio_guard_decisions_total", labels); after != before+1 {
				t.Errorf("decisions_total%v = %v, was %v: want +1", labels, after, before)
			}
		})
	}

	// The forwarded create itself failing: the proxy's own 502 / 504, counted once.
	for _, c := range []struct {
		name   string
		fault  composiotest.Fault
		status int
		slug   string
	}{
		{"forward reset", composiotest.Fault{Reset: true}, http.StatusBadGateway, apierror.SlugUpstreamError},
		{"forward past the response header timeout", composiotest.Fault{Hang: true}, http.StatusGatewayTimeout, apierror.SlugUpstreamTimeout},
	} {
		t.Run(c.name, func(t *testing.T) {
			f.SetFault(t, composiotest.RouteLink, c.fault)
			defer f.ClearFaults(t)
			fwdErrs := map[string]string{"op": "forward"}
			before := metric(t, closed, "composio_guard_upstream_errors_total", fwdErrs)
			a := link(t, closed, "/api/v3", uniq("key"), uniq("user"), uniq("ac"))
			wantEnvelope(t, a, c.status, c.slug)
			if d := metric(t, closed, "composio_guard_upstream_errors_total", fwdErrs) - before; d != 1 {
				t.Errorf("upstream_errors_total{op=forward} rose by %v for one failed forward, want 1", d)
			}
		})
	}

	// Answers of the lookup that belong to the caller, whatever the failure mode.
	for _, c := range []struct {
		name   string
		cred   string
		hdr    []string
		fault  *composiotest.Fault
		status int
		header map[string]string
		body   string // exact, when set
	}{
		{name: "403 scoped key", cred: "scoped_nolist_" + uniq("key"), status: 403},
		{name: "401 no credential", hdr: []string{"X-Foo", "no key"}, status: 401},
		{name: "429 with Retry-After", cred: uniq("key"), status: 429,
			fault:  &composiotest.Fault{Status: 429, Body: `{"message":"Rate limit exceeded. Please retry after 7 seconds."}`, Headers: map[string]string{"Retry-After": "7"}},
			header: map[string]string{"Retry-After": "7"}, body: `{"message":"Rate limit exceeded. Please retry after 7 seconds."}`},
	} {
		for _, p := range []*proxy{closed, open} {
			t.Run(c.name+" via "+p.Name, func(t *testing.T) {
				if c.fault != nil {
					f.SetFault(t, composiotest.RouteList, *c.fault)
					defer f.ClearFaults(t)
				}
				postsBefore := countPosts(t, f)
				hdr := c.hdr
				if c.cred != "" {
					hdr = append([]string{"x-api-key", c.cred}, hdr...)
				}
				rid := "refused-" + uniq("rid")
				hdr = append(hdr, apierror.HeaderRequestID, rid)
				a := send(t, http.MethodPost, p.URL+"/api/v3/connected_accounts/link", linkBody(uniq("user"), uniq("ac")), hdr...)
				if a.status != c.status {
					t.Fatalf("got %s, want %d as the lookup got it", a, c.status)
				}
				for k, v := range c.header {
					if got := a.header.Get(k); got != v {
						t.Errorf("header %s = %q, want %q", k, got, v)
					}
				}
				if c.body != "" && string(bytes.TrimSpace(a.body)) != c.body {
					t.Errorf("body = %s, want as the upstream sent it: %s", a.body, c.body)
				}
				if a.header.Get(apierror.HeaderRequestID) != rid {
					t.Errorf("X-Request-Id = %q, want %q", a.header.Get(apierror.HeaderRequestID), rid)
				}
				if n := countPosts(t, f) - postsBefore; n != 0 {
					t.Errorf("%d POSTs forwarded after a refused lookup, want 0", n)
				}
			})
		}
	}

	// Composio's own answers on pass-through routes reach the client untouched,
	// errors and deprecation headers included (the fake sends none by itself).
	for _, c := range []composiotest.Fault{
		{Status: 200, Body: `{"id":"ca_x","status":"ACTIVE"}`, Headers: map[string]string{
			"Deprecation": "@1767225600", "Sunset": "Thu, 01 Jan 2027 00:00:00 GMT", "Link": `</api/v3.1>; rel="successor-version"`}},
		{Status: 503, Body: `{"error":{"message":"maintenance","status":503}}`, Headers: map[string]string{"Retry-After": "120"}},
		{Status: 429, Body: `{"message":"slow down"}`, Headers: map[string]string{"Retry-After": "9", "X-RateLimit-Remaining": "0"}},
		{Status: 500, Body: "plain text failure", Headers: map[string]string{"Content-Type": "text/plain"}},
	} {
		t.Run(fmt.Sprintf("pass-through %d untouched", c.Status), func(t *testing.T) {
			f.SetFault(t, composiotest.RouteGet, c)
			defer f.ClearFaults(t)
			a := send(t, http.MethodGet, closed.URL+"/api/v3/connected_accounts/ca_x", nil, "x-api-key", uniq("key"))
			if a.status != c.Status || string(a.body) != c.Body {
				t.Errorf("got %d %q, want %d %q as Composio sent it", a.status, a.body, c.Status, c.Body)
			}
			for k, v := range c.Headers {
				if got := a.header.Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
		})
	}

	// Last, after slow lookups and forwards made any double counting large.
	t.Run("access log durations", func(t *testing.T) {
		checkAccessDurations(t, closed)
		checkAccessDurations(t, open)
	})
}

// countPosts counts every POST the fake has seen.
func countPosts(t *testing.T, f *fake) int {
	t.Helper()
	n := 0
	for _, q := range f.Requests(t, "", "") {
		if q.Method == http.MethodPost {
			n++
		}
	}
	return n
}

// TestGzipBody: a gzip body is read, checked, and forwarded byte for byte
// with its Content-Encoding. The fake runs in-process here because its
// control API renders bodies as text, which cannot carry gzip bytes exactly.
func TestGzipBody(t *testing.T) {
	t.Parallel()
	fk, srv := fakeserver.New(t)
	p := startProxy(t, "gzip", srv.URL)

	cred, user, ac := uniq("key"), uniq("user"), uniq("ac")
	plain := linkBody(user, ac)
	zipped := gz(t, plain)
	a := send(t, http.MethodPost, p.URL+"/api/v3/connected_accounts/link", zipped, "x-api-key", cred, "Content-Encoding", "gzip")
	var got []composiotest.Request
	for _, q := range fk.RequestsFor(http.MethodPost, composiotest.RouteLink) {
		if q.Header.Get("X-Api-Key") == cred {
			got = append(got, q)
		}
	}
	if len(got) != 1 {
		t.Fatalf("link POSTs at the fake = %d, want 1 (answer %s)", len(got), a)
	}
	if !bytes.Equal(got[0].Body, zipped) {
		t.Errorf("forwarded body is not the gzip bytes as sent (%d bytes, sent %d)", len(got[0].Body), len(zipped))
	}
	if enc := got[0].Header.Get("Content-Encoding"); enc != "gzip" {
		t.Errorf("forwarded Content-Encoding = %q, want gzip", enc)
	}
	if n := len(fk.RequestsFor(http.MethodGet, composiotest.RouteList)); n != 1 {
		t.Errorf("lookups = %d, want 1: the gzip body must be checked", n)
	}

	// Checked: a duplicate inside a gzip body is refused.
	seeded := fk.AddAccount(composiotest.Account{Credential: cred, UserID: user, AuthConfigID: "ac_gz_dup"})
	a = send(t, http.MethodPost, p.URL+"/api/v3/connected_accounts/link", gz(t, linkBody(user, "ac_gz_dup")),
		"x-api-key", cred, "Content-Encoding", "gzip")
	wantConflict(t, a, user, "ac_gz_dup", seeded.ID)
}
