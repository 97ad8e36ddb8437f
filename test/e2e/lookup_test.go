package e2e_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/composio-guard/composio-guard/internal/composiotest"
)

// testListQuery checks the guard's lookup byte for byte: the request's own
// API version, the SDK's array encoding, the caller's credential headers and
// nothing else of the caller's.
func testListQuery(t *testing.T, w *world) {
	for _, c := range []struct {
		name        string
		prefix      string
		experiment  string // experimental member of the link body, "" for none
		accountType string // expected account_type parameter, "" for none
		credential  string // "api", "user" or "org"
		user        string // "" for a generated one
	}{
		{name: "v3 api key", prefix: "/api/v3", credential: "api"},
		{name: "v3.1 private by default", prefix: "/api/v3.1", credential: "api"},
		{name: "v3.1 explicit private", prefix: "/api/v3.1", experiment: `{"account_type":"PRIVATE"}`, credential: "api"},
		{name: "v3.1 shared", prefix: "/api/v3.1", experiment: `{"account_type":"SHARED"}`, accountType: "SHARED", credential: "api"},
		// The account type checked is the one forwarded, on every version.
		{name: "v3 shared is checked as shared", prefix: "/api/v3", experiment: `{"account_type":"SHARED"}`, accountType: "SHARED", credential: "api"},
		{name: "user api key with org and project", prefix: "/api/v3.1", credential: "user"},
		{name: "org api key", prefix: "/api/v3", credential: "org"},
		{name: "user id needing escapes", prefix: "/api/v3", credential: "api", user: "alice+work@example.com/é &x=1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			secret, ac := uniq("key"), uniq("ac")
			user := c.user
			if user == "" {
				user = uniq("user")
			}
			var cred []string
			switch c.credential {
			case "api":
				cred = []string{"x-api-key", secret}
			case "user":
				cred = []string{"x-user-api-key", secret, "x-org-id", "org_" + secret, "x-project-id", "prj_" + secret}
			case "org":
				cred = []string{"x-org-api-key", secret, "x-project-id", "prj_" + secret}
			}
			body := fmt.Sprintf(`{"auth_config_id":%q,"user_id":%q`, ac, user)
			if c.experiment != "" {
				body += `,"experimental":` + c.experiment
			}
			body += "}"
			rid := "rid-" + secret
			hdr := append(cred,
				"X-Foo", "bar", "Cookie", "session=c00kie", "User-Agent", "e2e-client/1.0",
				"X-Source", "e2e", "X-Request-Id", rid, "Accept-Language", "fr")
			a := send(t, http.MethodPost, w.enforce.URL+c.prefix+"/connected_accounts/link", []byte(body), hdr...)
			if a.status != http.StatusCreated {
				t.Fatalf("link: got %s, want 201", a)
			}

			lists := w.fake.RequestsOf(t, secret, composiotest.RouteList)
			if len(lists) != 1 {
				t.Fatalf("list queries at the fake = %d, want 1", len(lists))
			}
			q := lists[0]
			if q.Method != http.MethodGet || q.Path != c.prefix+"/connected_accounts" {
				t.Errorf("list query = %s %s, want GET %s/connected_accounts", q.Method, q.Path, c.prefix)
			}
			want := url.Values{
				"auth_config_ids": {ac},
				"statuses":        {"ACTIVE,INITIATED"},
				"user_ids":        {user},
				"limit":           {strconv.Itoa(pageLimit)},
			}
			if c.accountType != "" {
				want["account_type"] = []string{c.accountType}
			}
			// As the SDKs encode it: a space is %20, never '+'.
			if wantRaw := strings.ReplaceAll(want.Encode(), "+", "%20"); q.RawQuery != wantRaw {
				t.Errorf("list RawQuery = %q\n                 want %q", q.RawQuery, wantRaw)
			}
			if !strings.Contains(q.RawQuery, "statuses=ACTIVE%2CINITIATED") {
				t.Errorf("statuses not one comma-joined, percent-encoded parameter: %q", q.RawQuery)
			}
			// The caller's credential headers, unchanged; none other.
			for i := 0; i < len(cred); i += 2 {
				if got := q.Header.Values(cred[i]); len(got) != 1 || got[0] != cred[i+1] {
					t.Errorf("list header %s = %q, want [%q]", cred[i], got, cred[i+1])
				}
			}
			for _, h := range []string{"X-Api-Key", "X-User-Api-Key", "X-Org-Api-Key", "X-Org-Id", "X-Project-Id"} {
				sent := false
				for i := 0; i < len(cred); i += 2 {
					sent = sent || http.CanonicalHeaderKey(cred[i]) == h
				}
				if !sent && q.Header.Get(h) != "" {
					t.Errorf("list query carries %s the caller did not send", h)
				}
			}
			for _, h := range []string{"X-Foo", "X-Source", "Accept-Language", "Authorization"} {
				if v := q.Header.Get(h); v != "" {
					t.Errorf("list query carries the caller's %s: %q", h, v)
				}
			}
			// Who the caller is reaches the lookup exactly as it reaches the
			// forward: a cookie could identify a caller to Composio too.
			if v := q.Header.Get("Cookie"); v != "session=c00kie" {
				t.Errorf("list query Cookie = %q, want the caller's", v)
			}
			if ua := q.Header.Get("User-Agent"); ua == "e2e-client/1.0" {
				t.Errorf("list query carries the caller's User-Agent")
			}
			if got := q.Header.Get("X-Request-Id"); got != rid {
				t.Errorf("list X-Request-Id = %q, want %q", got, rid)
			}

			// The forwarded link lost nothing the client sent.
			posts := posts(t, w.fake, secret)
			if len(posts) != 1 {
				t.Fatalf("link POSTs at the fake = %d, want 1", len(posts))
			}
			p := posts[0]
			if string(p.Body) != body {
				t.Errorf("forwarded body = %s, want as sent %s", p.Body, body)
			}
			for i := 0; i < len(hdr); i += 2 {
				if got := p.Header.Get(hdr[i]); got != hdr[i+1] {
					t.Errorf("forwarded header %s = %q, want %q", hdr[i], got, hdr[i+1])
				}
			}
		})
	}
}

// testListPages: an ACTIVE account beyond the first page of the lookup is
// still found (the enforce proxy asks pages of pageLimit items).
func testListPages(t *testing.T, w *world) {
	cred, user, ac := uniq("key"), uniq("user"), uniq("ac")
	active := w.fake.Seed(t, composiotest.Account{Credential: cred, UserID: user, AuthConfigID: ac})
	// Newer INITIATED accounts (made outside the proxy: no lease) come first
	// in the list, pushing the ACTIVE one to the third page.
	for range 2 * pageLimit {
		w.fake.Seed(t, composiotest.Account{Credential: cred, UserID: user, AuthConfigID: ac, Status: composiotest.StatusInitiated})
	}
	a := link(t, w.enforce, "/api/v3", cred, user, ac)
	wantConflict(t, a, user, ac, active.ID)
	lists := w.fake.RequestsOf(t, cred, composiotest.RouteList)
	if len(lists) < 3 {
		t.Fatalf("list pages read = %d, want at least 3", len(lists))
	}
	if query(t, lists[1]).Get("cursor") == "" {
		t.Errorf("second page asked without cursor: %q", lists[1].RawQuery)
	}
	if n := len(posts(t, w.fake, cred)); n != 0 {
		t.Errorf("POSTs forwarded = %d, want 0", n)
	}

	// An INITIATED account made outside the proxy blocks while it lives
	// (GUARD_PENDING_MAX_TTL after its created_at), and not after.
	cred2, user2 := uniq("key"), uniq("user")
	w.fake.Seed(t, composiotest.Account{Credential: cred2, UserID: user2, AuthConfigID: ac, Status: composiotest.StatusInitiated})
	if a := link(t, w.enforce, "/api/v3", cred2, user2, ac); a.status != http.StatusConflict {
		t.Errorf("link with a live untracked INITIATED account: got %s, want 409", a)
	}
	cred3, user3 := uniq("key"), uniq("user")
	w.fake.Seed(t, composiotest.Account{Credential: cred3, UserID: user3, AuthConfigID: ac, Status: composiotest.StatusInitiated,
		CreatedAt: time.Now().Add(-time.Hour)})
	if a := link(t, w.enforce, "/api/v3", cred3, user3, ac); a.status != http.StatusCreated {
		t.Errorf("link with an expired untracked INITIATED account: got %s, want 201", a)
	}
}
