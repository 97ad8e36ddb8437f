// Package sdk_test is the real-SDK conformance suite: it builds the proxy and
// the fake Composio, starts them as processes, and drives three pinned
// versions of @composio/core (0.8.0, 0.8.1, 0.21.0, installed by
// `npm ci --prefix test/sdk`) through the proxy with sdk.mjs. Each case
// asserts what the SDK's caller reads and what reached the upstream.
package sdk_test

import (
	"net/http"
	"slices"
	"testing"

	"github.com/composio-guard/composio-guard/internal/apierror"
	"github.com/composio-guard/composio-guard/internal/composiotest"
)

const authConfig = "ac_sdk_github"

// TestSDKConformance runs cases 1-6 of issue 3 for every pinned SDK version,
// against one fake and one proxy; each case and version has its own API key,
// so its own project in the fake, and they all run in parallel.
func TestSDKConformance(t *testing.T) {
	requireNode(t)
	s := startStack(t)
	cases := []struct {
		name string
		run  func(t *testing.T, s *stack, version, key string)
	}{
		{"fresh_link", caseFreshLink},
		{"duplicate_link", caseDuplicateLink},
		{"opt_in", caseOptIn},
		{"pending_replay", casePendingReplay},
		{"duplicate_initiate", caseDuplicateInitiate},
		{"pass_through", casePassThrough},
	}
	for _, v := range versions {
		t.Run(v, func(t *testing.T) {
			t.Parallel()
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					c.run(t, s, v, keyFor(c.name, v))
				})
			}
		})
	}
}

// Case 1: link() for a fresh user succeeds with what the upstream made.
func caseFreshLink(t *testing.T, s *stack, version, key string) {
	r := runSDK(t, s, version, key, call{Call: "link", UserID: "user_fresh", AuthConfigID: authConfig})[0]
	if !r.OK {
		t.Fatalf("link() for a fresh user failed: %s %d %s", r.ErrorName, r.Status, r.Body)
	}
	held := accounts(t, s, key)
	if len(held) != 1 {
		t.Fatalf("upstream holds %d accounts, want 1: %v", len(held), ids(held))
	}
	a := held[0]
	if r.ConnectedAccountID != a.ID || r.RedirectURL != a.RedirectURL || r.RedirectURL == "" {
		t.Errorf("caller got (%q, %q), upstream made (%q, %q)", r.ConnectedAccountID, r.RedirectURL, a.ID, a.RedirectURL)
	}
	if a.UserID != "user_fresh" || a.AuthConfigID != authConfig || a.Status != "INITIATED" {
		t.Errorf("upstream account = %+v, want INITIATED for user_fresh on %s", a, authConfig)
	}
	if n := count(requests(t, s, key), http.MethodPost, composiotest.RouteLink); n != 1 {
		t.Errorf("link POSTs at the upstream = %d, want 1", n)
	}
}

// Case 2: link() for a user with an ACTIVE account is refused with our 409,
// asked once. 0.8.1+ refuse client-side first; their raw client then shows
// that the proxy catches what gets past the SDK.
func caseDuplicateLink(t *testing.T, s *stack, version, key string) {
	existing := seed(t, s, key, "user_dup", authConfig, "ACTIVE")
	rs := runSDK(t, s, version, key,
		call{Call: "link", UserID: "user_dup", AuthConfigID: authConfig},
		call{Call: "raw_link", UserID: "user_dup", AuthConfigID: authConfig},
	)
	link, raw := rs[0], rs[1]
	if link.OK {
		t.Fatalf("link() on a duplicate succeeded: %s", link.ConnectedAccountID)
	}
	if sdkGuards(version) {
		if link.ErrorName != "ComposioMultipleConnectedAccountsError" || link.posts("/link") != 0 {
			t.Errorf("%s link(): got %s after %v, want the SDK's own ComposioMultipleConnectedAccountsError before any POST", version, link.ErrorName, link.Sent)
		}
	} else {
		if link.ErrorName != "ComposioFailedToCreateConnectedAccountLink" || link.CauseName != "ConflictError" {
			t.Errorf("link(): got %s caused by %s, want ComposioFailedToCreateConnectedAccountLink caused by ConflictError", link.ErrorName, link.CauseName)
		}
		assertDuplicate(t, link, "/link", existing.ID)
	}
	if raw.OK || raw.ErrorName != "ConflictError" {
		t.Errorf("raw link.create(): ok=%v %s, want ConflictError", raw.OK, raw.ErrorName)
	}
	assertDuplicate(t, raw, "/link", existing.ID)
	if n := count(requests(t, s, key), http.MethodPost, composiotest.RouteLink); n != 0 {
		t.Errorf("link POSTs at the upstream = %d, want 0", n)
	}
	if n := len(accounts(t, s, key)); n != 1 {
		t.Errorf("upstream holds %d accounts, want only the existing one", n)
	}
}

// assertDuplicate checks what the caller reads on a refused duplicate: 409,
// our envelope naming the existing account and the fix, no retry.
func assertDuplicate(t *testing.T, r result, route string, existingID string) {
	t.Helper()
	assertConflict(t, r, route, apierror.SlugMultipleAccounts, apierror.CodeMultipleAccounts, existingID)
}

// assertConflict checks a 409 of ours with slug and code: the envelope names
// every one of existingIDs and the fix, and the SDK asked once (no retry).
func assertConflict(t *testing.T, r result, route, slug string, code int, existingIDs ...string) {
	t.Helper()
	if r.Status != http.StatusConflict {
		t.Fatalf("%s: status %d, want 409 (body %s)", r.Call, r.Status, r.Body)
	}
	e := r.envelope(t)
	if e.Slug != slug || e.Code != code || e.Status != http.StatusConflict {
		t.Errorf("%s: envelope slug=%q code=%d status=%d, want %q %d 409", r.Call, e.Slug, e.Code, e.Status, slug, code)
	}
	for _, id := range existingIDs {
		if !slices.Contains(e.ExistingAccountIDs, id) {
			t.Errorf("%s: existing_connected_account_ids = %v, want %s in it", r.Call, e.ExistingAccountIDs, id)
		}
	}
	if e.SuggestedFix == "" || e.Message == "" || e.RequestID == "" {
		t.Errorf("%s: envelope lacks message, suggested_fix or request_id: %+v", r.Call, e)
	}
	if got := r.Headers["x-request-id"]; got != e.RequestID {
		t.Errorf("%s: X-Request-Id %q, body request_id %q", r.Call, got, e.RequestID)
	}
	if got := r.Headers["x-should-retry"]; got != "false" {
		t.Errorf("%s: x-should-retry = %q, want \"false\"", r.Call, got)
	}
	if n := r.posts(route); n != 1 {
		t.Errorf("%s: the SDK sent %d POSTs (%v), want exactly 1: no retry on our 409", r.Call, n, r.Sent)
	}
}

// Case 3: the opt-in header (plus allowMultiple where the SDK knows it)
// creates a second account; the header never reaches the upstream.
func caseOptIn(t *testing.T, s *stack, version, key string) {
	seed(t, s, key, "user_multi_sdk", authConfig, "ACTIVE")
	seed(t, s, key, "user_multi_raw", authConfig, "ACTIVE")
	rs := runSDK(t, s, version, key,
		call{Call: "link", UserID: "user_multi_sdk", AuthConfigID: authConfig, OptIn: true, AllowMultiple: sdkGuards(version)},
		call{Call: "raw_link", UserID: "user_multi_raw", AuthConfigID: authConfig, OptIn: true},
	)
	held := accounts(t, s, key)
	for _, r := range rs {
		if !r.OK {
			t.Errorf("%s with the opt-in failed: %s %d %s", r.Call, r.ErrorName, r.Status, r.Body)
			continue
		}
		i := slices.IndexFunc(held, func(a composiotest.Account) bool { return a.ID == r.ConnectedAccountID })
		if i < 0 || held[i].Status != "INITIATED" || held[i].RedirectURL != r.RedirectURL {
			t.Errorf("%s: caller got %q %q, not a new account the upstream holds", r.Call, r.ConnectedAccountID, r.RedirectURL)
		}
	}
	if len(held) != 4 {
		t.Errorf("upstream holds %v, want 4 accounts (2 seeded + 2 opted in)", ids(held))
	}
	for _, r := range requests(t, s, key) {
		if v := r.Header.Values(apierror.HeaderAllowMultiple); len(v) > 0 {
			t.Errorf("%s %s reached the upstream with %s: %v", r.Method, r.Path, apierror.HeaderAllowMultiple, v)
		}
	}
}

// Case 4: a second link() while the first account is INITIATED gets the
// first answer back; the upstream holds one account.
func casePendingReplay(t *testing.T, s *stack, version, key string) {
	rs := runSDK(t, s, version, key,
		call{Call: "link", UserID: "user_pending", AuthConfigID: authConfig},
		call{Call: "link", UserID: "user_pending", AuthConfigID: authConfig},
	)
	first, second := rs[0], rs[1]
	if !first.OK || !second.OK {
		t.Fatalf("link() twice: ok=%v then ok=%v (%s %d %s)", first.OK, second.OK, second.ErrorName, second.Status, second.Body)
	}
	if second.RedirectURL != first.RedirectURL || second.ConnectedAccountID != first.ConnectedAccountID {
		t.Errorf("second link() got (%q, %q), want the first (%q, %q) replayed", second.ConnectedAccountID, second.RedirectURL, first.ConnectedAccountID, first.RedirectURL)
	}
	if n := second.posts("/link"); n != 1 {
		t.Errorf("second link(): the SDK sent %d POSTs (%v), want 1", n, second.Sent)
	}
	if held := accounts(t, s, key); len(held) != 1 {
		t.Errorf("upstream holds %d accounts, want 1: %v", len(held), ids(held))
	}
	if n := count(requests(t, s, key), http.MethodPost, composiotest.RouteLink); n != 1 {
		t.Errorf("link POSTs at the upstream = %d, want 1", n)
	}
}

// Case 5: initiate() (legacy create) on a duplicate. Every pinned version
// refuses client-side first; with allowMultiple (no opt-in header) the SDK
// lets it through and the proxy refuses, as it does the raw create.
func caseDuplicateInitiate(t *testing.T, s *stack, version, key string) {
	existing := seed(t, s, key, "user_dup_create", authConfig, "ACTIVE")
	rs := runSDK(t, s, version, key,
		call{Call: "initiate", UserID: "user_dup_create", AuthConfigID: authConfig},
		call{Call: "initiate", UserID: "user_dup_create", AuthConfigID: authConfig, AllowMultiple: true},
		call{Call: "raw_create", UserID: "user_dup_create", AuthConfigID: authConfig},
	)
	plain, flagged, raw := rs[0], rs[1], rs[2]
	if plain.OK || plain.ErrorName != "ComposioMultipleConnectedAccountsError" || plain.posts("/connected_accounts") != 0 {
		t.Errorf("initiate(): ok=%v %s after %v, want the SDK's own refusal before any POST", plain.OK, plain.ErrorName, plain.Sent)
	}
	for _, r := range []result{flagged, raw} {
		if r.OK || r.ErrorName != "ConflictError" {
			t.Errorf("%s: ok=%v %s, want ConflictError from the proxy", r.Call, r.OK, r.ErrorName)
		}
		assertDuplicate(t, r, "/connected_accounts", existing.ID)
	}
	if n := count(requests(t, s, key), http.MethodPost, composiotest.RouteCreate); n != 0 {
		t.Errorf("create POSTs at the upstream = %d, want 0", n)
	}
	if n := len(accounts(t, s, key)); n != 1 {
		t.Errorf("upstream holds %d accounts, want only the existing one", n)
	}
}

// Case 6: list() and get() pass through and return what the upstream holds.
func casePassThrough(t *testing.T, s *stack, version, key string) {
	active := seed(t, s, key, "user_list", authConfig, "ACTIVE")
	initiated := seed(t, s, key, "user_list", authConfig, "INITIATED")
	seed(t, s, key, "user_other", authConfig, "ACTIVE") // filtered out by user
	rs := runSDK(t, s, version, key,
		call{Call: "list", UserID: "user_list", AuthConfigID: authConfig},
		call{Call: "get", ID: active.ID},
	)
	list, get := rs[0], rs[1]
	if !list.OK || !get.OK {
		t.Fatalf("list ok=%v, get ok=%v: %s %d %s %s", list.OK, get.OK, list.ErrorName, list.Status, list.Body, get.Body)
	}
	want := []listedAccount{
		{ID: initiated.ID, Status: "INITIATED", AuthConfigID: authConfig}, // newest first
		{ID: active.ID, Status: "ACTIVE", AuthConfigID: authConfig},
	}
	if !slices.Equal(list.Items, want) {
		t.Errorf("list() = %+v, want %+v", list.Items, want)
	}
	if get.Account == nil || *get.Account != (listedAccount{ID: active.ID, Status: "ACTIVE", AuthConfigID: authConfig}) {
		t.Errorf("get(%s) = %+v", active.ID, get.Account)
	}
	reqs := requests(t, s, key)
	if count(reqs, http.MethodGet, composiotest.RouteList) < 1 || count(reqs, http.MethodGet, composiotest.RouteGet) != 1 {
		t.Errorf("upstream saw list=%d get=%d, want the SDK's calls forwarded", count(reqs, http.MethodGet, composiotest.RouteList), count(reqs, http.MethodGet, composiotest.RouteGet))
	}
	for _, r := range reqs {
		if want := apiPrefix(version) + "/"; len(r.Path) < len(want) || r.Path[:len(want)] != want {
			t.Errorf("upstream saw %s %s, want the SDK's own prefix %s kept", r.Method, r.Path, want)
		}
	}
}

// TestSDKFailClosed is case 7: the upstream's list is broken, so the guard
// cannot decide; the SDK sees a 503 and nothing is created. It has its own
// fake and proxy because the fault hits every caller of the fake.
func TestSDKFailClosed(t *testing.T) {
	requireNode(t)
	// A high breaker threshold keeps every attempt a real lookup, so the
	// count of lookups the upstream saw means what it says; a short
	// Retry-After bounds the SDK's waits between its retries.
	s := startStack(t, "GUARD_LOOKUP_BREAKER_THRESHOLD=1000", "GUARD_RETRY_AFTER=1s")
	s.fake.SetFault(t, composiotest.RouteList, composiotest.Fault{
		Status: 500,
		Body:   `{"error":{"message":"list is down","code":500,"slug":"Internal","status":500}}`,
	})
	for _, v := range versions {
		t.Run(v, func(t *testing.T) {
			t.Parallel()
			key := keyFor("fail_closed", v)
			rs := runSDK(t, s, v, key,
				call{Call: "link", UserID: "user_fc", AuthConfigID: authConfig},
				call{Call: "raw_link", UserID: "user_fc", AuthConfigID: authConfig},
			)
			link, raw := rs[0], rs[1]
			if link.OK || raw.OK {
				t.Fatalf("with the list broken: link ok=%v, raw link ok=%v; want both refused", link.OK, raw.OK)
			}
			if sdkGuards(v) {
				// The SDK's own list call fails first and it never POSTs.
				if link.posts("/link") != 0 || link.Status != http.StatusInternalServerError {
					t.Errorf("link(): status %d after %v, want the upstream's 500 and no POST", link.Status, link.Sent)
				}
			} else {
				assertFailClosed(t, link)
			}
			assertFailClosed(t, raw)
			attempts := link.posts("/link") + raw.posts("/link")
			reqs := requests(t, s, key)
			if n := count(reqs, http.MethodPost, composiotest.RouteLink); n != 0 {
				t.Errorf("link POSTs at the upstream = %d, want 0", n)
			}
			// Every link POST the proxy got cost one failed lookup (plus the
			// SDK's own list calls on 0.8.1+, three with retries).
			sdkLists := 0
			for _, r := range []result{link, raw} {
				for _, sent := range r.Sent {
					if sent == "GET "+apiPrefix(v)+"/connected_accounts" {
						sdkLists++
					}
				}
			}
			if n := count(reqs, http.MethodGet, composiotest.RouteList); n != attempts+sdkLists {
				t.Errorf("list calls at the upstream = %d, want %d (%d guard lookups for %d link POSTs + %d SDK lists)", n, attempts+sdkLists, attempts, attempts, sdkLists)
			}
			if held := accounts(t, s, key); len(held) != 0 {
				t.Errorf("upstream holds %d accounts, want none", len(held))
			}
		})
	}
}

// assertFailClosed checks a link refused because the guard could not decide:
// 503 in our envelope with Retry-After; the SDK's retries are counted.
func assertFailClosed(t *testing.T, r result) {
	t.Helper()
	if r.Status != http.StatusServiceUnavailable {
		t.Fatalf("%s: status %d, want 503 (body %s)", r.Call, r.Status, r.Body)
	}
	e := r.envelope(t)
	if e.Slug != apierror.SlugGuardUnavailable || e.Code != apierror.CodeGuardUnavailable {
		t.Errorf("%s: envelope slug=%q code=%d, want %q %d", r.Call, e.Slug, e.Code, apierror.SlugGuardUnavailable, apierror.CodeGuardUnavailable)
	}
	if r.Headers["retry-after"] == "" {
		t.Errorf("%s: no Retry-After on the 503", r.Call)
	}
	// The generated clients retry a 503 twice unless told not to.
	want := 3
	if r.Headers["x-should-retry"] == "false" {
		want = 1
	}
	if n := r.posts("/link"); n != want {
		t.Errorf("%s: the proxy was asked %d times (%v), want %d for x-should-retry=%q", r.Call, n, r.Sent, want, r.Headers["x-should-retry"])
	}
}
