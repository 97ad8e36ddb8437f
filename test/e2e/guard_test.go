package e2e_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/composio-guard/composio-guard/internal/apierror"
	"github.com/composio-guard/composio-guard/internal/composiotest"
)

// Settings of the default (enforce) proxy that the scenarios rely on.
const (
	maxBodyBytes = 4096
	pageLimit    = 2 // small, so that the lookup has to follow next_cursor
)

// world is one fake Composio and the proxies in front of it, one per policy.
// Every case uses its own credential, so cases share them and run in parallel.
type world struct {
	fake    *fake
	enforce *proxy // enforce, fail closed, pending replay, allow-multiple flag
	reject  *proxy // GUARD_PENDING_ACTION=reject
	never   *proxy // GUARD_ALLOW_MULTIPLE=never
	multi   *proxy // GUARD_MULTIPLE_AUTH_CONFIGS
	shadow  *proxy // GUARD_MODE=shadow
	off     *proxy // GUARD_MODE=off
}

const (
	multiConfigA = "ac_multi_a"
	multiConfigB = "ac_multi_b"
)

// TestGuard plays the guard's scenarios against proxies that need no fault
// on the fake.
func TestGuard(t *testing.T) {
	t.Parallel()
	f := startFake(t)
	w := &world{
		fake: f,
		enforce: startProxy(t, "enforce", f.URL,
			"GUARD_MAX_BODY_BYTES=4096", "GUARD_LOOKUP_PAGE_LIMIT=2"),
		reject: startProxy(t, "reject", f.URL, "GUARD_PENDING_ACTION=reject"),
		never:  startProxy(t, "never", f.URL, "GUARD_ALLOW_MULTIPLE=never"),
		multi:  startProxy(t, "multi", f.URL, "GUARD_MULTIPLE_AUTH_CONFIGS="+multiConfigA+", "+multiConfigB),
		shadow: startProxy(t, "shadow", f.URL, "GUARD_MODE=shadow"),
		off:    startProxy(t, "off", f.URL, "GUARD_MODE=off"),
	}
	for _, c := range []struct {
		name string
		run  func(*testing.T, *world)
	}{
		{"passthrough", testPassthrough},
		{"request_id", testRequestID},
		{"link_then_duplicate", testLinkThenDuplicate},
		{"canonical_paths", testCanonicalPaths},
		{"legacy_create", testLegacyCreate},
		{"list_query", testListQuery},
		{"list_pages", testListPages},
		{"opt_in", testOptIn},
		{"opt_in_refused_when_never", testOptInNever},
		{"multiple_auth_configs", testMultipleAuthConfigs},
		{"race", testRace},
		{"replay", testReplay},
		{"pending_reject", testPendingReject},
		{"opt_in_bypasses_pending", testOptInBypassesPending},
		{"bad_input", testBadInput},
		{"shadow", testShadow},
		{"off", testOff},
		{"admin_isolation", testAdminIsolation},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t, w)
		})
	}
}

// link posts an SDK-shaped link for user on authConfig through p.
func link(t *testing.T, p *proxy, prefix, cred, user, authConfig string, hdr ...string) answer {
	t.Helper()
	return send(t, http.MethodPost, p.URL+prefix+"/connected_accounts/link", linkBody(user, authConfig),
		append([]string{"x-api-key", cred}, hdr...)...)
}

func testLinkThenDuplicate(t *testing.T, w *world) {
	for _, prefix := range []string{"/api/v3", "/api/v3.1"} {
		t.Run(strings.TrimPrefix(prefix, "/api/"), func(t *testing.T) {
			t.Parallel()
			cred, user, ac := uniq("key"), uniq("user"), uniq("ac")

			first := link(t, w.enforce, prefix, cred, user, ac)
			if first.status != http.StatusCreated {
				t.Fatalf("fresh user: got %s, want 201 from upstream", first)
			}
			l := decodeLink(t, first)
			if got := first.header.Get(apierror.HeaderGuard); got != "" {
				t.Errorf("first link carries %s: %q", apierror.HeaderGuard, got)
			}
			accts := w.fake.Accounts(t, cred)
			if len(accts) != 1 || accts[0].ID != l.ConnectedAccountID || accts[0].Status != composiotest.StatusInitiated {
				t.Fatalf("fake accounts after the first link = %+v, want one INITIATED %s", accts, l.ConnectedAccountID)
			}
			// The user finishes OAuth.
			w.fake.SetStatus(t, l.ConnectedAccountID, composiotest.StatusActive)

			dup := link(t, w.enforce, prefix, cred, user, ac, apierror.HeaderRequestID, "e2e-dup-"+user)
			wantConflict(t, dup, user, ac, l.ConnectedAccountID)
			if got := dup.header.Get(apierror.HeaderRequestID); got != "e2e-dup-"+user {
				t.Errorf("X-Request-Id = %q, want the inbound one", got)
			}
			if n := len(posts(t, w.fake, cred)); n != 1 {
				t.Errorf("link POSTs at the fake = %d, want 1 (the duplicate must not be forwarded)", n)
			}
			if n := len(w.fake.Accounts(t, cred)); n != 1 {
				t.Errorf("accounts at the fake = %d, want 1", n)
			}
		})
	}
}

func testCanonicalPaths(t *testing.T, w *world) {
	for _, c := range []struct {
		name, path string
		create     bool
		listPrefix string
	}{
		{"v3.1 trailing slash", "/api/v3.1/connected_accounts/link/", false, "/api/v3.1"},
		{"double and dot segments", "//api/v3//connected_accounts/./link", false, "/api/v3"},
		{"dot-dot segment", "/api/v3/toolkits/../connected_accounts/link", false, "/api/v3"},
		{"percent-encoded underscore", "/api/v3/connected%5Faccounts/link", false, "/api/v3"},
		{"percent-encoded letter", "/api/v3.1/connected_accounts/%6Cink", false, "/api/v3.1"},
		{"percent-encoded slash", "/api/v3/connected_accounts%2Flink", false, "/api/v3"},
		{"upper case", "/API/V3/Connected_Accounts/LINK", false, "/api/v3"},
		{"later version", "/api/v3.7/connected_accounts/link", false, "/api/v3.7"},
		{"legacy create trailing slash", "/api/v3.1/connected_accounts/", true, "/api/v3.1"},
		{"legacy create double slash", "/api//v3/connected_accounts", true, "/api/v3"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			cred, user, ac := uniq("key"), uniq("user"), uniq("ac")
			seeded := w.fake.Seed(t, composiotest.Account{Credential: cred, UserID: user, AuthConfigID: ac})
			body := linkBody(user, ac)
			if c.create {
				body = createBody(user, ac)
			}
			u, err := url.Parse(w.enforce.URL + c.path)
			if err != nil {
				t.Fatal(err)
			}
			req, err := http.NewRequest(http.MethodPost, w.enforce.URL, strings.NewReader(string(body)))
			if err != nil {
				t.Fatal(err)
			}
			req.URL = u // keep the path exactly as written, escapes included
			a := do(t, req, "x-api-key", cred)
			wantConflict(t, a, user, ac, seeded.ID)
			if n := len(posts(t, w.fake, cred)); n != 0 {
				t.Errorf("POSTs forwarded to the fake = %d, want 0", n)
			}
			lists := w.fake.RequestsOf(t, cred, composiotest.RouteList)
			if len(lists) == 0 {
				t.Fatalf("no list query reached the fake")
			}
			if got := lists[0].Path; got != c.listPrefix+"/connected_accounts" {
				t.Errorf("list query path = %q, want %q (the request's own API version)", got, c.listPrefix+"/connected_accounts")
			}
		})
	}
}

func testLegacyCreate(t *testing.T, w *world) {
	for _, c := range []struct {
		name, prefix, user, wantUser string
	}{
		{"no connection.user_id means default", "/api/v3", "", "default"},
		{"explicit user on v3.1", "/api/v3.1", "u_legacy", "u_legacy"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			cred, ac := uniq("key"), uniq("ac")
			u := w.enforce.URL + c.prefix + "/connected_accounts"
			first := send(t, http.MethodPost, u, createBody(c.user, ac), "x-api-key", cred)
			if first.status != http.StatusCreated {
				t.Fatalf("first create: got %s, want 201", first)
			}
			accts := w.fake.Accounts(t, cred)
			if len(accts) != 1 || accts[0].UserID != c.wantUser {
				t.Fatalf("fake accounts = %+v, want one for user %q", accts, c.wantUser)
			}
			lists := w.fake.RequestsOf(t, cred, composiotest.RouteList)
			if len(lists) == 0 || query(t, lists[0]).Get("user_ids") != c.wantUser {
				t.Errorf("list queries = %+v, want one for user_ids=%s", lists, c.wantUser)
			}
			w.fake.SetStatus(t, accts[0].ID, composiotest.StatusActive)

			dup := send(t, http.MethodPost, u, createBody(c.user, ac), "x-api-key", cred)
			wantConflict(t, dup, c.wantUser, ac, accts[0].ID)
			if n := len(posts(t, w.fake, cred)); n != 1 {
				t.Errorf("create POSTs at the fake = %d, want 1", n)
			}
		})
	}
}
