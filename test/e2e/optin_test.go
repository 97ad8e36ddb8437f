package e2e_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/composio-guard/composio-guard/internal/apierror"
	"github.com/composio-guard/composio-guard/internal/composiotest"
)

// optInCase is one way of asking for a second account, and what must reach
// the upstream once the proxy removed its flag.
type optInCase struct {
	name     string
	query    string   // appended to the path, with its "?"
	hdr      []string // extra headers
	body     string   // %[1]s user, %[2]s auth config
	wantBody string   // the body expected at the fake (same placeholders)
	wantRaw  string   // the RawQuery expected at the fake
}

var optInCases = []optInCase{
	{name: "header", hdr: []string{apierror.HeaderAllowMultiple, "true"},
		body: `{"user_id":%[1]q,"auth_config_id":%[2]q}`, wantBody: `{"user_id":%[1]q,"auth_config_id":%[2]q}`},
	{name: "header any case", hdr: []string{"x-composio-allow-multiple", "TRUE"},
		body: `{"user_id":%[1]q,"auth_config_id":%[2]q}`, wantBody: `{"user_id":%[1]q,"auth_config_id":%[2]q}`},
	{name: "query", query: "?allow_multiple=true",
		body: `{"user_id":%[1]q,"auth_config_id":%[2]q}`, wantBody: `{"user_id":%[1]q,"auth_config_id":%[2]q}`},
	{name: "query among others", query: "?foo=1&allow_multiple=true&bar=a%2Cb",
		body: `{"user_id":%[1]q,"auth_config_id":%[2]q}`, wantBody: `{"user_id":%[1]q,"auth_config_id":%[2]q}`, wantRaw: "foo=1&bar=a%2Cb"},
	{name: "body member first", body: `{"allow_multiple":true,"user_id":%[1]q,"auth_config_id":%[2]q}`,
		wantBody: `{"user_id":%[1]q,"auth_config_id":%[2]q}`},
	{name: "body member middle", body: `{"user_id":%[1]q,"allow_multiple":true,"auth_config_id":%[2]q,"alias":"work"}`,
		wantBody: `{"user_id":%[1]q,"auth_config_id":%[2]q,"alias":"work"}`},
	{name: "body member last", body: `{"user_id":%[1]q,"auth_config_id":%[2]q,"allow_multiple":true}`,
		wantBody: `{"user_id":%[1]q,"auth_config_id":%[2]q}`},
	{name: "body member, pretty printed",
		body:     "{\n  \"user_id\": %[1]q,\n  \"allow_multiple\": true,\n  \"auth_config_id\": %[2]q\n}",
		wantBody: "{\n  \"user_id\": %[1]q,\n  \n  \"auth_config_id\": %[2]q\n}"},
	{name: "all three at once", hdr: []string{apierror.HeaderAllowMultiple, "true"}, query: "?allow_multiple=true",
		body: `{"user_id":%[1]q,"auth_config_id":%[2]q,"allow_multiple":true}`, wantBody: `{"user_id":%[1]q,"auth_config_id":%[2]q}`},
}

// sendOptIn seeds an ACTIVE account (when seed is set), then links with c's
// opt-in through p and returns the answer and the one POST that reached the
// fake, if any.
func sendOptIn(t *testing.T, w *world, p *proxy, c optInCase, seed bool) (a answer, cred, user, ac string, forwarded []composiotest.Request) {
	t.Helper()
	cred, user, ac = uniq("key"), uniq("user"), uniq("ac")
	if seed {
		w.fake.Seed(t, composiotest.Account{Credential: cred, UserID: user, AuthConfigID: ac})
	}
	body := fmt.Sprintf(c.body, user, ac)
	a = send(t, http.MethodPost, p.URL+"/api/v3/connected_accounts/link"+c.query, []byte(body),
		append([]string{"x-api-key", cred}, c.hdr...)...)
	return a, cred, user, ac, posts(t, w.fake, cred)
}

// checkStripped: the flag is gone from header, query and body; every other
// byte of the body and query is as the client sent it.
func checkStripped(t *testing.T, c optInCase, q composiotest.Request, user, ac string) {
	t.Helper()
	if v := q.Header.Values(apierror.HeaderAllowMultiple); len(v) != 0 {
		t.Errorf("%s reached the upstream: %q", apierror.HeaderAllowMultiple, v)
	}
	if q.RawQuery != c.wantRaw {
		t.Errorf("upstream RawQuery = %q, want %q", q.RawQuery, c.wantRaw)
	}
	if want := fmt.Sprintf(c.wantBody, user, ac); string(q.Body) != want {
		t.Errorf("upstream body =\n%q\nwant (the sent body minus the member)\n%q", q.Body, want)
	}
	if strings.Contains(string(q.Body), "allow_multiple") {
		t.Errorf("allow_multiple reached the upstream in the body: %s", q.Body)
	}
}

func testOptIn(t *testing.T, w *world) {
	for _, c := range optInCases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			a, cred, user, ac, posts := sendOptIn(t, w, w.enforce, c, true)
			if a.status != http.StatusCreated {
				t.Fatalf("opt-in link: got %s, want 201 (a second account)", a)
			}
			if len(posts) != 1 {
				t.Fatalf("POSTs at the fake = %d, want 1", len(posts))
			}
			checkStripped(t, c, posts[0], user, ac)
			if n := len(w.fake.Accounts(t, cred)); n != 2 {
				t.Errorf("accounts at the fake = %d, want 2", n)
			}
		})
	}
	// A flag that says no is no opt-in: the duplicate is refused.
	for _, c := range []optInCase{
		{name: "header false", hdr: []string{apierror.HeaderAllowMultiple, "false"}, body: `{"user_id":%[1]q,"auth_config_id":%[2]q}`},
		{name: "query false", query: "?allow_multiple=false", body: `{"user_id":%[1]q,"auth_config_id":%[2]q}`},
		{name: "body false", body: `{"user_id":%[1]q,"auth_config_id":%[2]q,"allow_multiple":false}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			a, _, user, ac, posts := sendOptIn(t, w, w.enforce, c, true)
			wantConflict(t, a, user, ac)
			if len(posts) != 0 {
				t.Errorf("POSTs at the fake = %d, want 0", len(posts))
			}
		})
	}
}

// testOptInNever: GUARD_ALLOW_MULTIPLE=never ignores the flag, and still
// strips it from what it forwards.
func testOptInNever(t *testing.T, w *world) {
	for _, c := range optInCases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			a, _, user, ac, posts := sendOptIn(t, w, w.never, c, true)
			wantConflict(t, a, user, ac)
			if len(posts) != 0 {
				t.Errorf("POSTs at the fake = %d, want 0", len(posts))
			}

			a, _, user, ac, posts = sendOptIn(t, w, w.never, c, false)
			if a.status != http.StatusCreated {
				t.Fatalf("fresh user with the flag: got %s, want 201", a)
			}
			if len(posts) != 1 {
				t.Fatalf("POSTs at the fake = %d, want 1", len(posts))
			}
			checkStripped(t, c, posts[0], user, ac)
		})
	}
}

// testMultipleAuthConfigs: auth configs listed in GUARD_MULTIPLE_AUTH_CONFIGS
// always allow another account; others are still guarded.
func testMultipleAuthConfigs(t *testing.T, w *world) {
	for _, c := range []struct {
		authConfig string
		allowed    bool
	}{
		{multiConfigA, true},
		{multiConfigB, true},
		{uniq("ac"), false},
	} {
		t.Run(c.authConfig, func(t *testing.T) {
			t.Parallel()
			cred, user := uniq("key"), uniq("user")
			seeded := w.fake.Seed(t, composiotest.Account{Credential: cred, UserID: user, AuthConfigID: c.authConfig})
			a := link(t, w.multi, "/api/v3.1", cred, user, c.authConfig)
			if !c.allowed {
				wantConflict(t, a, user, c.authConfig, seeded.ID)
				return
			}
			if a.status != http.StatusCreated {
				t.Fatalf("listed auth config: got %s, want 201", a)
			}
			if n := len(w.fake.Accounts(t, cred)); n != 2 {
				t.Errorf("accounts at the fake = %d, want 2", n)
			}
		})
	}
}
