package audit_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/composio-guard/composio-guard/internal/audit"
	"github.com/composio-guard/composio-guard/internal/composiotest"
)

// TestPagingQuirkIsPartial: Composio answers next_cursor null while
// total_items says more remain. The audit must say partial and exit 2,
// even though the pages it read already hold duplicates.
func TestPagingQuirkIsPartial(t *testing.T) {
	f, srv := newFake(t)
	// 2,500 accounts; the last 100 repeat users of the first pages.
	if _, err := f.Seed(composiotest.Seed{Credential: secretKey, Count: 2500, Users: 2400}); err != nil {
		t.Fatal(err)
	}
	if err := f.SetFault(composiotest.RouteList, composiotest.Fault{CursorNullAfter: 1000}); err != nil {
		t.Fatal(err)
	}
	for _, format := range []string{"table", "json", "csv"} {
		r := run(t, srv, "--format", format)
		if r.code != audit.ExitIncomplete {
			t.Errorf("%s: exit %d, want 2\n%s\n%s", format, r.code, r.stdout, r.stderr)
		}
		all := r.stdout + r.stderr
		if !strings.Contains(all, "INCOMPLETE") || !strings.Contains(all, "total_items 2500") || strings.Contains(all, "no duplicates") {
			t.Errorf("%s: output does not say partial:\n%s", format, all)
		}
		if format == "json" {
			out := parseJSON(t, r)
			if out.Summary.Complete || out.Summary.AccountsScanned != 1000 || out.Summary.TotalItems != 2500 || out.Summary.Incomplete == "" {
				t.Errorf("json summary %+v", out.Summary)
			}
		}
	}
}

// TestPartialWithoutDuplicatesNeverClean: a short read with nothing found
// is still exit 2.
func TestPartialWithoutDuplicatesNeverClean(t *testing.T) {
	f, srv := newFake(t)
	if _, err := f.Seed(composiotest.Seed{Credential: secretKey, Count: 30}); err != nil {
		t.Fatal(err)
	}
	if err := f.SetFault(composiotest.RouteList, composiotest.Fault{CursorNullAfter: 10}); err != nil {
		t.Fatal(err)
	}
	if r := run(t, srv, "--page-size", "10"); r.code != audit.ExitIncomplete || !strings.Contains(r.stdout, "INCOMPLETE") {
		t.Errorf("exit %d\n%s", r.code, r.stdout)
	}
}

// TestAnswersThatCannotBeTrusted: every answer that is no complete list
// makes the audit exit 2, naming the reason.
func TestAnswersThatCannotBeTrusted(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault composiotest.Fault
		key   string
		say   string
	}{
		{"no total_items", composiotest.Fault{Status: 200, Body: `{"items":[],"next_cursor":null}`}, "", "total_items"},
		{"not JSON", composiotest.Fault{NotJSON: true}, "", "not the expected JSON"},
		{"truncated", composiotest.Fault{Truncate: true}, "", "not the expected JSON"},
		{"no items", composiotest.Fault{Status: 200, Body: `{"next_cursor":null,"total_items":0}`}, "", "items"},
		{"item without id", composiotest.Fault{Status: 200, Body: `{"items":[{"status":"ACTIVE"}],"next_cursor":null,"total_items":1}`}, "", "lacks id"},
		{"item without user", composiotest.Fault{Status: 200,
			Body: `{"items":[{"id":"ca_1","status":"ACTIVE","auth_config":{"id":"ac_1"}}],"next_cursor":null,"total_items":1}`}, "", "lack user_id"},
		{"looping cursor", composiotest.Fault{Status: 200,
			Body: `{"items":[{"id":"ca_1","status":"ACTIVE","user_id":"u","auth_config":{"id":"ac_1"}}],"next_cursor":"c1","total_items":5}`}, "", "repeats"},
		{"empty page with a next cursor", composiotest.Fault{Status: 200, Body: `{"items":[],"next_cursor":"c1","total_items":5}`}, "", "empty"},
		{"401", composiotest.Fault{Status: 401}, "", "401"},
		{"404", composiotest.Fault{Status: 404}, "", "404"},
		{"scoped key", composiotest.Fault{}, "scoped_nolist_SECRETVALUE", "403"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, srv := newFake(t)
			if tc.key == "" {
				if err := f.SetFault(composiotest.RouteList, tc.fault); err != nil {
					t.Fatal(err)
				}
			}
			key := secretKey
			if tc.key != "" {
				key = tc.key
			}
			r := runEnv(t, env(audit.EnvAPIKey, key, audit.EnvUpstream, srv.URL), "--max-retries", "0")
			if r.code != audit.ExitIncomplete || !strings.Contains(r.stdout, "INCOMPLETE") || !strings.Contains(r.stdout, tc.say) {
				t.Errorf("exit %d, want 2 saying %q\nstdout: %s\nstderr: %s", r.code, tc.say, r.stdout, r.stderr)
			}
		})
	}
}

// TestRetryAfter429: a 429 with Retry-After is waited out, then the same
// page is asked again and the audit completes.
func TestRetryAfter429(t *testing.T) {
	f, srv := newFake(t)
	acct(f, "u1", "ac_1", "ACTIVE", 2*time.Hour)
	acct(f, "u1", "ac_1", "ACTIVE", time.Hour)
	if err := f.SetFault(composiotest.RouteList, composiotest.Fault{Status: 429, Headers: map[string]string{"Retry-After": "1"},
		Body: `{"message":"Rate limit exceeded."}`, Times: 1}); err != nil {
		t.Fatal(err)
	}
	r := run(t, srv, "--format", "json")
	if r.code != audit.ExitDuplicates || !parseJSON(t, r).Summary.Complete {
		t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stderr, "429") {
		t.Errorf("no warning about the 429 on stderr: %q", r.stderr)
	}
	reqs := f.RequestsFor("GET", composiotest.RouteList)
	if len(reqs) != 2 || reqs[0].RawQuery != reqs[1].RawQuery {
		t.Fatalf("requests: %+v", reqs)
	}
	if gap := reqs[1].Time.Sub(reqs[0].Time); gap < time.Second {
		t.Errorf("retried after %s, before Retry-After's 1s", gap)
	}
}

// TestRetriesBounded: a 429 that never ends, or a 5xx, stops after
// --max-retries with exit 2.
func TestRetriesBounded(t *testing.T) {
	f, srv := newFake(t)
	acct(f, "u1", "ac_1", "ACTIVE", time.Hour)
	if err := f.SetFault(composiotest.RouteList, composiotest.Fault{Status: 429, Headers: map[string]string{"Retry-After": "0"}}); err != nil {
		t.Fatal(err)
	}
	r := run(t, srv, "--max-retries", "2")
	if r.code != audit.ExitIncomplete || !strings.Contains(r.stdout, "429") || !strings.Contains(r.stdout, "after 2 retries") {
		t.Errorf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if n := len(f.RequestsFor("GET", composiotest.RouteList)); n != 3 {
		t.Errorf("%d requests, want 3 (1 + 2 retries)", n)
	}
	// A 503 once is retried and the scan completes.
	f.Reset()
	if err := f.SetFault(composiotest.RouteList, composiotest.Fault{Status: 503, Times: 1}); err != nil {
		t.Fatal(err)
	}
	if r := run(t, srv); r.code != audit.ExitClean {
		t.Errorf("after one 503: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
}

// TestSlowsWhenRateLimitRunsLow: once X-RateLimit-Remaining is at or below
// LowRemaining, the calls are spread out; checked on the fake's own request
// times (lower bounds only: a slow machine cannot make them fail).
func TestSlowsWhenRateLimitRunsLow(t *testing.T) {
	// The fake's window is the wall-clock minute: a clock that starts at a
	// minute's start keeps the whole test in one window.
	base, start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), time.Now()
	clock := func() time.Time { return base.Add(time.Since(start)) }
	f, srv := newFake(t, composiotest.WithRateLimit(6), composiotest.WithClock(clock))
	if _, err := f.Seed(composiotest.Seed{Credential: secretKey, Count: 6}); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(srv.URL)
	const pause = 250 * time.Millisecond
	rep, err := audit.Run(context.Background(), audit.Options{
		BaseURL: u, Header: http.Header{"X-Api-Key": {secretKey}}, PageSize: 1,
		LowRemaining: 3, MaxPause: pause,
	})
	if err != nil || !rep.Complete || rep.Scanned != 6 {
		t.Fatalf("run: %v %+v", err, rep)
	}
	reqs := f.RequestsFor("GET", composiotest.RouteList)
	if len(reqs) != 6 {
		t.Fatalf("%d requests", len(reqs))
	}
	// Remaining after call i (1-based) is 6-i: 5 4 3 2 1 0. After the third
	// call (3 left) every next call waits window/(left+1), capped at pause.
	for i := 3; i < len(reqs); i++ {
		if gap := reqs[i].Time.Sub(reqs[i-1].Time); gap < pause {
			t.Errorf("call %d came %s after the previous one, want at least %s (remaining was low)", i+1, gap, pause)
		}
	}
}

// TestRateCap: MinInterval spaces every call (the periodic audit's cap).
func TestRateCap(t *testing.T) {
	f, srv := newFake(t)
	if _, err := f.Seed(composiotest.Seed{Credential: secretKey, Count: 4}); err != nil {
		t.Fatal(err)
	}
	base, _ := url.Parse(srv.URL)
	const gap = 150 * time.Millisecond
	if _, err := audit.Run(context.Background(), audit.Options{BaseURL: base, Header: http.Header{"X-Api-Key": {secretKey}},
		PageSize: 1, MinInterval: gap}); err != nil {
		t.Fatal(err)
	}
	reqs := f.RequestsFor("GET", composiotest.RouteList)
	for i := 1; i < len(reqs); i++ {
		if d := reqs[i].Time.Sub(reqs[i-1].Time); d < gap {
			t.Errorf("call %d after %s, want at least %s", i+1, d, gap)
		}
	}
}

// TestCanceled: a canceled context ends the scan as incomplete.
func TestCanceled(t *testing.T) {
	f, srv := newFake(t)
	acct(f, "u1", "ac_1", "ACTIVE", time.Hour)
	if err := f.SetFault(composiotest.RouteList, composiotest.Fault{Hang: true}); err != nil {
		t.Fatal(err)
	}
	base, _ := url.Parse(srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	rep, err := audit.Run(ctx, audit.Options{BaseURL: base, Header: http.Header{"X-Api-Key": {secretKey}}})
	if err == nil || rep.Complete {
		t.Fatalf("a canceled scan read as complete: %+v", rep)
	}
	f.Close()
}

// TestPageSizeFallback: should Composio refuse limit=1000 (400), the audit
// asks pages of 100 instead, once, and completes.
func TestPageSizeFallback(t *testing.T) {
	f, srv := newFake(t)
	if _, err := f.Seed(composiotest.Seed{Credential: secretKey, Count: 250}); err != nil {
		t.Fatal(err)
	}
	if err := f.SetFault(composiotest.RouteList, composiotest.Fault{Status: 400, Times: 1}); err != nil {
		t.Fatal(err)
	}
	r := run(t, srv, "--format", "json")
	if out := parseJSON(t, r); r.code != audit.ExitClean || out.Summary.AccountsScanned != 250 || out.Summary.Pages != 3 {
		t.Fatalf("exit %d %+v\n%s", r.code, out.Summary, r.stderr)
	}
	if !strings.Contains(r.stderr, "refused limit=1000") {
		t.Errorf("no warning: %q", r.stderr)
	}
	reqs := f.RequestsFor("GET", composiotest.RouteList)
	if len(reqs) != 4 || !strings.Contains(reqs[0].RawQuery, "limit=1000") || !strings.Contains(reqs[1].RawQuery, "limit=100&") {
		t.Errorf("requests: %d, first %q, second %q", len(reqs), reqs[0].RawQuery, reqs[1].RawQuery)
	}
	// A second refusal is final.
	f.Reset()
	if err := f.SetFault(composiotest.RouteList, composiotest.Fault{Status: 400, Times: 2}); err != nil {
		t.Fatal(err)
	}
	if r := run(t, srv); r.code != audit.ExitIncomplete || !strings.Contains(r.stdout, "400") {
		t.Errorf("exit %d %s", r.code, r.stdout)
	}
}

// TestEndlessPagination: a server that hands out new cursors over the same
// accounts forever is stopped, as a partial result.
func TestEndlessPagination(t *testing.T) {
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n++
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"items":[{"id":"ca_1","status":"ACTIVE","user_id":"u","auth_config":{"id":"ac"}},
			{"id":"ca_2","status":"ACTIVE","user_id":"u","auth_config":{"id":"ac"}}],"next_cursor":"c%d","total_items":2}`, n)
	}))
	t.Cleanup(srv.Close)
	r := run(t, srv, "--page-size", "2")
	if r.code != audit.ExitIncomplete || !strings.Contains(r.stdout, "pagination runs on") || n > 10 {
		t.Errorf("exit %d after %d calls\n%s", r.code, n, r.stdout)
	}
}
