package e2e_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/composio-guard/composio-guard/internal/apierror"
	"github.com/composio-guard/composio-guard/internal/composiotest"
	"github.com/composio-guard/composio-guard/internal/intercept"
)

// testShadow: the duplicate is decided and counted, but forwarded.
func testShadow(t *testing.T, w *world) {
	labels := map[string]string{"route": "link", "decision": intercept.DecisionRejectedDuplicate, "mode": "shadow"}
	before := metric(t, w.shadow, "composio_guard_decisions_total", labels)

	cred, user, ac := uniq("key"), uniq("user"), uniq("ac")
	w.fake.Seed(t, composiotest.Account{Credential: cred, UserID: user, AuthConfigID: ac})
	a := link(t, w.shadow, "/api/v3", cred, user, ac)
	if a.status != http.StatusCreated {
		t.Fatalf("shadow duplicate: got %s, want the upstream's 201", a)
	}
	if n := len(w.fake.Accounts(t, cred)); n != 2 {
		t.Errorf("accounts at the fake = %d, want 2 (shadow forwards)", n)
	}
	if len(w.fake.RequestsOf(t, cred, composiotest.RouteList)) == 0 {
		t.Errorf("shadow mode made no lookup: it must still decide")
	}
	if after := metric(t, w.shadow, "composio_guard_decisions_total", labels); after < before+1 {
		t.Errorf("decisions_total%v = %v after, %v before: want +1", labels, after, before)
	}

	// Bad input is forwarded as sent too; the upstream answers it.
	cred = uniq("key")
	bad := send(t, http.MethodPost, w.shadow.URL+"/api/v3/connected_accounts/link", []byte(`[1,2]`), "x-api-key", cred)
	if bad.status != http.StatusBadRequest || !strings.Contains(string(bad.body), composiotest.SlugBadRequest) {
		t.Errorf("shadow bad input: got %s, want the fake's own 400", bad)
	}
	if posts := posts(t, w.fake, cred); len(posts) != 1 || string(posts[0].Body) != `[1,2]` {
		t.Errorf("shadow bad input: forwarded %d POSTs, want 1 with the body as sent", len(posts))
	}
}

// testOff: GUARD_MODE=off is pure pass-through: no lookup at all.
func testOff(t *testing.T, w *world) {
	cred, user, ac := uniq("key"), uniq("user"), uniq("ac")
	w.fake.Seed(t, composiotest.Account{Credential: cred, UserID: user, AuthConfigID: ac})
	for _, path := range []string{"/api/v3/connected_accounts/link", "/api/v3.1/connected_accounts/link"} {
		a := send(t, http.MethodPost, w.off.URL+path, linkBody(user, ac), "x-api-key", cred)
		if a.status != http.StatusCreated || a.header.Get(apierror.HeaderGuard) != "" {
			t.Fatalf("off: got %s, want the upstream's 201", a)
		}
	}
	a := send(t, http.MethodPost, w.off.URL+"/api/v3/connected_accounts", createBody(user, ac), "x-api-key", cred)
	if a.status != http.StatusCreated {
		t.Fatalf("off, legacy create: got %s, want 201", a)
	}
	if n := len(w.fake.RequestsOf(t, cred, composiotest.RouteList)); n != 0 {
		t.Errorf("list calls in mode off = %d, want 0", n)
	}
	if n := len(w.fake.Accounts(t, cred)); n != 4 {
		t.Errorf("accounts = %d, want 4", n)
	}
}

// testAdminIsolation: admin paths are not served on the proxy port (they go
// to the upstream like any path) and nothing is proxied on the admin port.
func testAdminIsolation(t *testing.T, w *world) {
	cred := uniq("key")
	for _, path := range []string{"/metrics", "/readyz", "/livez", "/debug/pprof/"} {
		a := send(t, http.MethodGet, w.enforce.URL+path, nil, "x-api-key", cred)
		if a.status != http.StatusNotFound || !strings.Contains(string(a.body), composiotest.SlugNotFound) {
			t.Errorf("proxy port %s: got %s, want the fake's 404", path, a)
		}
		if strings.Contains(string(a.body), "composio_guard_") {
			t.Errorf("proxy port %s exposes metrics", path)
		}
	}
	seen := map[string]bool{}
	for _, q := range w.fake.RequestsOf(t, cred, "") {
		seen[q.Path] = true
	}
	for _, path := range []string{"/metrics", "/readyz", "/livez"} {
		if !seen[path] {
			t.Errorf("%s on the proxy port did not reach the upstream", path)
		}
	}

	for _, c := range []struct {
		method, path string
		status       int
		has          string
	}{
		{http.MethodGet, "/livez", 200, ""},
		{http.MethodGet, "/readyz", 200, ""},
		{http.MethodGet, "/metrics", 200, "composio_guard_build_info"},
		{http.MethodGet, "/api/v3/connected_accounts", 404, ""},
		{http.MethodPost, "/api/v3/connected_accounts/link", 0, ""},
		{http.MethodGet, "/_fake/accounts", 404, ""},
	} {
		var body []byte
		if c.method == http.MethodPost {
			body = linkBody("u", "ac")
		}
		a := send(t, c.method, w.enforce.AdminURL+c.path, body, "x-api-key", cred)
		if c.status != 0 && a.status != c.status || c.status == 0 && a.status < 400 {
			t.Errorf("admin port %s %s: got %d, want %d", c.method, c.path, a.status, c.status)
		}
		if c.has != "" && !strings.Contains(string(a.body), c.has) {
			t.Errorf("admin port %s: body lacks %s", c.path, c.has)
		}
	}
	if got := w.fake.RequestsOf(t, cred, ""); len(got) != 4 {
		t.Errorf("requests at the fake = %d, want the 4 sent on the proxy port only", len(got))
	}
}
