package composiotest_test

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/composio-guard/composio-guard/internal/composiotest"
	"github.com/composio-guard/composio-guard/internal/composiotest/fakeserver"
)

// clock is a settable time source for the fake.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func TestCredentials(t *testing.T) {
	_, srv := fakeserver.New(t)
	tests := []struct {
		name   string
		hdr    []string
		status int
	}{
		{"none", nil, http.StatusUnauthorized},
		{"empty api key", []string{"x-api-key", ""}, http.StatusUnauthorized},
		{"api key", []string{"x-api-key", "k1"}, http.StatusOK},
		{"user key with org and project", []string{"x-user-api-key", "uk", "x-org-id", "o1", "x-project-id", "p1"}, http.StatusOK},
		{"org key", []string{"x-org-api-key", "ok"}, http.StatusOK},
		{"api and org key", []string{"x-api-key", "k1", "x-org-api-key", "ok"}, http.StatusUnauthorized},
		{"api and user key", []string{"x-api-key", "k1", "x-user-api-key", "uk"}, http.StatusUnauthorized},
		{"authorization header is no credential", []string{"authorization", "Bearer k1"}, http.StatusUnauthorized},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := call(t, srv.URL, "GET", "/api/v3/connected_accounts", "", tc.hdr...)
			if a.status != tc.status {
				t.Fatalf("status %d, want %d: %s", a.status, tc.status, a.raw)
			}
			if tc.status == http.StatusUnauthorized && a.errSlug() != composiotest.SlugUnauthorized {
				t.Errorf("401 body is not the envelope: %s", a.raw)
			}
		})
	}
}

func TestProjectsArePartitioned(t *testing.T) {
	fake, srv := fakeserver.New(t)
	userP1 := http.Header{"X-User-Api-Key": {"uk"}, "X-Org-Id": {"o1"}, "X-Project-Id": {"p1"}}
	p1, err := composiotest.ProjectOf(userP1)
	if err != nil {
		t.Fatal(err)
	}
	mine := fake.AddAccount(composiotest.Account{Credential: "k1", UserID: "u1", AuthConfigID: "ac_1"})
	theirs := fake.AddAccount(composiotest.Account{Credential: p1, UserID: "u1", AuthConfigID: "ac_1"})

	tests := []struct {
		name string
		hdr  []string
		want []string
	}{
		{"api key sees its own", []string{"x-api-key", "k1"}, []string{mine.ID}},
		{"other api key sees nothing", []string{"x-api-key", "k2"}, []string{}},
		{"user key on its project", []string{"x-user-api-key", "uk", "x-org-id", "o1", "x-project-id", "p1"}, []string{theirs.ID}},
		{"same user key, other project", []string{"x-user-api-key", "uk", "x-org-id", "o1", "x-project-id", "p2"}, []string{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := call(t, srv.URL, "GET", "/api/v3/connected_accounts?user_ids=u1", "", tc.hdr...)
			if got := a.ids(); !slices.Equal(got, tc.want) {
				t.Errorf("ids %v, want %v", got, tc.want)
			}
		})
	}
	if a := call(t, srv.URL, "GET", "/api/v3/connected_accounts/"+mine.ID, "", "x-api-key", "k2"); a.status != http.StatusNotFound {
		t.Errorf("get from another project: %d, want 404", a.status)
	}
	if a := call(t, srv.URL, "DELETE", "/api/v3/connected_accounts/"+mine.ID, "", "x-api-key", "k2"); a.status != http.StatusNotFound {
		t.Errorf("delete from another project: %d, want 404", a.status)
	}
	if _, ok := fake.Account(mine.ID); !ok {
		t.Error("another project deleted the account")
	}
}

func TestLink(t *testing.T) {
	c := &clock{t: time.Date(2026, 4, 28, 10, 0, 0, 0, time.UTC)}
	fake, srv := fakeserver.New(t, composiotest.WithClock(c.now), composiotest.WithToolkit("ac_gm", "gmail"))

	a := call(t, srv.URL, "POST", "/api/v3/connected_accounts/link",
		`{"auth_config_id":"ac_gm","user_id":"u1","callback_url":"https://app.example/cb","alias":"work"}`, "x-api-key", "k1")
	if a.status != http.StatusCreated {
		t.Fatalf("status %d: %s", a.status, a.raw)
	}
	if got := a.str("expires_at"); got != "2026-04-28T10:10:00Z" {
		t.Errorf("expires_at %q, want now+10m", got)
	}
	id, token := a.str("connected_account_id"), a.str("link_token")
	if len(id) < 4 || id[:3] != "ca_" || len(token) < 4 || token[:3] != "lt_" {
		t.Errorf("ids %q %q", id, token)
	}
	if a.str("redirect_url") != "https://connect.fake-composio.test/link/"+token {
		t.Errorf("redirect_url %q", a.str("redirect_url"))
	}
	acc, ok := fake.Account(id)
	if !ok {
		t.Fatal("no account stored")
	}
	want := composiotest.Account{ID: id, Credential: "k1", UserID: "u1", AuthConfigID: "ac_gm", Toolkit: "gmail",
		Status: "INITIATED", AccountType: "PRIVATE", Alias: "work", CallbackURL: "https://app.example/cb"}
	if acc.ID != want.ID || acc.Credential != want.Credential || acc.UserID != want.UserID || acc.AuthConfigID != want.AuthConfigID ||
		acc.Toolkit != want.Toolkit || acc.Status != want.Status || acc.AccountType != want.AccountType ||
		acc.Alias != want.Alias || acc.CallbackURL != want.CallbackURL {
		t.Errorf("stored %+v, want %+v", acc, want)
	}

	// v3.1 (and later) with a shared account; ids never repeat.
	b := call(t, srv.URL, "POST", "/api/v3.1/connected_accounts/link",
		`{"auth_config_id":"ac_gm","user_id":"u1","experimental":{"account_type":"SHARED"}}`, "x-api-key", "k1")
	if b.status != http.StatusCreated || b.str("connected_account_id") == id {
		t.Fatalf("second link: %d %s", b.status, b.raw)
	}
	if acc, _ := fake.Account(b.str("connected_account_id")); acc.AccountType != "SHARED" {
		t.Errorf("account type %q, want SHARED", acc.AccountType)
	}
	if c := call(t, srv.URL, "POST", "/api/v3.12/connected_accounts/link", `{"auth_config_id":"ac","user_id":"u"}`, "x-api-key", "k1"); c.status != http.StatusCreated {
		t.Errorf("v3.12: %d", c.status)
	}
}

func TestLinkValidation(t *testing.T) {
	fake, srv := fakeserver.New(t)
	tests := []struct{ name, body string }{
		{"not json", `user_id=u1`},
		{"array", `[]`},
		{"no user", `{"auth_config_id":"ac_1"}`},
		{"empty user", `{"auth_config_id":"ac_1","user_id":""}`},
		{"numeric user", `{"auth_config_id":"ac_1","user_id":7}`},
		{"no auth config", `{"user_id":"u1"}`},
		{"bad account type", `{"auth_config_id":"ac_1","user_id":"u1","experimental":{"account_type":"TEAM"}}`},
		{"experimental not an object", `{"auth_config_id":"ac_1","user_id":"u1","experimental":"SHARED"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := call(t, srv.URL, "POST", "/api/v3/connected_accounts/link", tc.body, "x-api-key", "k1")
			if a.status != http.StatusBadRequest || a.errSlug() != composiotest.SlugBadRequest {
				t.Errorf("got %d %s, want 400 envelope", a.status, a.raw)
			}
		})
	}
	if n := len(fake.Accounts("")); n != 0 {
		t.Errorf("%d accounts created by invalid links", n)
	}
}

func TestLegacyCreate(t *testing.T) {
	fake, srv := fakeserver.New(t, composiotest.WithManagedOAuth("ac_managed"))
	a := call(t, srv.URL, "POST", "/api/v3/connected_accounts",
		`{"auth_config":{"id":"ac_1"},"connection":{"callback_url":"https://app.example/cb"}}`, "x-api-key", "k1")
	if a.status != http.StatusCreated {
		t.Fatalf("status %d: %s", a.status, a.raw)
	}
	// What initiate() reads: id and connectionData.val.{status,redirectUrl}.
	cd, _ := a.json["connectionData"].(map[string]any)
	val, _ := cd["val"].(map[string]any)
	if val["status"] != "INITIATED" || val["redirectUrl"] == "" || val["redirectUrl"] == nil || a.str("id") == "" {
		t.Errorf("answer %s", a.raw)
	}
	acc, ok := fake.Account(a.str("id"))
	if !ok || acc.UserID != "default" || acc.Status != "INITIATED" || acc.AuthConfigID != "ac_1" {
		t.Errorf("stored %+v", acc)
	}

	tests := []struct{ name, body string }{
		{"managed oauth", `{"auth_config":{"id":"ac_managed"},"connection":{"user_id":"u1"}}`},
		{"no auth config", `{"connection":{"user_id":"u1"}}`},
		{"auth config id not a string", `{"auth_config":{"id":1},"connection":{}}`},
		{"connection not an object", `{"auth_config":{"id":"ac_1"},"connection":"u1"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := call(t, srv.URL, "POST", "/api/v3.1/connected_accounts", tc.body, "x-api-key", "k1")
			if a.status != http.StatusBadRequest || a.errSlug() != composiotest.SlugBadRequest {
				t.Errorf("got %d %s, want 400", a.status, a.raw)
			}
		})
	}
}

func TestListFilters(t *testing.T) {
	fake, srv := fakeserver.New(t)
	add := func(user, cfg, status, typ, toolkit string) string {
		return fake.AddAccount(composiotest.Account{Credential: "k1", UserID: user, AuthConfigID: cfg,
			Status: status, AccountType: typ, Toolkit: toolkit}).ID
	}
	a1 := add("u1", "ac_1", "ACTIVE", "", "github")
	a2 := add("u1", "ac_2", "INITIATED", "", "gmail")
	a3 := add("u2", "ac_1", "ACTIVE", "", "github")
	a4 := add("u1", "ac_1", "ACTIVE", "SHARED", "github")
	a5 := add("u3", "ac_1", "EXPIRED", "", "github")

	tests := []struct {
		name  string
		query string
		want  []string // newest first
	}{
		{"no filter: private only", "", []string{a5, a3, a2, a1}},
		{"sdk guard query", "auth_config_ids=ac_1&statuses=ACTIVE&user_ids=u1", []string{a1}},
		{"comma-joined users", "user_ids=u1%2Cu2", []string{a3, a2, a1}},
		{"comma unescaped", "user_ids=u1,u3", []string{a5, a2, a1}},
		{"statuses", "statuses=ACTIVE%2CEXPIRED", []string{a5, a3, a1}},
		{"toolkit", "toolkit_slugs=gmail", []string{a2}},
		{"ids", "connected_account_ids=" + a1 + "%2C" + a3, []string{a3, a1}},
		{"shared", "account_type=SHARED", []string{a4}},
		{"all types", "account_type=ALL&user_ids=u1&auth_config_ids=ac_1", []string{a4, a1}},
		{"private explicit", "account_type=PRIVATE&user_ids=u1&auth_config_ids=ac_1", []string{a1}},
		// Not the SDK encoding: recorded, but no filter.
		{"repeated key filters nothing", "user_ids=u1&user_ids=u2", []string{a5, a3, a2, a1}},
		{"bracket key filters nothing", "user_ids[]=u2", []string{a5, a3, a2, a1}},
		{"empty value filters nothing", "user_ids=", []string{a5, a3, a2, a1}},
		{"ascending", "order_direction=asc&user_ids=u1", []string{a1, a2}},
		{"unknown user", "user_ids=nobody", []string{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := call(t, srv.URL, "GET", "/api/v3/connected_accounts?"+tc.query, "", "x-api-key", "k1")
			if a.status != http.StatusOK {
				t.Fatalf("status %d: %s", a.status, a.raw)
			}
			if got := a.ids(); !slices.Equal(got, tc.want) {
				t.Errorf("ids %v, want %v", got, tc.want)
			}
			if a.json["total_items"] != float64(len(tc.want)) {
				t.Errorf("total_items %v, want %d", a.json["total_items"], len(tc.want))
			}
		})
	}

	// The wrong encoding still reached the log, raw.
	reqs := fake.RequestsFor("GET", composiotest.RouteList)
	found := false
	for _, q := range reqs {
		found = found || q.RawQuery == "user_ids=u1&user_ids=u2"
	}
	if !found {
		t.Error("repeated-key query not in the request log")
	}

	for _, q := range []string{"statuses=ACTIVE%2CBOGUS", "account_type=TEAM", "limit=0", "limit=abc", "limit=2.5", "cursor=zzz"} {
		if a := call(t, srv.URL, "GET", "/api/v3/connected_accounts?"+q, "", "x-api-key", "k1"); a.status != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", q, a.status)
		}
	}
}

func TestListItemShape(t *testing.T) {
	fake, srv := fakeserver.New(t)
	acc := fake.AddAccount(composiotest.Account{Credential: "k1", UserID: "u1", AuthConfigID: "ac_1"})
	for _, path := range []string{"/api/v3/connected_accounts", "/api/v3.1/connected_accounts/" + acc.ID} {
		a := call(t, srv.URL, "GET", path, "", "x-api-key", "k1")
		it := a.json
		if items, ok := a.json["items"].([]any); ok {
			it, _ = items[0].(map[string]any)
		}
		ac, _ := it["auth_config"].(map[string]any)
		tk, _ := it["toolkit"].(map[string]any)
		if ac["id"] != "ac_1" || ac["is_composio_managed"] == nil || ac["is_disabled"] == nil {
			t.Errorf("%s: auth_config %v", path, ac)
		}
		if tk["slug"] != "github" || it["status"] != "ACTIVE" || it["user_id"] != "u1" || it["id"] != acc.ID {
			t.Errorf("%s: item %v", path, it)
		}
		for _, k := range []string{"created_at", "updated_at", "is_disabled", "status_reason", "state"} {
			if _, ok := it[k]; !ok {
				t.Errorf("%s: item lacks %s", path, k)
			}
		}
		if _, err := time.Parse(time.RFC3339, it["created_at"].(string)); err != nil {
			t.Errorf("created_at: %v", err)
		}
	}
}

func TestListPagination(t *testing.T) {
	fake, srv := fakeserver.New(t)
	var added []string
	for i := range 45 {
		added = append(added, fake.AddAccount(composiotest.Account{Credential: "k1", UserID: "u" + strconv.Itoa(i%3), AuthConfigID: "ac_1"}).ID)
	}
	slices.Reverse(added) // newest first

	for _, tc := range []struct {
		limit string
		sizes []int
	}{
		{"", []int{20, 20, 5}}, // default page size
		{"20", []int{20, 20, 5}},
		{"45", []int{45}},
		{"7", []int{7, 7, 7, 7, 7, 7, 3}},
	} {
		t.Run("limit="+tc.limit, func(t *testing.T) {
			var got []string
			cursor := ""
			for page, size := range tc.sizes {
				q := "?limit=" + tc.limit
				if cursor != "" {
					q += "&cursor=" + cursor
				}
				a := call(t, srv.URL, "GET", "/api/v3/connected_accounts"+q, "", "x-api-key", "k1")
				if len(a.ids()) != size {
					t.Fatalf("page %d: %d items, want %d", page+1, len(a.ids()), size)
				}
				if a.json["current_page"] != float64(page+1) || a.json["total_pages"] != float64(len(tc.sizes)) || a.json["total_items"] != float64(45) {
					t.Errorf("page %d: current_page %v total_pages %v total_items %v", page+1, a.json["current_page"], a.json["total_pages"], a.json["total_items"])
				}
				got = append(got, a.ids()...)
				last := page == len(tc.sizes)-1
				next, isString := a.json["next_cursor"].(string)
				if last != (a.json["next_cursor"] == nil) || (!last && (!isString || next == "")) {
					t.Fatalf("page %d: next_cursor %v", page+1, a.json["next_cursor"])
				}
				cursor = next
			}
			if !slices.Equal(got, added) {
				t.Errorf("pages do not add up to every account newest first")
			}
		})
	}

	// Filters hold across pages.
	a := call(t, srv.URL, "GET", "/api/v3/connected_accounts?user_ids=u0&limit=10", "", "x-api-key", "k1")
	b := call(t, srv.URL, "GET", "/api/v3/connected_accounts?user_ids=u0&limit=10&cursor="+a.str("next_cursor"), "", "x-api-key", "k1")
	if len(a.ids())+len(b.ids()) != 15 || b.json["next_cursor"] != nil {
		t.Errorf("filtered pages: %d + %d items, next %v", len(a.ids()), len(b.ids()), b.json["next_cursor"])
	}
}

func TestScopedKeyCannotList(t *testing.T) {
	_, srv := fakeserver.New(t)
	if a := call(t, srv.URL, "GET", "/api/v3/connected_accounts?user_ids=u1", "", "x-api-key", "scoped_nolist_1"); a.status != http.StatusForbidden || a.errSlug() != composiotest.SlugForbidden {
		t.Errorf("list: %d %s, want 403 envelope", a.status, a.raw)
	}
	if a := call(t, srv.URL, "POST", "/api/v3/connected_accounts/link", `{"user_id":"u1","auth_config_id":"ac_1"}`, "x-api-key", "scoped_nolist_1"); a.status != http.StatusCreated {
		t.Errorf("link: %d, want 201", a.status)
	}
}

func TestGetAndDelete(t *testing.T) {
	fake, srv := fakeserver.New(t)
	acc := fake.AddAccount(composiotest.Account{Credential: "k1", UserID: "u1", AuthConfigID: "ac_1"})
	if a := call(t, srv.URL, "GET", "/api/v3/connected_accounts/"+acc.ID, "", "x-api-key", "k1"); a.status != 200 || a.str("id") != acc.ID {
		t.Errorf("get: %d %s", a.status, a.raw)
	}
	if a := call(t, srv.URL, "DELETE", "/api/v3/connected_accounts/"+acc.ID, "", "x-api-key", "k1"); a.status != 200 {
		t.Errorf("delete: %d %s", a.status, a.raw)
	}
	if a := call(t, srv.URL, "GET", "/api/v3/connected_accounts/"+acc.ID, "", "x-api-key", "k1"); a.status != 404 || a.errSlug() == "" {
		t.Errorf("get after delete: %d %s", a.status, a.raw)
	}
}

func TestUnknownRoutes(t *testing.T) {
	_, srv := fakeserver.New(t)
	for _, tc := range []struct{ method, path string }{
		{"GET", "/api/v3/toolkits"},
		{"PUT", "/api/v3/connected_accounts"},
		{"GET", "/api/v3/connected_accounts/link/extra"},
		{"GET", "/api/v2/connected_accounts"},
		{"POST", "/api/v3/tool_router/sessions"},
		{"GET", "/"},
	} {
		a := call(t, srv.URL, tc.method, tc.path, "", "x-api-key", "k1")
		if a.status != http.StatusNotFound || a.errSlug() == "" {
			t.Errorf("%s %s: %d %s, want 404 envelope", tc.method, tc.path, a.status, a.raw)
		}
	}
}

func TestRateLimitHeaders(t *testing.T) {
	c := &clock{t: time.Date(2026, 4, 28, 10, 0, 5, 0, time.UTC)}
	_, srv := fakeserver.New(t, composiotest.WithClock(c.now), composiotest.WithRateLimit(3))
	remaining := func(key string) string {
		a := call(t, srv.URL, "GET", "/api/v3/connected_accounts", "", "x-api-key", key)
		if a.header.Get("X-RateLimit") != "3" || a.header.Get("X-RateLimit-Window-Size") != "60s" {
			t.Errorf("headers %v", a.header)
		}
		if a.status != http.StatusOK {
			t.Errorf("status %d without enforcement", a.status)
		}
		return a.header.Get("X-RateLimit-Remaining")
	}
	var got []string
	for range 5 {
		got = append(got, remaining("k1"))
	}
	if want := []string{"2", "1", "0", "0", "0"}; !slices.Equal(got, want) {
		t.Errorf("remaining %v, want %v", got, want)
	}
	if r := remaining("k2"); r != "2" {
		t.Errorf("another credential: remaining %s, want 2", r)
	}
	c.add(time.Minute)
	if r := remaining("k1"); r != "2" {
		t.Errorf("next window: remaining %s, want 2", r)
	}
	// Errors carry the headers too.
	if a := call(t, srv.URL, "GET", "/nope", "", "x-api-key", "k3"); a.header.Get("X-RateLimit-Remaining") != "2" {
		t.Errorf("404 without rate headers: %v", a.header)
	}
}

func TestRateLimitEnforced(t *testing.T) {
	c := &clock{t: time.Date(2026, 4, 28, 10, 0, 45, 0, time.UTC)}
	fake, srv := fakeserver.New(t, composiotest.WithClock(c.now), composiotest.WithRateLimit(2), composiotest.WithRateLimitEnforced())
	link := `{"user_id":"u1","auth_config_id":"ac_1"}`
	var statuses []int
	var last answer
	for range 3 {
		last = call(t, srv.URL, "POST", "/api/v3/connected_accounts/link", link, "x-api-key", "k1")
		statuses = append(statuses, last.status)
	}
	if want := []int{201, 201, 429}; !slices.Equal(statuses, want) {
		t.Fatalf("statuses %v, want %v", statuses, want)
	}
	if last.header.Get("Retry-After") != "15" || last.str("message") == "" {
		t.Errorf("429: Retry-After %q body %s", last.header.Get("Retry-After"), last.raw)
	}
	if n := len(fake.Accounts("k1")); n != 2 {
		t.Errorf("%d accounts, want 2 (the 429 had no effect)", n)
	}
}

func TestRequestIDEcho(t *testing.T) {
	_, srv := fakeserver.New(t)
	a := call(t, srv.URL, "GET", "/api/v3/connected_accounts/ca_missing", "", "x-api-key", "k1", "x-request-id", "req-42")
	e, _ := a.json["error"].(map[string]any)
	if a.header.Get("X-Request-Id") != "req-42" || e["request_id"] != "req-42" {
		t.Errorf("header %q, body request_id %v", a.header.Get("X-Request-Id"), e["request_id"])
	}
	b := call(t, srv.URL, "GET", "/api/v3/connected_accounts", "", "x-api-key", "k1")
	if v := b.header.Get("X-Request-Id"); v != "" {
		t.Errorf("X-Request-Id %q invented without an inbound one", v)
	}
}

func TestSessions(t *testing.T) {
	fake, srv := fakeserver.New(t)
	create := `{"user_id":"u1","toolkits":{"enable":["gmail"]},"workbench":{"enable":true,"sandbox_size":"large"}}`
	a := call(t, srv.URL, "POST", "/api/v3/tool_router/session", create, "x-api-key", "k1")
	if a.status != http.StatusCreated {
		t.Fatalf("create: %d %s", a.status, a.raw)
	}
	id := a.str("session_id")
	mcp, _ := a.json["mcp"].(map[string]any)
	cfg, _ := a.json["config"].(map[string]any)
	wb, _ := cfg["workbench"].(map[string]any)
	if id == "" || mcp["type"] != "http" || mcp["url"] == nil || cfg["user_id"] != "u1" || wb["sandbox_size"] != "large" ||
		a.json["config_version"] != float64(1) || a.json["tool_router_tools"] == nil {
		t.Errorf("create answer %s", a.raw)
	}
	s, ok := fake.GetSession(id)
	if !ok || s.SandboxSize != "large" || string(s.LastBody) != create || string(s.CreateBody) != create || s.Credential != "k1" {
		t.Errorf("stored %+v", s)
	}

	tests := []struct {
		name, body string
		hdr        []string
		status     int
		size       string // sandbox_size in the answer
		stored     string // Session.SandboxSize after
	}{
		{"resize", `{"workbench":{"sandbox_size":"medium"}}`, []string{"x-api-key", "k1"}, 200, "medium", "medium"},
		{"other member keeps size", `{"tags":["readOnlyHint"]}`, []string{"x-api-key", "k1"}, 200, "medium", "medium"},
		{"invalid size", `{"workbench":{"sandbox_size":"huge"}}`, []string{"x-api-key", "k1"}, 400, "", "medium"},
		{"other project", `{"workbench":{"sandbox_size":"xlarge"}}`, []string{"x-api-key", "k2"}, 404, "", "medium"},
		{"clear override", `{"workbench":null}`, []string{"x-api-key", "k1"}, 200, "standard", ""},
	}
	version := 1
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := call(t, srv.URL, "PATCH", "/api/v3.1/tool_router/session/"+id, tc.body, tc.hdr...)
			if a.status != tc.status {
				t.Fatalf("status %d: %s", a.status, a.raw)
			}
			if tc.status == 200 {
				version++
				cfg, _ := a.json["config"].(map[string]any)
				wb, _ := cfg["workbench"].(map[string]any)
				if wb["sandbox_size"] != tc.size || a.json["config_version"] != float64(version) || a.str("session_id") != id {
					t.Errorf("answer %s", a.raw)
				}
			}
			s, _ := fake.GetSession(id)
			if s.SandboxSize != tc.stored {
				t.Errorf("stored size %q, want %q", s.SandboxSize, tc.stored)
			}
			if tc.status == 200 && string(s.LastBody) != tc.body {
				t.Errorf("last body %s", s.LastBody)
			}
		})
	}
	if a := call(t, srv.URL, "GET", "/api/v3.1/tool_router/session/"+id, "", "x-api-key", "k1"); a.status != 200 || a.str("session_id") != id {
		t.Errorf("get session: %d %s", a.status, a.raw)
	}
	if a := call(t, srv.URL, "PATCH", "/api/v3.1/tool_router/session/trs_nope", `{}`, "x-api-key", "k1"); a.status != 404 {
		t.Errorf("patch unknown: %d", a.status)
	}
	for _, body := range []string{`{"workbench":{"sandbox_size":"tiny"}}`, `{"toolkits":["gmail"]}`, `{"user_id":3}`} {
		if a := call(t, srv.URL, "POST", "/api/v3/tool_router/session", body, "x-api-key", "k1"); a.status != 400 {
			t.Errorf("create %s: %d, want 400", body, a.status)
		}
	}

	// session.authorize(toolkit) links for the session's user.
	l := call(t, srv.URL, "POST", "/api/v3.1/tool_router/session/"+id+"/link", `{"toolkit":"slack"}`, "x-api-key", "k1")
	acc, ok := fake.Account(l.str("connected_account_id"))
	if l.status != 201 || !ok || acc.UserID != "u1" || acc.Toolkit != "slack" || acc.Status != "INITIATED" {
		t.Errorf("session link: %d %s, account %+v", l.status, l.raw, acc)
	}
}

func TestAccountHelpers(t *testing.T) {
	fake, srv := fakeserver.New(t)
	l := call(t, srv.URL, "POST", "/api/v3/connected_accounts/link", `{"user_id":"u1","auth_config_id":"ac_1"}`, "x-api-key", "k1")
	id := l.str("connected_account_id")
	if fake.CountActive("k1", "u1", "ac_1") != 0 || fake.CountInitiated("k1", "u1", "ac_1") != 1 {
		t.Fatal("link did not make one INITIATED account")
	}
	if err := fake.Complete(id); err != nil {
		t.Fatal(err)
	}
	if err := fake.Complete(id); err == nil {
		t.Error("completing an ACTIVE account succeeded")
	}
	if fake.CountActive("k1", "u1", "ac_1") != 1 || fake.CountActive("k2", "u1", "ac_1") != 0 {
		t.Error("CountActive after Complete")
	}
	// The SDK guard's query now finds it.
	a := call(t, srv.URL, "GET", "/api/v3/connected_accounts?auth_config_ids=ac_1&statuses=ACTIVE&user_ids=u1", "", "x-api-key", "k1")
	if !slices.Equal(a.ids(), []string{id}) {
		t.Errorf("guard query ids %v", a.ids())
	}
	if _, err := fake.SetStatus(id, "EXPIRED"); err != nil {
		t.Fatal(err)
	}
	if _, err := fake.SetStatus(id, "GONE"); err == nil {
		t.Error("unknown status accepted")
	}
	if _, err := fake.SetStatus("ca_nope", "ACTIVE"); err == nil {
		t.Error("unknown account accepted")
	}
	if !fake.DeleteAccount(id) || fake.DeleteAccount(id) {
		t.Error("DeleteAccount")
	}
}

func TestRequestLog(t *testing.T) {
	fake, srv := fakeserver.New(t, composiotest.WithRequestLogLimit(3))
	body := `{"user_id":"u1","auth_config_id":"ac_1"}`
	call(t, srv.URL, "POST", "/api/v3/connected_accounts/link", body, "x-api-key", "k1", "x-sdk-version", "0.8.1")
	call(t, srv.URL, "GET", "/api/v3/connected_accounts?user_ids=u1%2Cu2", "", "x-api-key", "k1")
	reqs := fake.Requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests logged", len(reqs))
	}
	if q := reqs[0]; q.Method != "POST" || q.Path != "/api/v3/connected_accounts/link" || q.Route != composiotest.RouteLink ||
		string(q.Body) != body || q.Header.Get("X-Api-Key") != "k1" || q.Header.Get("X-Sdk-Version") != "0.8.1" || q.Time.IsZero() {
		t.Errorf("first %+v", q)
	}
	if q := reqs[1]; q.RawQuery != "user_ids=u1%2Cu2" || q.Route != composiotest.RouteList {
		t.Errorf("second %+v", q)
	}
	for i := range 3 {
		call(t, srv.URL, "GET", fmt.Sprintf("/api/v3/connected_accounts/ca_%d", i), "", "x-api-key", "k1")
	}
	if n := len(fake.Requests()); n != 3 {
		t.Errorf("log holds %d, want the limit 3", n)
	}
	if fake.Requests()[2].Path != "/api/v3/connected_accounts/ca_2" {
		t.Error("the log did not keep the newest")
	}
	for _, tc := range []struct {
		method, route string
		want          int
	}{
		{"GET", composiotest.RouteGet, 3}, {"POST", composiotest.RouteLink, 1}, {"", composiotest.RouteList, 1},
		{"GET", "", 4}, {"", "", 5}, {"DELETE", composiotest.RouteDelete, 0},
	} {
		if got := fake.Count(tc.method, tc.route); got != tc.want {
			t.Errorf("Count(%q, %q) = %d, want %d", tc.method, tc.route, got, tc.want)
		}
	}
	fake.Reset()
	if len(fake.Requests()) != 0 || fake.Count("", "") != 0 {
		t.Error("Reset left requests")
	}
}
