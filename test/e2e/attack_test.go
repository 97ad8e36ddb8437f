package e2e_test

// The ways around the guard a caller would try, played against the real
// binary and the fake Composio process (docs/security.md, "Attacks").

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/composio-guard/composio-guard/internal/apierror"
	"github.com/composio-guard/composio-guard/internal/composiotest"
)

// TestAttacks plays each class against proxies of its own settings.
func TestAttacks(t *testing.T) {
	t.Parallel()
	f := startFake(t)
	enforce := startProxy(t, "enforce", f.URL)
	open := startProxy(t, "open", f.URL, "GUARD_FAILURE_MODE=open",
		"GUARD_LOOKUP_PAGE_LIMIT=2", "GUARD_LOOKUP_MAX_PAGES=2", "GUARD_PENDING_MAX_TTL=1m")
	off := startProxy(t, "off", f.URL, "GUARD_MODE=off")

	// Class 1: one key spelled many ways is one identity: concurrent links
	// through every spelling make one account.
	t.Run("one_identity_many_spellings", func(t *testing.T) {
		t.Parallel()
		key, user, ac := uniq("key"), uniq("user"), uniq("ac")
		spellings := [][]string{
			{"x-api-key", key},
			{"x-api-key", key, "x-org-id", "org_1"},
			{"x-api-key", key, "x-project-id", "prj_1"},
			{"x-api-key", key, "x-user-api-key", ""},
			{"x-api-key", key, "x-project-id", "prj_2", "Connection", "x-project-id"},
		}
		var wg sync.WaitGroup
		answers := make([]answer, 20)
		errs := make([]error, len(answers))
		for i := range answers {
			wg.Go(func() {
				req, _ := http.NewRequest(http.MethodPost, enforce.URL+"/api/v3.1/connected_accounts/link", strings.NewReader(string(linkBody(user, ac))))
				answers[i], errs[i] = tryDo(req, spellings[i%len(spellings)]...)
			})
		}
		wg.Wait()
		for i, a := range answers {
			if errs[i] != nil {
				t.Fatal(errs[i])
			}
			if a.status != http.StatusCreated && a.status != http.StatusConflict {
				t.Fatalf("answer %d: %s", i, a)
			}
		}
		if n := len(f.Accounts(t, key)); n != 1 {
			t.Fatalf("%d accounts at Composio, want 1", n)
		}
	})

	t.Run("ambiguous_credentials_refused", func(t *testing.T) {
		t.Parallel()
		for _, hdr := range [][]string{
			{"x-api-key", "k_a", "x-api-key", "k_b"},
			{"x-api-key", "k_a", "x-user-api-key", "uk", "x-project-id", "p"},
			{"x-api-key", "k_a", "x-org-api-key", "ok"},
			{"x-api-key", "k_a", "x_api_key", "k_b"},
		} {
			user := uniq("user")
			a := send(t, http.MethodPost, enforce.URL+"/api/v3.1/connected_accounts/link", linkBody(user, "ac_x"), hdr...)
			wantEnvelope(t, a, http.StatusBadRequest, apierror.SlugBadRequest)
			if strings.Contains(a.String(), "k_a") || strings.Contains(a.String(), "k_b") {
				t.Fatalf("the answer echoes a credential: %s", a)
			}
			for _, q := range f.Requests(t, "", "") {
				if strings.Contains(q.RawQuery, user) || strings.Contains(string(q.Body), user) {
					t.Fatalf("%v: a request for %s reached Composio: %s %s", hdr, user, q.Method, q.Path)
				}
			}
		}
	})

	// Class 2: a caller's own input never makes the check fail open.
	t.Run("too_many_accounts_never_fail_open", func(t *testing.T) {
		t.Parallel()
		key, user, ac := uniq("key"), uniq("user"), uniq("ac")
		for range 7 { // four pages of two, none of them live or ACTIVE
			f.Seed(t, composiotest.Account{Credential: key, UserID: user, AuthConfigID: ac, Status: "INITIATED",
				CreatedAt: time.Now().Add(-time.Hour)})
		}
		a := send(t, http.MethodPost, open.URL+"/api/v3.1/connected_accounts/link", linkBody(user, ac), "x-api-key", key)
		wantEnvelope(t, a, http.StatusUnprocessableEntity, apierror.SlugCheckNotPossible)
		if a.header.Get("X-Should-Retry") != "false" || len(posts(t, f, key)) != 0 {
			t.Fatalf("x-should-retry %q, %d posts forwarded", a.header.Get("X-Should-Retry"), len(posts(t, f, key)))
		}
		// An ACTIVE account on the first page decides without reading on.
		f.Seed(t, composiotest.Account{Credential: key, UserID: user, AuthConfigID: ac, Status: "ACTIVE"})
		a = send(t, http.MethodPost, open.URL+"/api/v3.1/connected_accounts/link", linkBody(user, ac), "x-api-key", key)
		wantEnvelope(t, a, http.StatusConflict, apierror.SlugMultipleAccounts)
	})
	t.Run("oversized_id_refused_before_lookup", func(t *testing.T) {
		t.Parallel()
		key := uniq("key")
		a := send(t, http.MethodPost, open.URL+"/api/v3.1/connected_accounts/link", linkBody(strings.Repeat("u", 20000), "ac_1"), "x-api-key", key)
		wantEnvelope(t, a, http.StatusBadRequest, apierror.SlugBadRequest)
		if n := len(f.RequestsOf(t, key, "")); n != 0 {
			t.Fatalf("%d requests reached Composio", n)
		}
	})

	// Class 3: both routes follow one pending rule, for pending links the
	// proxy did not see being made.
	t.Run("pending_made_elsewhere_blocks_every_route", func(t *testing.T) {
		t.Parallel()
		key, user, ac := uniq("key"), uniq("user"), uniq("ac")
		pending := f.Seed(t, composiotest.Account{Credential: key, UserID: user, AuthConfigID: ac, Status: "INITIATED", CreatedAt: time.Now()})
		for _, r := range []struct{ path, body string }{
			{"/api/v3.1/connected_accounts/link", string(linkBody(user, ac))},
			{"/api/v3/connected_accounts", string(createBody(user, ac))},
		} {
			a := send(t, http.MethodPost, enforce.URL+r.path, []byte(r.body), "x-api-key", key)
			e := wantEnvelope(t, a, http.StatusConflict, apierror.SlugLinkPending)
			if a.header.Get("X-Should-Retry") != "false" || fmt.Sprint(e.ExistingAccountIDs) != "["+pending.ID+"]" {
				t.Fatalf("%s: %s", r.path, a)
			}
		}
		if n := len(posts(t, f, key)); n != 0 {
			t.Fatalf("%d creates forwarded", n)
		}
	})
	t.Run("links_and_legacy_creates_make_one_account", func(t *testing.T) {
		t.Parallel()
		key, user, ac := uniq("key"), uniq("user"), uniq("ac")
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Go(func() {
				path, body := "/api/v3.1/connected_accounts/link", linkBody(user, ac)
				if i%2 == 1 {
					path, body = "/api/v3/connected_accounts", createBody(user, ac)
				}
				req, _ := http.NewRequest(http.MethodPost, enforce.URL+path, strings.NewReader(string(body)))
				if _, err := tryDo(req, "x-api-key", key); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if n := len(f.Accounts(t, key)); n != 1 {
			t.Fatalf("%d accounts, want 1", n)
		}
	})

	// Class 5: smaller holes.
	t.Run("disguised_methods_and_paths", func(t *testing.T) {
		t.Parallel()
		key, user, ac := uniq("key"), uniq("user"), uniq("ac")
		f.Seed(t, composiotest.Account{Credential: key, UserID: user, AuthConfigID: ac, Status: "ACTIVE"})
		for _, c := range []struct {
			method, path string
			hdr          []string
			status       int
		}{
			{"post", "/api/v3.1/connected_accounts/link", nil, http.StatusBadRequest},
			{"GET", "/api/v3.1/connected_accounts/link", []string{"X-HTTP-Method-Override", "POST"}, http.StatusBadRequest},
			{"PUT", "/api/v3/connected_accounts", []string{"X-Method-Override", "POST"}, http.StatusBadRequest},
			{"POST", "/api/v3.1/connected_accounts/link;x=1", nil, http.StatusConflict},
		} {
			a := send(t, c.method, enforce.URL+c.path, linkBody(user, ac), append([]string{"x-api-key", key}, c.hdr...)...)
			if a.status != c.status {
				t.Fatalf("%s %s %v: %s, want %d", c.method, c.path, c.hdr, a, c.status)
			}
		}
		if n := len(posts(t, f, key)); n != 0 {
			t.Fatalf("%d requests forwarded", n)
		}
	})
	t.Run("v3_shared_checked_as_shared", func(t *testing.T) {
		t.Parallel()
		key, user, ac := uniq("key"), uniq("user"), uniq("ac")
		body := fmt.Appendf(nil, `{"auth_config_id":%q,"user_id":%q,"experimental":{"account_type":"SHARED"}}`, ac, user)
		send(t, http.MethodPost, enforce.URL+"/api/v3/connected_accounts/link", body, "x-api-key", key)
		lists := f.RequestsOf(t, key, composiotest.RouteList)
		if len(lists) != 1 || query(t, lists[0]).Get("account_type") != "SHARED" {
			t.Fatalf("lookups %v", lists)
		}
	})
	t.Run("replay_needs_the_same_request", func(t *testing.T) {
		t.Parallel()
		key, user, ac := uniq("key"), uniq("user"), uniq("ac")
		first := send(t, http.MethodPost, enforce.URL+"/api/v3.1/connected_accounts/link", linkBody(user, ac), "x-api-key", key)
		if first.status != http.StatusCreated {
			t.Fatalf("first: %s", first)
		}
		other := fmt.Appendf(nil, `{"auth_config_id":%q,"user_id":%q,"callback_url":"https://evil.example/cb"}`, ac, user)
		a := send(t, http.MethodPost, enforce.URL+"/api/v3.1/connected_accounts/link", other, "x-api-key", key)
		wantEnvelope(t, a, http.StatusConflict, apierror.SlugLinkPending)
		if strings.Contains(a.String(), decodeLink(t, first).RedirectURL) {
			t.Fatalf("the first link was handed to a different request: %s", a)
		}
	})
	t.Run("mode_off_changes_nothing", func(t *testing.T) {
		t.Parallel()
		key, user, ac := uniq("key"), uniq("user"), uniq("ac")
		send(t, http.MethodPost, off.URL+"/api/v3.1/connected_accounts/link", linkBody(user, ac), "x-api-key", key,
			apierror.HeaderAllowMultiple, "true")
		posts := posts(t, f, key)
		if len(posts) != 1 || posts[0].Header.Get(apierror.HeaderAllowMultiple) != "true" {
			t.Fatalf("GUARD_MODE=off removed the opt-in header: %v", posts)
		}
	})
}
