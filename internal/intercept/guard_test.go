package intercept_test

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/composio-guard/composio-guard/internal/apierror"
	"github.com/composio-guard/composio-guard/internal/intercept"
	"github.com/composio-guard/composio-guard/internal/lock"
	"github.com/composio-guard/composio-guard/internal/upstream"
)

func active(id, user, ac string) upstream.Account {
	return upstream.Account{ID: id, Status: upstream.StatusActive, UserID: user, AuthConfigID: ac}
}

func TestAllowedLinkForwardedUnchanged(t *testing.T) {
	e := newEnv(t, intercept.Config{})
	body := []byte(`{ "auth_config_id" : "ac_1",` + "\n" + `"user_id":"u1", "alias":"work", "x":[1,{"y":null}] }`)
	a := e.do(t, "POST", "/api/v3.1/connected_accounts/link", body,
		"X-Request-Id", "rid-1", "Cookie", "session=abc", "User-Agent", "Composio/JS 1.0")
	if a.Status != http.StatusCreated {
		t.Fatalf("status %d: %s", a.Status, a.Body)
	}
	reqs := e.up.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests reached the upstream, want 1", len(reqs))
	}
	got := reqs[0]
	if !bytes.Equal(got.Body, body) || got.Path != "/api/v3.1/connected_accounts/link" || got.RawQuery != "" {
		t.Fatalf("upstream got %s %s?%s %q", got.Method, got.Path, got.RawQuery, got.Body)
	}
	if got.Header.Get("X-Api-Key") != apiKey || got.Header.Get("Cookie") != "session=abc" {
		t.Fatalf("caller headers lost on the way: %v", got.Header)
	}
	qs := e.lister.calls()
	if len(qs) != 1 {
		t.Fatalf("%d lookups, want 1", len(qs))
	}
	// The lookup carries who the caller is exactly as the forward does.
	want := http.Header{"X-Api-Key": {apiKey}, "Cookie": {"session=abc"}, "X-Request-Id": {"rid-1"}}
	q := qs[0]
	if q.APIPrefix != "/api/v3.1" || q.UserID != "u1" || q.AuthConfigID != "ac_1" || q.AccountType != "" ||
		!reflect.DeepEqual(q.Statuses, []string{"ACTIVE", "INITIATED"}) || !reflect.DeepEqual(q.Header, want) {
		t.Fatalf("lookup %+v", q)
	}
	if n := counter(e.m.Decisions.WithLabelValues("link", "allowed", "enforce")); n != 1 {
		t.Fatalf("decisions{link,allowed,enforce} = %v, want 1", n)
	}
}

func TestListQuery(t *testing.T) {
	tests := []struct {
		name      string
		path      string
		body      string
		hdr       []string
		wantQuery upstream.ListQuery
	}{
		// The account type checked is the one forwarded, on every version.
		{"v3 checks the account type it forwards", "/api/v3/connected_accounts/link",
			`{"user_id":"u","auth_config_id":"ac","experimental":{"account_type":"SHARED"}}`, nil,
			upstream.ListQuery{APIPrefix: "/api/v3", UserID: "u", AuthConfigID: "ac", AccountType: "SHARED"}},
		{"v3.1 shared", "/api/v3.1/connected_accounts/link",
			`{"user_id":"u","auth_config_id":"ac","experimental":{"account_type":"SHARED"}}`, nil,
			upstream.ListQuery{APIPrefix: "/api/v3.1", UserID: "u", AuthConfigID: "ac", AccountType: "SHARED"}},
		{"v3.1 private is the default", "/api/v3.1/connected_accounts/link",
			`{"user_id":"u","auth_config_id":"ac","experimental":{"account_type":"PRIVATE"}}`, nil,
			upstream.ListQuery{APIPrefix: "/api/v3.1", UserID: "u", AuthConfigID: "ac"}},
		{"later version", "/api/v3.12/connected_accounts/link", `{"user_id":"u","auth_config_id":"ac"}`, nil,
			upstream.ListQuery{APIPrefix: "/api/v3.12", UserID: "u", AuthConfigID: "ac"}},
		{"legacy create without user is default", "/api/v3/connected_accounts",
			`{"auth_config":{"id":"ac"},"connection":{"callback_url":"x"}}`, nil,
			upstream.ListQuery{APIPrefix: "/api/v3", UserID: "default", AuthConfigID: "ac"}},
		{"legacy create", "/api/v3.1/connected_accounts",
			`{"auth_config":{"id":"ac","x":1},"connection":{"user_id":"u"}}`, nil,
			upstream.ListQuery{APIPrefix: "/api/v3.1", UserID: "u", AuthConfigID: "ac"}},
		{"escaped strings are decoded", "/api/v3/connected_accounts/link",
			`{"user_id":"\u00e9l\u00e8ve \"x\"","auth_config_id":"ac\/1"}`, nil,
			upstream.ListQuery{APIPrefix: "/api/v3", UserID: `élève "x"`, AuthConfigID: "ac/1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, intercept.Config{})
			a := e.do(t, "POST", tc.path, []byte(tc.body), "X-Request-Id", "r1")
			if a.Status != http.StatusCreated {
				t.Fatalf("status %d: %s", a.Status, a.Body)
			}
			qs := e.lister.calls()
			if len(qs) != 1 {
				t.Fatalf("%d lookups", len(qs))
			}
			q := qs[0]
			if q.Tenant == "" || strings.Contains(q.Tenant, apiKey) {
				t.Fatalf("tenant %q: want a digest of the credential", q.Tenant)
			}
			q.Header, q.Statuses, q.Tenant = nil, nil, ""
			tc.wantQuery.StopAtActive = true
			if !reflect.DeepEqual(q, tc.wantQuery) {
				t.Fatalf("lookup %+v, want %+v", q, tc.wantQuery)
			}
		})
	}
}

func TestLookupCarriesTheForwardedIdentity(t *testing.T) {
	e := newEnv(t, intercept.Config{})
	a := e.link(t, "u", "ac", "x-api-key", "", "x-user-api-key", "uak", "x-org-id", "org", "x-project-id", "prj",
		"Authorization", "Bearer nope", "Cookie", "c=1", "X-Request-Id", "rid")
	if a.Status != http.StatusCreated {
		t.Fatalf("status %d", a.Status)
	}
	want := http.Header{"X-User-Api-Key": {"uak"}, "X-Org-Id": {"org"}, "X-Project-Id": {"prj"}, "X-Request-Id": {"rid"},
		"Authorization": {"Bearer nope"}, "Cookie": {"c=1"}}
	if got := e.lister.calls()[0].Header; !reflect.DeepEqual(got, want) {
		t.Fatalf("lookup header %v, want %v", got, want)
	}
}

func TestDuplicate409(t *testing.T) {
	for _, tc := range []struct{ name, path, body string }{
		{"link v3", "/api/v3/connected_accounts/link", `{"user_id":"u1","auth_config_id":"ac_1"}`},
		{"link v3.1", "/api/v3.1/connected_accounts/link", `{"user_id":"u1","auth_config_id":"ac_1"}`},
		{"legacy create", "/api/v3/connected_accounts", `{"auth_config":{"id":"ac_1"},"connection":{"user_id":"u1"}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, intercept.Config{})
			e.lister.ignoreFilter = true // the guard must not trust the filter
			e.up.add(active("ca_a", "u1", "ac_1"))
			e.up.add(upstream.Account{ID: "ca_i", Status: "INITIATED", UserID: "u1", AuthConfigID: "ac_1"})
			e.up.add(active("ca_other_user", "u2", "ac_1"))
			e.up.add(active("ca_other_ac", "u1", "ac_2"))
			e.up.add(upstream.Account{ID: "ca_f", Status: "FAILED", UserID: "u1", AuthConfigID: "ac_1"})
			e.up.add(active("ca_b", "u1", "ac_1"))
			a := e.do(t, "POST", tc.path, []byte(tc.body), "X-Request-Id", "rid-409")
			if a.Status != http.StatusConflict {
				t.Fatalf("status %d: %s", a.Status, a.Body)
			}
			if ct := a.Header.Get("Content-Type"); ct != "application/json" {
				t.Fatalf("Content-Type %q", ct)
			}
			if v := a.Header.Get("X-Should-Retry"); v != "false" {
				t.Fatalf("x-should-retry %q, want false", v)
			}
			env := a.envelope(t)
			if env["slug"] != apierror.SlugMultipleAccounts || env["code"] != float64(apierror.CodeMultipleAccounts) || env["status"] != float64(409) {
				t.Fatalf("envelope %v", env)
			}
			if env["request_id"] != "rid-409" || a.Header.Get("X-Request-Id") != "rid-409" {
				t.Fatalf("request id: body %v header %q", env["request_id"], a.Header.Get("X-Request-Id"))
			}
			msg, _ := env["message"].(string)
			if !strings.Contains(msg, "u1") || !strings.Contains(msg, "ac_1") {
				t.Fatalf("message %q does not name the user and auth config", msg)
			}
			if fix, _ := env["suggested_fix"].(string); !strings.Contains(fix, "X-Composio-Allow-Multiple: true") {
				t.Fatalf("suggested_fix %q does not name the header", fix)
			}
			if ids := env["existing_connected_account_ids"]; !reflect.DeepEqual(ids, []any{"ca_a", "ca_b"}) {
				t.Fatalf("existing ids %v", ids)
			}
			if errs, ok := env["errors"].([]any); !ok || len(errs) != 0 {
				t.Fatalf("errors %v, want []", env["errors"])
			}
			if n := len(e.up.requests()); n != 0 {
				t.Fatalf("%d requests reached the upstream", n)
			}
			if sc := <-e.scopes; sc.Route != "link" && sc.Route != "create" || sc.Decision != intercept.DecisionRejectedDuplicate || sc.Reason != intercept.ReasonActiveAccount {
				t.Fatalf("scope decision %q reason %q", sc.Decision, sc.Reason)
			}
		})
	}
}

func TestOtherUsersDoNotBlock(t *testing.T) {
	e := newEnv(t, intercept.Config{})
	e.lister.ignoreFilter = true
	e.up.add(active("ca_1", "u2", "ac"))
	e.up.add(active("ca_2", "u", "ac_other"))
	if a := e.link(t, "u", "ac"); a.Status != http.StatusCreated {
		t.Fatalf("status %d: %s", a.Status, a.Body)
	}
}

func TestOptInStripped(t *testing.T) {
	tests := []struct {
		name      string
		cfg       intercept.Config
		path      string
		body      string
		hdr       []string
		wantCode  int
		wantPath  string // path?query the upstream sees
		wantBody  string
		wantLists int
	}{
		{"header", intercept.Config{}, "/api/v3/connected_accounts/link",
			`{"user_id":"u","auth_config_id":"ac"}`, []string{"X-Composio-Allow-Multiple", "true"},
			201, "/api/v3/connected_accounts/link", `{"user_id":"u","auth_config_id":"ac"}`, 0},
		{"header any case", intercept.Config{}, "/api/v3/connected_accounts/link",
			`{"user_id":"u","auth_config_id":"ac"}`, []string{"x-composio-allow-multiple", "TRUE"},
			201, "/api/v3/connected_accounts/link", `{"user_id":"u","auth_config_id":"ac"}`, 0},
		{"query", intercept.Config{}, "/api/v3/connected_accounts/link?a=1&allow_multiple=true&b=%20x",
			`{"user_id":"u","auth_config_id":"ac"}`, nil,
			201, "/api/v3/connected_accounts/link?a=1&b=%20x", `{"user_id":"u","auth_config_id":"ac"}`, 0},
		{"query encoded name", intercept.Config{}, "/api/v3/connected_accounts/link?allow%5Fmultiple=true",
			`{"user_id":"u","auth_config_id":"ac"}`, nil,
			201, "/api/v3/connected_accounts/link", `{"user_id":"u","auth_config_id":"ac"}`, 0},
		{"body last member", intercept.Config{}, "/api/v3/connected_accounts/link",
			`{"user_id":"u", "auth_config_id":"ac" , "allow_multiple": true }`, nil,
			201, "/api/v3/connected_accounts/link", `{"user_id":"u", "auth_config_id":"ac"   }`, 0},
		{"body first member", intercept.Config{}, "/api/v3/connected_accounts/link",
			`{"allow_multiple":true,"user_id":"u","auth_config_id":"ac"}`, nil,
			201, "/api/v3/connected_accounts/link", `{"user_id":"u","auth_config_id":"ac"}`, 0},
		{"body middle member, escaped name", intercept.Config{}, "/api/v3/connected_accounts/link",
			"{\"user_id\":\"u\",\n  \"allow\\u005fmultiple\" :true,\n  \"auth_config_id\":\"ac\"}", nil,
			201, "/api/v3/connected_accounts/link", "{\"user_id\":\"u\",\n  \n  \"auth_config_id\":\"ac\"}", 0},
		{"body false is stripped and checked", intercept.Config{}, "/api/v3/connected_accounts/link",
			`{"user_id":"u","auth_config_id":"ac3","allow_multiple":false}`, nil,
			201, "/api/v3/connected_accounts/link", `{"user_id":"u","auth_config_id":"ac3"}`, 1},
		{"legacy create body", intercept.Config{}, "/api/v3/connected_accounts",
			`{"auth_config":{"id":"ac"},"allow_multiple":true,"connection":{"user_id":"u"}}`, nil,
			201, "/api/v3/connected_accounts", `{"auth_config":{"id":"ac"},"connection":{"user_id":"u"}}`, 0},
		{"never: flag ignored, still stripped", intercept.Config{AllowMultiple: "never"},
			"/api/v3/connected_accounts/link?allow_multiple=true",
			`{"user_id":"u","auth_config_id":"ac","allow_multiple":true}`, []string{"X-Composio-Allow-Multiple", "true"},
			409, "", "", 1},
		{"auth config always multiple", intercept.Config{MultipleAuthConfigs: []string{"ac"}}, "/api/v3/connected_accounts/link",
			`{"user_id":"u","auth_config_id":"ac"}`, nil,
			201, "/api/v3/connected_accounts/link", `{"user_id":"u","auth_config_id":"ac"}`, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.cfg)
			e.up.add(active("ca_1", "u", "ac"))
			e.up.add(active("ca_2", "u", "ac_never"))
			a := e.do(t, "POST", tc.path, []byte(tc.body), tc.hdr...)
			if a.Status != tc.wantCode {
				t.Fatalf("status %d, want %d: %s", a.Status, tc.wantCode, a.Body)
			}
			if n := len(e.lister.calls()); n != tc.wantLists {
				t.Fatalf("%d lookups, want %d", n, tc.wantLists)
			}
			reqs := e.up.requests()
			if tc.wantCode == 409 {
				if len(reqs) != 0 {
					t.Fatalf("a refused request reached the upstream")
				}
				return
			}
			if len(reqs) != 1 {
				t.Fatalf("%d requests upstream", len(reqs))
			}
			got := reqs[0]
			gotPath := got.Path
			if got.RawQuery != "" {
				gotPath += "?" + got.RawQuery
			}
			if gotPath != tc.wantPath || string(got.Body) != tc.wantBody {
				t.Fatalf("upstream got %s %q, want %s %q", gotPath, got.Body, tc.wantPath, tc.wantBody)
			}
			if got.Header.Get("Content-Length") != fmt.Sprint(len(tc.wantBody)) {
				t.Fatalf("Content-Length %q for %d bytes", got.Header.Get("Content-Length"), len(tc.wantBody))
			}
			if _, ok := got.Header["X-Composio-Allow-Multiple"]; ok {
				t.Fatal("the opt-in header reached the upstream")
			}
		})
	}
}

func TestBadInput(t *testing.T) {
	big := `{"user_id":"u","auth_config_id":"ac","pad":"` + strings.Repeat("x", 2000) + `"}`
	bomb := gz(t, []byte(`{"user_id":"u","auth_config_id":"ac","pad":"`+strings.Repeat("0", 100_000)+`"}`))
	tests := []struct {
		name   string
		path   string
		body   []byte
		hdr    []string
		status int
		slug   string
		reason string
	}{
		{"not json", "", []byte(`{"user_id":"u",`), nil, 400, apierror.SlugBadRequest, intercept.ReasonNotJSON},
		{"array", "", []byte(`[{"user_id":"u","auth_config_id":"ac"}]`), nil, 400, apierror.SlugBadRequest, intercept.ReasonNotObject},
		{"string", "", []byte(`"x"`), nil, 400, apierror.SlugBadRequest, intercept.ReasonNotObject},
		{"empty body", "", nil, nil, 400, apierror.SlugBadRequest, intercept.ReasonNotJSON},
		{"missing user_id", "", []byte(`{"auth_config_id":"ac"}`), nil, 400, apierror.SlugBadRequest, intercept.ReasonMissingMember},
		{"missing auth_config_id", "", []byte(`{"user_id":"u"}`), nil, 400, apierror.SlugBadRequest, intercept.ReasonMissingMember},
		{"user_id number", "", []byte(`{"user_id":12,"auth_config_id":"ac"}`), nil, 400, apierror.SlugBadRequest, intercept.ReasonBadMember},
		{"user_id null", "", []byte(`{"user_id":null,"auth_config_id":"ac"}`), nil, 400, apierror.SlugBadRequest, intercept.ReasonBadMember},
		{"empty auth_config_id", "", []byte(`{"user_id":"u","auth_config_id":""}`), nil, 400, apierror.SlugBadRequest, intercept.ReasonBadMember},
		{"comma in id", "", []byte(`{"user_id":"a,b","auth_config_id":"ac"}`), nil, 400, apierror.SlugBadRequest, intercept.ReasonCommaInID},
		{"escaped comma in id", "", []byte(`{"user_id":"a\u002cb","auth_config_id":"ac"}`), nil, 400, apierror.SlugBadRequest, intercept.ReasonCommaInID},
		{"lone surrogate", "", []byte(`{"user_id":"a\ud800","auth_config_id":"ac"}`), nil, 400, apierror.SlugBadRequest, intercept.ReasonBadText},
		{"invalid utf-8", "", []byte("{\"user_id\":\"a\xff\",\"auth_config_id\":\"ac\"}"), nil, 400, apierror.SlugBadRequest, intercept.ReasonBadText},
		{"duplicate user_id", "", []byte(`{"user_id":"a","auth_config_id":"ac","user_id":"b"}`), nil, 400, apierror.SlugBadRequest, intercept.ReasonDuplicateMember},
		{"duplicate after unescaping", "", []byte(`{"user_id":"a","auth_config_id":"ac","user\u005fid":"b"}`), nil, 400, apierror.SlugBadRequest, intercept.ReasonDuplicateMember},
		{"duplicate by case", "", []byte(`{"user_id":"a","auth_config_id":"ac","USER_ID":"b"}`), nil, 400, apierror.SlugBadRequest, intercept.ReasonDuplicateMember},
		{"duplicate account_type", "", []byte(`{"user_id":"a","auth_config_id":"ac","experimental":{"account_type":"PRIVATE","account_type":"SHARED"}}`), nil, 400, apierror.SlugBadRequest, intercept.ReasonDuplicateMember},
		{"duplicate flag", "", []byte(`{"user_id":"a","auth_config_id":"ac","allow_multiple":false,"allow_multiple":true}`), nil, 400, apierror.SlugBadRequest, intercept.ReasonDuplicateMember},
		{"bad account_type", "", []byte(`{"user_id":"a","auth_config_id":"ac","experimental":{"account_type":"shared"}}`), nil, 400, apierror.SlugBadRequest, intercept.ReasonBadAccountType},
		{"experimental not object", "", []byte(`{"user_id":"a","auth_config_id":"ac","experimental":"SHARED"}`), nil, 400, apierror.SlugBadRequest, intercept.ReasonBadMember},
		{"allow_multiple not boolean", "", []byte(`{"user_id":"a","auth_config_id":"ac","allow_multiple":"true"}`), nil, 400, apierror.SlugBadRequest, intercept.ReasonBadAllowMultiple},
		{"legacy: auth_config missing", "/api/v3/connected_accounts", []byte(`{"connection":{"user_id":"u"}}`), nil, 400, apierror.SlugBadRequest, intercept.ReasonMissingMember},
		{"legacy: auth_config.id missing", "/api/v3/connected_accounts", []byte(`{"auth_config":{}}`), nil, 400, apierror.SlugBadRequest, intercept.ReasonMissingMember},
		{"legacy: auth_config string", "/api/v3/connected_accounts", []byte(`{"auth_config":"ac"}`), nil, 400, apierror.SlugBadRequest, intercept.ReasonBadMember},
		{"legacy: user_id number", "/api/v3/connected_accounts", []byte(`{"auth_config":{"id":"ac"},"connection":{"user_id":1}}`), nil, 400, apierror.SlugBadRequest, intercept.ReasonBadMember},
		{"legacy: duplicate id", "/api/v3/connected_accounts", []byte(`{"auth_config":{"id":"ac","id":"ac2"}}`), nil, 400, apierror.SlugBadRequest, intercept.ReasonDuplicateMember},
		{"legacy: duplicate connection", "/api/v3/connected_accounts", []byte(`{"auth_config":{"id":"ac"},"connection":{},"connection":{"user_id":"x"}}`), nil, 400, apierror.SlugBadRequest, intercept.ReasonDuplicateMember},
		{"too large", "", []byte(big), nil, 413, apierror.SlugBodyTooLarge, intercept.ReasonBodyTooLarge},
		{"gzip bomb", "", bomb, []string{"Content-Encoding", "gzip"}, 413, apierror.SlugBodyTooLarge, intercept.ReasonBodyTooLarge},
		{"bad gzip", "", []byte(`{"user_id":"u","auth_config_id":"ac"}`), []string{"Content-Encoding", "gzip"}, 400, apierror.SlugBadRequest, intercept.ReasonBadGzip},
		{"brotli", "", []byte(`{"user_id":"u","auth_config_id":"ac"}`), []string{"Content-Encoding", "br"}, 400, apierror.SlugUnsupportedEnc, intercept.ReasonUnsupportedEnc},
		{"gzip twice", "", gz(t, gz(t, []byte(`{}`))), []string{"Content-Encoding", "gzip, gzip"}, 400, apierror.SlugUnsupportedEnc, intercept.ReasonUnsupportedEnc},
		{"flag in gzip body", "", gz(t, []byte(`{"user_id":"u","auth_config_id":"ac","allow_multiple":true}`)), []string{"Content-Encoding", "gzip"}, 400, apierror.SlugBadRequest, intercept.ReasonFlagInCompressed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, intercept.Config{MaxBodyBytes: 1024})
			path := tc.path
			if path == "" {
				path = "/api/v3.1/connected_accounts/link"
			}
			a := e.do(t, "POST", path, tc.body, append([]string{"X-Request-Id", "rid-bad"}, tc.hdr...)...)
			if a.Status != tc.status {
				t.Fatalf("status %d, want %d: %s", a.Status, tc.status, a.Body)
			}
			env := a.envelope(t)
			if env["slug"] != tc.slug || env["request_id"] != "rid-bad" || a.Header.Get("X-Request-Id") != "rid-bad" {
				t.Fatalf("envelope %v", env)
			}
			if tc.reason == intercept.ReasonFlagInCompressed {
				if fix, _ := env["suggested_fix"].(string); !strings.Contains(fix, "X-Composio-Allow-Multiple") {
					t.Fatalf("suggested_fix %q does not name the header", fix)
				}
			}
			if n := len(e.up.requests()); n != 0 {
				t.Fatalf("a refused request reached the upstream")
			}
			if n := len(e.lister.calls()); n != 0 {
				t.Fatalf("a refused request was looked up")
			}
			ds := e.decisions()
			if len(ds) != 1 || ds[0].ContextMap()["decision"] != "invalid_request" || ds[0].ContextMap()["reason"] != tc.reason {
				t.Fatalf("decision log %v, want invalid_request/%s", ds, tc.reason)
			}
		})
	}
}

func TestContentTypeNotRequired(t *testing.T) {
	for _, ct := range []string{"", "text/plain", "application/json; charset=utf-8", "application/vnd.api+json"} {
		e := newEnv(t, intercept.Config{})
		e.up.add(active("ca_1", "u", "ac"))
		if a := e.link(t, "u", "ac", "Content-Type", ct); a.Status != http.StatusConflict {
			t.Fatalf("Content-Type %q: status %d, want the check to run (409)", ct, a.Status)
		}
	}
}

// A body typed as a form is refused before any lookup: a server that
// honours the type would read other fields than the guard checked (an
// attacker's-eye review: {"x":"&user_id=victim&…","user_id":"checked"}).
func TestFormBodyRefused(t *testing.T) {
	for _, ct := range []string{"application/x-www-form-urlencoded", "Application/X-WWW-Form-Urlencoded; charset=utf-8", "multipart/form-data; boundary=x"} {
		e := newEnv(t, intercept.Config{})
		body := []byte(`{"x":"&user_id=u_victim&auth_config_id=ac&y=","user_id":"u_checked","auth_config_id":"ac"}`)
		a := e.do(t, "POST", "/api/v3/connected_accounts/link", body, "Content-Type", ct)
		if a.Status != http.StatusBadRequest || !strings.Contains(string(a.Body), "application/json") {
			t.Fatalf("Content-Type %q: status %d %s, want 400 naming application/json", ct, a.Status, a.Body)
		}
		if len(e.lister.calls()) != 0 || len(e.up.requests()) != 0 {
			t.Fatalf("Content-Type %q: looked up or forwarded", ct)
		}
	}
}

func TestGzipBody(t *testing.T) {
	e := newEnv(t, intercept.Config{})
	plain := []byte(`{"user_id":"u","auth_config_id":"ac"}`)
	sent := gz(t, plain)
	a := e.do(t, "POST", "/api/v3/connected_accounts/link", sent, "Content-Encoding", "gzip")
	if a.Status != http.StatusCreated {
		t.Fatalf("status %d: %s", a.Status, a.Body)
	}
	if q := e.lister.calls(); len(q) != 1 || q[0].UserID != "u" || q[0].AuthConfigID != "ac" {
		t.Fatalf("lookup %+v", q)
	}
	got := e.up.requests()[0]
	if !bytes.Equal(got.Body, sent) || got.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("the gzip body was changed on the way: %q", got.Body)
	}
	e.up.add(active("ca_x", "u", "ac"))
	if a := e.do(t, "POST", "/api/v3/connected_accounts/link", sent, "Content-Encoding", "gzip"); a.Status != http.StatusConflict {
		t.Fatalf("gzip duplicate: status %d", a.Status)
	}
}

func TestCanonicalPaths(t *testing.T) {
	tests := []struct {
		method, path string
		guarded      bool
	}{
		{"POST", "/api/v3.1/connected_accounts/link/", true},
		{"POST", "//api/v3//connected_accounts/./link", true},
		{"POST", "/api/v3/connected_accounts/%6Cink", true},
		{"POST", "/api/v3/connected_accounts%2Flink", true},
		{"POST", "/api/v3/x/../connected_accounts/link", true},
		{"POST", "/API/V3/Connected_Accounts/LINK", true},
		{"POST", "/api/v3.7/connected_accounts/", true},
		{"GET", "/api/v3/connected_accounts/link", false},
		{"PUT", "/api/v3/connected_accounts/link", false},
		{"POST", "/api/v3.x/connected_accounts/link", false},
		{"POST", "/api/v3./connected_accounts/link", false},
		{"POST", "/api/v2/connected_accounts/link", false},
		{"POST", "/api/v31/connected_accounts/link", false},
		{"POST", "/api/v3/connected_accounts/link/extra", false},
		{"POST", "/api/v3/tool_router/session/s1/execute", false},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			e := newEnv(t, intercept.Config{})
			e.up.add(active("ca_1", "u", "ac"))
			body := []byte(`{"user_id":"u","auth_config_id":"ac","auth_config":{"id":"ac"},"connection":{"user_id":"u"}}`)
			a := e.do(t, tc.method, tc.path, body)
			if tc.guarded {
				if a.Status != http.StatusConflict || len(e.up.requests()) != 0 {
					t.Fatalf("status %d: not guarded", a.Status)
				}
				return
			}
			reqs := e.up.requests()
			if len(reqs) != 1 || len(e.lister.calls()) != 0 {
				t.Fatalf("status %d, %d forwarded, %d lookups: want a plain pass-through", a.Status, len(reqs), len(e.lister.calls()))
			}
		})
	}
}

func TestForwardedPathAsSent(t *testing.T) {
	e := newEnv(t, intercept.Config{})
	a := e.do(t, "POST", "/api/v3.1/connected_accounts/link/", []byte(`{"user_id":"u","auth_config_id":"ac"}`))
	if a.Status != http.StatusCreated {
		t.Fatalf("status %d", a.Status)
	}
	if p := e.up.requests()[0].Path; p != "/api/v3.1/connected_accounts/link/" {
		t.Fatalf("forwarded path %q, want it as sent", p)
	}
	if len(e.lister.calls()) != 1 {
		t.Fatal("not checked")
	}
}

func TestConcurrentLinksCreateOne(t *testing.T) {
	e := newEnv(t, intercept.Config{})
	e.lister.delay = 5 * time.Millisecond // widens the window a missing lock would leave open
	const n = 50
	var wg sync.WaitGroup
	answers := make([]answer, 2*n)
	for i := range 2 * n {
		user := "u1"
		if i%2 == 1 {
			user = "u2" // another key: must not be blocked by u1
		}
		wg.Go(func() { answers[i] = e.link(t, user, "ac") })
	}
	wg.Wait()
	if got := e.up.links.Load(); got != 2 {
		t.Fatalf("%d links reached the upstream, want 2 (one per user)", got)
	}
	redirect := map[string]string{}
	replayed := 0
	for i, a := range answers {
		if a.Status != http.StatusCreated {
			t.Fatalf("answer %d: status %d: %s", i, a.Status, a.Body)
		}
		user := []string{"u1", "u2"}[i%2]
		if prev, ok := redirect[user]; ok && prev != string(a.Body) {
			t.Fatalf("user %s got two different link answers:\n%s\n%s", user, prev, a.Body)
		}
		redirect[user] = string(a.Body)
		if a.Header.Get("X-Composio-Guard") == "replayed" {
			replayed++
		}
	}
	if replayed != 2*n-2 {
		t.Fatalf("%d answers replayed, want %d", replayed, 2*n-2)
	}
}

func TestPendingLinks(t *testing.T) {
	t.Run("replay", func(t *testing.T) {
		e := newEnv(t, intercept.Config{})
		first := e.link(t, "u", "ac")
		second := e.link(t, "u", "ac", "X-Request-Id", "rid-2")
		if second.Status != first.Status || !bytes.Equal(second.Body, first.Body) {
			t.Fatalf("replay %d %s, want %d %s", second.Status, second.Body, first.Status, first.Body)
		}
		if second.Header.Get("X-Composio-Guard") != "replayed" || second.Header.Get("X-Request-Id") != "rid-2" ||
			second.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("replay headers %v", second.Header)
		}
		if e.up.links.Load() != 1 {
			t.Fatalf("%d links upstream, want 1", e.up.links.Load())
		}
		if n := counter(e.m.Decisions.WithLabelValues("link", "replayed_pending", "enforce")); n != 1 {
			t.Fatalf("replayed_pending counted %v times", n)
		}
	})
	t.Run("replay of a gzip answer", func(t *testing.T) {
		e := newEnv(t, intercept.Config{})
		e.up.gzipOut = true
		first := e.link(t, "u", "ac") // the client transport decompresses
		second := e.link(t, "u", "ac")
		if second.Header.Get("X-Composio-Guard") != "replayed" || !bytes.Equal(second.Body, first.Body) {
			t.Fatalf("replay %s, want %s", second.Body, first.Body)
		}
	})
	t.Run("reject", func(t *testing.T) {
		e := newEnv(t, intercept.Config{PendingAction: "reject"})
		e.link(t, "u", "ac")
		a := e.link(t, "u", "ac", "X-Request-Id", "rid-p")
		if a.Status != http.StatusConflict || a.Header.Get("X-Should-Retry") != "false" {
			t.Fatalf("status %d, x-should-retry %q", a.Status, a.Header.Get("X-Should-Retry"))
		}
		env := a.envelope(t)
		if env["slug"] != apierror.SlugLinkPending || env["code"] != float64(apierror.CodeLinkPending) || env["request_id"] != "rid-p" {
			t.Fatalf("envelope %v", env)
		}
		if e.up.links.Load() != 1 {
			t.Fatalf("%d links upstream, want 1", e.up.links.Load())
		}
	})
	t.Run("off", func(t *testing.T) {
		e := newEnv(t, intercept.Config{PendingAction: "off"})
		e.link(t, "u", "ac")
		if a := e.link(t, "u", "ac"); a.Header.Get("X-Composio-Guard") != "" || e.up.links.Load() != 2 {
			t.Fatalf("pending off: %d links upstream, want 2", e.up.links.Load())
		}
	})
	t.Run("opt-in bypasses the lease", func(t *testing.T) {
		e := newEnv(t, intercept.Config{})
		e.link(t, "u", "ac")
		if a := e.link(t, "u", "ac", "X-Composio-Allow-Multiple", "true"); a.Header.Get("X-Composio-Guard") != "" || e.up.links.Load() != 2 {
			t.Fatalf("opt-in was replayed")
		}
	})
	t.Run("lease dropped when the account is no longer INITIATED", func(t *testing.T) {
		e := newEnv(t, intercept.Config{})
		e.link(t, "u", "ac")
		e.up.setStatus("ca_1", "EXPIRED")
		a := e.link(t, "u", "ac")
		if a.Header.Get("X-Composio-Guard") != "" || e.up.links.Load() != 2 {
			t.Fatalf("stale lease replayed")
		}
		if n := counter(e.m.Leases.WithLabelValues("stale")); n != 1 {
			t.Fatalf("stale leases %v, want 1", n)
		}
		// The new link's lease took its place.
		if a := e.link(t, "u", "ac"); a.Header.Get("X-Composio-Guard") != "replayed" || !strings.Contains(string(a.Body), "ca_2") {
			t.Fatalf("second link not replayed: %s", a.Body)
		}
	})
	t.Run("account turned ACTIVE: 409", func(t *testing.T) {
		e := newEnv(t, intercept.Config{})
		e.link(t, "u", "ac")
		e.up.setStatus("ca_1", "ACTIVE")
		if a := e.link(t, "u", "ac"); a.Status != http.StatusConflict {
			t.Fatalf("status %d, want 409", a.Status)
		}
	})
	t.Run("INITIATED without a lease blocks while it lives", func(t *testing.T) {
		e := newEnv(t, intercept.Config{PendingMaxTTL: 15 * time.Minute})
		// Made with another credential, on another replica or around the proxy.
		e.up.add(upstream.Account{ID: "ca_old", Status: "INITIATED", UserID: "u", AuthConfigID: "ac", CreatedAt: time.Now().Add(-time.Minute)})
		a := e.link(t, "u", "ac")
		if a.Status != http.StatusConflict || a.Header.Get("X-Should-Retry") != "false" || e.up.links.Load() != 0 {
			t.Fatalf("status %d, x-should-retry %q, %d links upstream", a.Status, a.Header.Get("X-Should-Retry"), e.up.links.Load())
		}
		env := a.envelope(t)
		if env["slug"] != "ConnectedAccount_LinkPending" || fmt.Sprint(env["existing_connected_account_ids"]) != "[ca_old]" {
			t.Fatalf("envelope %v", env)
		}
		if s := <-e.scopes; s.Reason != intercept.ReasonPendingUntracked {
			t.Fatalf("reason %q", s.Reason)
		}
		// The opt-in still creates another.
		if a := e.link(t, "u", "ac", "X-Composio-Allow-Multiple", "true"); a.Status != http.StatusCreated {
			t.Fatalf("opt-in: status %d", a.Status)
		}
	})
	t.Run("INITIATED without created_at counts as live", func(t *testing.T) {
		e := newEnv(t, intercept.Config{})
		e.up.add(upstream.Account{ID: "ca_old", Status: "INITIATED", UserID: "u", AuthConfigID: "ac"})
		if a := e.link(t, "u", "ac"); a.Status != http.StatusConflict || e.up.links.Load() != 0 {
			t.Fatalf("status %d, %d links", a.Status, e.up.links.Load())
		}
	})
	t.Run("INITIATED past its lifetime does not block", func(t *testing.T) {
		e := newEnv(t, intercept.Config{PendingMaxTTL: 10 * time.Minute})
		e.up.add(upstream.Account{ID: "ca_old", Status: "INITIATED", UserID: "u", AuthConfigID: "ac", CreatedAt: time.Now().Add(-11 * time.Minute)})
		if a := e.link(t, "u", "ac"); a.Status != http.StatusCreated || e.up.links.Load() != 1 {
			t.Fatalf("status %d, %d links", a.Status, e.up.links.Load())
		}
	})
	t.Run("GUARD_PENDING_ACTION=off ignores pending links", func(t *testing.T) {
		e := newEnv(t, intercept.Config{PendingAction: intercept.PendingOff})
		e.up.add(upstream.Account{ID: "ca_old", Status: "INITIATED", UserID: "u", AuthConfigID: "ac", CreatedAt: time.Now()})
		if a := e.link(t, "u", "ac"); a.Status != http.StatusCreated || e.up.links.Load() != 1 {
			t.Fatalf("status %d, %d links", a.Status, e.up.links.Load())
		}
		if s := <-e.scopes; s.Reason != intercept.ReasonPendingIgnored {
			t.Fatalf("reason %q", s.Reason)
		}
	})
	t.Run("legacy create: same lease and pending rule as link", func(t *testing.T) {
		e := newEnv(t, intercept.Config{})
		body := []byte(`{"auth_config":{"id":"ac"},"connection":{"user_id":"u"}}`)
		first := e.do(t, "POST", "/api/v3/connected_accounts", body)
		again := e.do(t, "POST", "/api/v3/connected_accounts", body)
		if again.Status != first.Status || again.Header.Get("X-Composio-Guard") != "replayed" || string(again.Body) != string(first.Body) || e.up.creates.Load() != 1 {
			t.Fatalf("repeat: status %d, guard %q, %d creates upstream, want a replay of the one", again.Status, again.Header.Get("X-Composio-Guard"), e.up.creates.Load())
		}
		// A link for the same user and auth config is not a replay of a legacy create.
		if a := e.link(t, "u", "ac"); a.Status != http.StatusConflict || a.envelope(t)["slug"] != "ConnectedAccount_LinkPending" || e.up.links.Load() != 0 {
			t.Fatalf("link after create: status %d, %d links", a.Status, e.up.links.Load())
		}
	})
}

func TestFailures(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(e *env)
		opts    []envOpt
		reason  string
		closing bool
		// lock_errors_total the guard adds: only a lock wait that ran out.
		// Backend failures are the backend's to count (lock.Redis does).
		lockErrs float64
	}{
		{"lookup error", func(e *env) { e.lister.err = errors.New("list: connection refused") }, nil, intercept.ReasonLookupError, true, 0},
		{"lookup timeout", func(e *env) { e.lister.delay = 5 * time.Second }, nil, intercept.ReasonLookupTimeout, true, 0},
		{"lookup breaker open", func(e *env) { e.lister.err = fmt.Errorf("lookup: %w", upstream.ErrBreakerOpen) }, nil, intercept.ReasonLookupBreaker, true, 0},
		{"lock backend error", nil, []envOpt{withStore(brokenStore{})}, intercept.ReasonLockError, true, 0},
		{"lock not replicated", nil, []envOpt{withStore(unreplicatedStore{})}, intercept.ReasonLockUnreplicated, true, 0},
		{"lease backend error", nil, []envOpt{withStore(leaseBroken{})}, intercept.ReasonLeaseError, true, 0},
		{"lock wait timeout", nil, []envOpt{withStore(heldStore{})}, intercept.ReasonLockTimeout, true, 1},
	}
	for _, tc := range tests {
		for _, mode := range []intercept.FailureMode{"closed", "open"} {
			t.Run(tc.name+"/"+string(mode), func(t *testing.T) {
				e := newEnv(t, intercept.Config{FailureMode: mode, LookupTimeout: 50 * time.Millisecond,
					LockWait: 50 * time.Millisecond, RetryAfter: 7 * time.Second}, tc.opts...)
				if tc.setup != nil {
					tc.setup(e)
				}
				a := e.link(t, "u", "ac", "X-Request-Id", "rid-f")
				if n := familySum(t, e, "composio_guard_lock_errors_total"); n != tc.lockErrs {
					t.Fatalf("lock_errors_total = %v, want %v", n, tc.lockErrs)
				}
				if tc.lockErrs > 0 && counter(e.m.LockErrors.WithLabelValues("redis", "timeout")) != tc.lockErrs {
					t.Fatal("lock wait timeout not counted as {backend=redis,reason=timeout}")
				}
				ds := e.decisions()
				if len(ds) != 1 || ds[0].ContextMap()["reason"] != tc.reason || ds[0].Level.String() != "warn" {
					t.Fatalf("decision log %v, want one WARN line with reason %s", ds, tc.reason)
				}
				if mode == "open" {
					if a.Status != http.StatusCreated || len(e.up.requests()) != 1 {
						t.Fatalf("fail-open: status %d, %d forwarded", a.Status, len(e.up.requests()))
					}
					if ds[0].ContextMap()["decision"] != "failed_open" || counter(e.m.Decisions.WithLabelValues("link", "failed_open", "enforce")) != 1 {
						t.Fatal("failed_open not recorded")
					}
					return
				}
				if a.Status != http.StatusServiceUnavailable || len(e.up.requests()) != 0 {
					t.Fatalf("fail-closed: status %d, %d forwarded", a.Status, len(e.up.requests()))
				}
				if a.Header.Get("Retry-After") != "7" || a.Header.Get("X-Should-Retry") != "" {
					t.Fatalf("Retry-After %q, X-Should-Retry %q", a.Header.Get("Retry-After"), a.Header.Get("X-Should-Retry"))
				}
				env := a.envelope(t)
				if env["slug"] != apierror.SlugGuardUnavailable || env["request_id"] != "rid-f" || env["status"] != float64(503) {
					t.Fatalf("envelope %v", env)
				}
				if strings.Contains(string(a.Body), "connection refused") || strings.Contains(string(a.Body), "backend down") {
					t.Fatalf("internal error text in the answer: %s", a.Body)
				}
			})
		}
	}
}

func TestLookupRefusedPassedBack(t *testing.T) {
	for _, code := range []int{401, 403, 429} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			e := newEnv(t, intercept.Config{})
			body := []byte(fmt.Sprintf(`{"error":{"message":"upstream says %d","status":%d}}`, code, code))
			e.lister.err = fmt.Errorf("list: %w", &upstream.StatusError{StatusCode: code, Body: body, Header: http.Header{
				"Content-Type": {"application/json; charset=utf-8"}, "Retry-After": {"30"},
				"X-Ratelimit-Remaining": {"0"}, "X-Ratelimit": {"2000"},
			}})
			a := e.link(t, "u", "ac", "X-Request-Id", "rid-r")
			if a.Status != code || !bytes.Equal(a.Body, body) {
				t.Fatalf("got %d %s", a.Status, a.Body)
			}
			for k, v := range map[string]string{"Content-Type": "application/json; charset=utf-8", "Retry-After": "30",
				"X-Ratelimit-Remaining": "0", "X-Ratelimit": "2000", "X-Request-Id": "rid-r"} {
				if a.Header.Get(k) != v {
					t.Fatalf("header %s = %q, want %q", k, a.Header.Get(k), v)
				}
			}
			if len(e.up.requests()) != 0 {
				t.Fatal("forwarded after a refused lookup")
			}
		})
	}
}

func TestShadow(t *testing.T) {
	e := newEnv(t, intercept.Config{Mode: "shadow", MaxBodyBytes: 64})
	e.up.add(active("ca_1", "u", "ac"))
	a := e.do(t, "POST", "/api/v3/connected_accounts/link?allow_multiple=false", []byte(`{"user_id":"u","auth_config_id":"ac"}`))
	if a.Status != http.StatusCreated {
		t.Fatalf("shadow: status %d, want the upstream's 201", a.Status)
	}
	if n := counter(e.m.Decisions.WithLabelValues("link", "rejected_duplicate", "shadow")); n != 1 {
		t.Fatalf("shadow duplicate counted %v", n)
	}
	if q := e.up.requests()[0].RawQuery; q != "" {
		t.Fatalf("flag reached the upstream in shadow mode: %q", q)
	}
	// Invalid and oversized bodies are forwarded whole, as sent.
	for _, body := range [][]byte{[]byte(`{"user_id":1}`), []byte(`{"user_id":"u","pad":"` + strings.Repeat("y", 500) + `"}`)} {
		a = e.do(t, "POST", "/api/v3/connected_accounts/link", body)
		reqs := e.up.requests()
		if a.Status != http.StatusCreated || !bytes.Equal(reqs[len(reqs)-1].Body, body) {
			t.Fatalf("shadow invalid: status %d, upstream got %q", a.Status, reqs[len(reqs)-1].Body)
		}
	}
	if n := counter(e.m.Decisions.WithLabelValues("link", "invalid_request", "shadow")); n != 2 {
		t.Fatalf("shadow invalid counted %v", n)
	}
	// Failures are decided but forwarded.
	e.lister.err = errors.New("down")
	if a := e.link(t, "u2", "ac"); a.Status != http.StatusCreated {
		t.Fatalf("shadow failure: status %d", a.Status)
	}
}

func TestModeOff(t *testing.T) {
	e := newEnv(t, intercept.Config{Mode: "off"})
	e.up.add(active("ca_1", "u", "ac"))
	body := []byte(`{"user_id":"u","auth_config_id":"ac","allow_multiple":true}`)
	a := e.do(t, "POST", "/api/v3/connected_accounts/link", body)
	if a.Status != http.StatusCreated || len(e.lister.calls()) != 0 {
		t.Fatalf("off: status %d, %d lookups", a.Status, len(e.lister.calls()))
	}
	if got := e.up.requests()[0].Body; !bytes.Equal(got, body) {
		t.Fatalf("off changed the body: %q", got)
	}
	if n := counter(e.m.Decisions.WithLabelValues("link", "off", "off")); n != 1 {
		t.Fatalf("off counted %v", n)
	}
}

func TestDecisionLogs(t *testing.T) {
	e := newEnv(t, intercept.Config{})
	e.up.add(active("ca_1", "u", "ac"))
	e.link(t, "u", "ac", "X-Request-Id", "rid-log", "x-api-key", "", "x-org-api-key", "org_SECRET_key")
	// The access line carries the decision (the scope is what it reads).
	if sc := <-e.scopes; sc != (seenScope{Route: "link", Decision: "rejected_duplicate", Reason: intercept.ReasonActiveAccount, Mode: "enforce"}) {
		t.Fatalf("scope %+v", sc)
	}
	// Its own line is DEBUG (only failures are WARN).
	ds := e.decisions()
	if len(ds) != 1 || ds[0].Level.String() != "debug" {
		t.Fatalf("decision logs %v", ds)
	}
	f := ds[0].ContextMap()
	for k, v := range map[string]any{"request_id": "rid-log", "route": "link", "decision": "rejected_duplicate", "reason": intercept.ReasonActiveAccount} {
		if f[k] != v {
			t.Fatalf("log field %s = %v, want %v", k, f[k], v)
		}
	}
	if _, ok := f["lookup_duration"]; !ok {
		t.Fatal("no lookup_duration")
	}
	for _, entry := range e.logs.All() {
		line := fmt.Sprint(entry.Message, entry.ContextMap())
		if strings.Contains(line, apiKey) || strings.Contains(line, "org_SECRET_key") {
			t.Fatalf("a credential reached the log: %s", line)
		}
	}
}

func TestServeHTTPDirect(t *testing.T) {
	// Guard used without Router: it classifies by itself.
	fwd := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
	l := &fakeLister{f: &fakeComposio{}}
	l.f.add(active("ca_1", "u", "ac"))
	g := intercept.NewGuard(intercept.Config{}, l, lock.NewMemory(), fwd, nil)
	for _, tc := range []struct {
		method, path string
		want         int
	}{{"POST", "/api/v3/connected_accounts/link", 409}, {"GET", "/api/v3/connected_accounts", 204}} {
		rec := httptest.NewRecorder()
		req, _ := http.NewRequest(tc.method, "http://x"+tc.path, strings.NewReader(`{"user_id":"u","auth_config_id":"ac"}`))
		g.ServeHTTP(rec, req)
		if rec.Code != tc.want {
			t.Fatalf("%s %s: %d, want %d", tc.method, tc.path, rec.Code, tc.want)
		}
	}
}
