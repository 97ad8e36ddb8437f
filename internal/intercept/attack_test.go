package intercept_test

// The ways around the guard a caller would try, each with the protection
// that holds it (docs/security.md names these tests).

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/composio-guard/composio-guard/internal/intercept"
	"github.com/composio-guard/composio-guard/internal/upstream"
)

// doRaw sends a request with exactly the given header (repeats included;
// nothing added but Content-Type when absent).
func (e *env) doRaw(t *testing.T, method, path string, body []byte, h http.Header) answer {
	t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body == nil {
		req.Body = http.NoBody
	}
	req.Header = h
	if req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{res.StatusCode, res.Header, b}
}

// Class 1: one identity per request.
func TestCredentialRefusedWhenAmbiguous(t *testing.T) {
	for _, tc := range []struct {
		name   string
		h      http.Header
		reason string
	}{
		{"key sent twice", http.Header{"X-Api-Key": {"k1", "k2"}}, intercept.ReasonCredentialTwice},
		{"same key sent twice", http.Header{"X-Api-Key": {"k1", "k1"}}, intercept.ReasonCredentialTwice},
		{"project selector twice", http.Header{"X-User-Api-Key": {"u"}, "X-Project-Id": {"p1", "p2"}}, intercept.ReasonCredentialTwice},
		{"project key and user key", http.Header{"X-Api-Key": {"k1"}, "X-User-Api-Key": {"u"}}, intercept.ReasonCredentialSchemes},
		{"project key and org key", http.Header{"X-Api-Key": {"k1"}, "X-Org-Api-Key": {"o"}}, intercept.ReasonCredentialSchemes},
		{"underscore spelling", http.Header{"X-Api-Key": {"k1"}, "X_api_key": {"k2"}}, intercept.ReasonCredentialSpelling},
		{"underscore spelling alone", http.Header{"X_api_key": {"k2"}}, intercept.ReasonCredentialSpelling},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, intercept.Config{})
			a := e.doRaw(t, "POST", "/api/v3.1/connected_accounts/link", linkBody("u", "ac"), tc.h)
			if a.Status != http.StatusBadRequest || a.Header.Get("X-Should-Retry") != "false" {
				t.Fatalf("status %d: %s", a.Status, a.Body)
			}
			if env := a.envelope(t); env["slug"] != "ComposioGuard_BadRequest" {
				t.Fatalf("envelope %v", env)
			}
			if len(e.lister.calls()) != 0 || len(e.up.requests()) != 0 {
				t.Fatalf("%d lookups, %d forwards: want none", len(e.lister.calls()), len(e.up.requests()))
			}
			if s := <-e.scopes; s.Reason != tc.reason {
				t.Fatalf("reason %q, want %q", s.Reason, tc.reason)
			}
			for _, v := range []string{"k1", "k2"} {
				if strings.Contains(string(a.Body), `"`+v+`"`) {
					t.Fatalf("the answer echoes a credential: %s", a.Body)
				}
			}
		})
	}
}

// The lookup and the forward carry one identity: a header the forward drops
// (named in Connection) is not in the lookup either, and an empty
// credential header is absent from both.
func TestLookupAndForwardCarryOneIdentity(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    http.Header
		want http.Header // the credential headers both must carry
	}{
		{"Connection names a selector", http.Header{"X-User-Api-Key": {"u"}, "X-Project-Id": {"p1"}, "Connection": {"x-project-id"}},
			http.Header{"X-User-Api-Key": {"u"}}},
		{"Connection names the key", http.Header{"X-Api-Key": {"k"}, "Connection": {"keep-alive, X-API-KEY"}},
			http.Header{}},
		{"empty user key beside a project key", http.Header{"X-Api-Key": {"k"}, "X-User-Api-Key": {""}},
			http.Header{"X-Api-Key": {"k"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, intercept.Config{})
			a := e.doRaw(t, "POST", "/api/v3.1/connected_accounts/link", linkBody("u", "ac"), tc.h)
			if a.Status != http.StatusCreated {
				t.Fatalf("status %d: %s", a.Status, a.Body)
			}
			lookup := e.lister.calls()[0].Header
			fwd := e.up.requests()[0].Header
			for _, name := range []string{"X-Api-Key", "X-User-Api-Key", "X-Org-Api-Key", "X-Org-Id", "X-Project-Id"} {
				if fmt.Sprint(lookup[name]) != fmt.Sprint(tc.want[name]) || fmt.Sprint(fwd[name]) != fmt.Sprint(tc.want[name]) {
					t.Fatalf("%s: lookup %q, forward %q, want %q", name, lookup[name], fwd[name], tc.want[name])
				}
			}
		})
	}
}

// Serialisation and the pending rule do not depend on the credential form:
// one key with an ignorable extra, or two keys of one project, make one
// account between them.
func TestOneAccountWhateverTheCredential(t *testing.T) {
	spellings := []http.Header{
		{"X-Api-Key": {"k1"}},
		{"X-Api-Key": {"k1"}, "X-Org-Id": {"org"}},
		{"X-Api-Key": {"k1"}, "X-Project-Id": {"prj"}},
		{"X-Api-Key": {"k1"}, "X-User-Api-Key": {""}},
		{"X-Api-Key": {"k2"}}, // a second key of the same project
		{"X-User-Api-Key": {"uk"}, "X-Org-Id": {"org"}, "X-Project-Id": {"prj"}},
	}
	e := newEnv(t, intercept.Config{})
	var wg sync.WaitGroup
	answers := make([]answer, 30)
	for i := range answers {
		wg.Go(func() {
			answers[i] = e.doRaw(t, "POST", "/api/v3.1/connected_accounts/link", linkBody("u", "ac"), spellings[i%len(spellings)].Clone())
		})
	}
	wg.Wait()
	if n := e.up.links.Load(); n != 1 {
		t.Fatalf("%d links reached Composio, want 1", n)
	}
	for i, a := range answers {
		if a.Status != http.StatusCreated && a.Status != http.StatusConflict {
			t.Fatalf("answer %d: status %d: %s", i, a.Status, a.Body)
		}
		if a.Status == http.StatusConflict && a.Header.Get("X-Should-Retry") != "false" {
			t.Fatalf("answer %d: 409 without x-should-retry: false", i)
		}
	}
}

// A replay goes only to the credential that made the link; another
// credential is refused with the pending account's id.
func TestReplayOnlyToTheSameCredential(t *testing.T) {
	e := newEnv(t, intercept.Config{})
	first := e.doRaw(t, "POST", "/api/v3.1/connected_accounts/link", linkBody("u", "ac"), http.Header{"X-Api-Key": {"k1"}})
	same := e.doRaw(t, "POST", "/api/v3.1/connected_accounts/link", linkBody("u", "ac"), http.Header{"X-Api-Key": {"k1"}, "X-Project-Id": {"ignored"}})
	if same.Header.Get("X-Composio-Guard") != "replayed" || !bytes.Equal(same.Body, first.Body) {
		t.Fatalf("same credential: status %d, guard %q", same.Status, same.Header.Get("X-Composio-Guard"))
	}
	other := e.doRaw(t, "POST", "/api/v3.1/connected_accounts/link", linkBody("u", "ac"), http.Header{"X-Api-Key": {"k2"}})
	if other.Status != http.StatusConflict || other.Header.Get("X-Composio-Guard") == "replayed" || bytes.Contains(other.Body, []byte("lt_")) {
		t.Fatalf("other credential: status %d: %s", other.Status, other.Body)
	}
	env := other.envelope(t)
	if env["slug"] != "ConnectedAccount_LinkPending" || fmt.Sprint(env["existing_connected_account_ids"]) != "[ca_1]" {
		t.Fatalf("envelope %v", env)
	}
	if e.up.links.Load() != 1 {
		t.Fatalf("%d links upstream", e.up.links.Load())
	}
}

// A repeat with another callback_url, alias or experimental block is not
// handed the first link: it is refused as pending. Whitespace alone does
// not make a request differ.
func TestReplayOnlyForTheSameRequest(t *testing.T) {
	base := `{"auth_config_id":"ac","user_id":"u","callback_url":"https://app.example/cb"}`
	for _, tc := range []struct {
		name   string
		body   string
		replay bool
	}{
		{"same bytes", base, true},
		{"other spacing", `{ "auth_config_id" : "ac", "user_id": "u", "callback_url": "https://app.example/cb" }`, true},
		{"other callback_url", `{"auth_config_id":"ac","user_id":"u","callback_url":"https://evil.example/cb"}`, false},
		{"alias added", `{"auth_config_id":"ac","user_id":"u","callback_url":"https://app.example/cb","alias":"work"}`, false},
		{"experimental added", `{"auth_config_id":"ac","user_id":"u","callback_url":"https://app.example/cb","experimental":{"acl_config_for_shared":{}}}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, intercept.Config{})
			e.do(t, "POST", "/api/v3.1/connected_accounts/link", []byte(base))
			a := e.do(t, "POST", "/api/v3.1/connected_accounts/link", []byte(tc.body))
			if replayed := a.Header.Get("X-Composio-Guard") == "replayed"; replayed != tc.replay {
				t.Fatalf("replayed %v, want %v: %d %s", replayed, tc.replay, a.Status, a.Body)
			}
			if !tc.replay {
				if a.Status != http.StatusConflict || a.envelope(t)["slug"] != "ConnectedAccount_LinkPending" {
					t.Fatalf("status %d: %s", a.Status, a.Body)
				}
			}
			if e.up.links.Load() != 1 {
				t.Fatalf("%d links upstream", e.up.links.Load())
			}
		})
	}
}

// Class 2: a caller can never switch the guard off. An answer that follows
// from the caller's input is a refusal of that request, whatever the
// failure mode; only Composio's own failure follows the failure mode.
func TestCallerCausedLookupFailureRefuses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		reason string
	}{
		{"query refused", fmt.Errorf("lookup page 1: %w", upstream.ErrQueryRefused), intercept.ReasonLookupRejected},
		{"too many pages", fmt.Errorf("%w (10 pages read)", upstream.ErrTooManyPages), intercept.ReasonTooManyAccounts},
		{"unknown item", fmt.Errorf("lookup page 1: %w", upstream.ErrUnknownItem), intercept.ReasonUnknownItem},
	} {
		for _, fm := range []intercept.FailureMode{intercept.FailOpen, intercept.FailClosed} {
			t.Run(tc.name+"/"+string(fm), func(t *testing.T) {
				e := newEnv(t, intercept.Config{FailureMode: fm})
				e.lister.err = tc.err
				a := e.link(t, "u", "ac")
				if a.Status != http.StatusUnprocessableEntity || a.Header.Get("X-Should-Retry") != "false" || e.up.links.Load() != 0 {
					t.Fatalf("status %d, %d links upstream: %s", a.Status, e.up.links.Load(), a.Body)
				}
				if env := a.envelope(t); env["slug"] != "ComposioGuard_CheckNotPossible" {
					t.Fatalf("envelope %v", env)
				}
				if s := <-e.scopes; s.Decision != intercept.DecisionRejectedUnverifiable || s.Reason != tc.reason {
					t.Fatalf("scope %+v", s)
				}
			})
		}
	}
	t.Run("composio down still follows the failure mode", func(t *testing.T) {
		e := newEnv(t, intercept.Config{FailureMode: intercept.FailOpen})
		e.lister.err = errors.New("lookup page 1: connection refused")
		if a := e.link(t, "u", "ac"); a.Status != http.StatusCreated {
			t.Fatalf("status %d", a.Status)
		}
	})
}

// Ids are bounded before any lookup.
func TestIDsBoundedBeforeLookup(t *testing.T) {
	for _, tc := range []struct{ name, body, reason string }{
		{"long user id", fmt.Sprintf(`{"auth_config_id":"ac","user_id":%q}`, strings.Repeat("u", intercept.MaxIDBytes+1)), intercept.ReasonIDTooLong},
		{"long auth config id", fmt.Sprintf(`{"auth_config_id":%q,"user_id":"u"}`, strings.Repeat("a", intercept.MaxIDBytes+1)), intercept.ReasonIDTooLong},
		{"newline in user id", `{"auth_config_id":"ac","user_id":"u\n1"}`, intercept.ReasonControlInID},
		{"NUL in user id", `{"auth_config_id":"ac","user_id":"u\u0000"}`, intercept.ReasonControlInID},
		{"C1 control", `{"auth_config_id":"ac","user_id":"u\u0085"}`, intercept.ReasonControlInID},
		{"empty user id", `{"auth_config_id":"ac","user_id":""}`, intercept.ReasonBadMember},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, intercept.Config{FailureMode: intercept.FailOpen})
			a := e.do(t, "POST", "/api/v3.1/connected_accounts/link", []byte(tc.body))
			if a.Status != http.StatusBadRequest || len(e.lister.calls()) != 0 || e.up.links.Load() != 0 {
				t.Fatalf("status %d, %d lookups, %d links", a.Status, len(e.lister.calls()), e.up.links.Load())
			}
			if s := <-e.scopes; s.Reason != tc.reason {
				t.Fatalf("reason %q, want %q", s.Reason, tc.reason)
			}
		})
	}
	t.Run("longest id allowed", func(t *testing.T) {
		e := newEnv(t, intercept.Config{})
		body := fmt.Sprintf(`{"auth_config_id":"ac","user_id":%q}`, strings.Repeat("u", intercept.MaxIDBytes))
		if a := e.do(t, "POST", "/api/v3.1/connected_accounts/link", []byte(body)); a.Status != http.StatusCreated {
			t.Fatalf("status %d: %s", a.Status, a.Body)
		}
	})
}

// Class 3: link and legacy create share one lock, one lease and one pending
// rule. 10 links and 10 legacy creates for one user at once make one account.
func TestLinkAndLegacyCreateShareOneGuard(t *testing.T) {
	e := newEnv(t, intercept.Config{})
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			if i%2 == 0 {
				e.link(t, "u", "ac")
				return
			}
			e.do(t, "POST", "/api/v3/connected_accounts", []byte(`{"auth_config":{"id":"ac"},"connection":{"user_id":"u"}}`))
		})
	}
	wg.Wait()
	if n := e.up.links.Load() + e.up.creates.Load(); n != 1 {
		t.Fatalf("%d accounts made (%d links, %d creates), want 1", n, e.up.links.Load(), e.up.creates.Load())
	}
}

// Class 5: the account type the guard checks is the one it forwards.
func TestAccountTypeCheckedAsForwarded(t *testing.T) {
	for _, prefix := range []string{"/api/v3", "/api/v3.1"} {
		t.Run(prefix, func(t *testing.T) {
			e := newEnv(t, intercept.Config{})
			e.up.add(upstream.Account{ID: "ca_s", Status: "ACTIVE", UserID: "u", AuthConfigID: "ac"})
			body := []byte(`{"user_id":"u","auth_config_id":"ac","experimental":{"account_type":"SHARED"}}`)
			e.do(t, "POST", prefix+"/connected_accounts/link", body)
			if q := e.lister.calls()[0]; q.AccountType != "SHARED" {
				t.Fatalf("looked up as %q, forwarded as SHARED", q.AccountType)
			}
		})
	}
}

// Class 5: a request that could reach a guarded route by another spelling
// of its method or path is guarded or refused, never forwarded unchecked.
func TestDisguisedRoutesNeverPassUnchecked(t *testing.T) {
	body := linkBody("u", "ac")
	for _, tc := range []struct {
		name, method, path string
		hdr                []string
		want               int // 400 refused, 409 guarded (an ACTIVE account exists)
	}{
		{"lowercase post", "post", "/api/v3.1/connected_accounts/link", nil, http.StatusBadRequest},
		{"mixed case Post", "Post", "/api/v3.1/connected_accounts", nil, http.StatusBadRequest},
		{"override header on GET", "GET", "/api/v3.1/connected_accounts/link", []string{"X-HTTP-Method-Override", "POST"}, http.StatusBadRequest},
		{"X-HTTP-Method on PUT", "PUT", "/api/v3/connected_accounts/link", []string{"X-HTTP-Method", "POST"}, http.StatusBadRequest},
		{"X-Method-Override on POST", "POST", "/api/v3/connected_accounts/link", []string{"X-Method-Override", "GET"}, http.StatusBadRequest},
		{"override on session PATCH", "POST", "/api/v3.1/tool_router/session/trs_1", []string{"X-HTTP-Method-Override", "PATCH"}, http.StatusBadRequest},
		{"path params", "POST", "/api/v3.1/connected_accounts/link;x=1", nil, http.StatusConflict},
		{"params on a middle segment", "POST", "/api/v3.1/connected_accounts;v=2/link", nil, http.StatusConflict},
		{"encoded semicolon", "POST", "/api/v3.1/connected_accounts/link%3Bx=1", nil, http.StatusConflict},
		{"encoded backslash", "POST", "/api/v3.1/connected_accounts%5Clink", nil, http.StatusConflict},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, intercept.Config{})
			e.up.add(active("ca_1", "u", "ac"))
			a := e.do(t, tc.method, tc.path, body, tc.hdr...)
			if a.Status != tc.want || len(e.up.requests()) != 0 {
				t.Fatalf("status %d (want %d), %d forwards: %s", a.Status, tc.want, len(e.up.requests()), a.Body)
			}
		})
	}
	t.Run("plain GET of the list still passes", func(t *testing.T) {
		e := newEnv(t, intercept.Config{})
		if a := e.do(t, "GET", "/api/v3.1/connected_accounts?user_ids=u", nil); a.Status != http.StatusOK {
			t.Fatalf("status %d", a.Status)
		}
	})
	t.Run("shadow forwards and counts", func(t *testing.T) {
		e := newEnv(t, intercept.Config{Mode: intercept.ModeShadow})
		e.do(t, "post", "/api/v3.1/connected_accounts/link", body)
		if len(e.up.requests()) != 1 {
			t.Fatal("shadow mode did not forward")
		}
		if s := <-e.scopes; s.Reason != intercept.ReasonDisguised {
			t.Fatalf("reason %q", s.Reason)
		}
	})
}

// A guarded create that is checked carries no query parameter the lookup
// could not carry.
func TestQueryParametersOnACheckedCreate(t *testing.T) {
	e := newEnv(t, intercept.Config{})
	a := e.do(t, "POST", "/api/v3.1/connected_accounts/link?user_id=other", linkBody("u", "ac"))
	if a.Status != http.StatusBadRequest || len(e.up.requests()) != 0 {
		t.Fatalf("status %d, %d forwards", a.Status, len(e.up.requests()))
	}
	if s := <-e.scopes; s.Reason != intercept.ReasonQueryParams {
		t.Fatalf("reason %q", s.Reason)
	}
}

// The pending rule holds the same on both routes, for a link the proxy did
// not see being made (another replica, around the proxy).
func TestPendingRuleOnEveryRoute(t *testing.T) {
	for _, tc := range []struct{ name, path, body string }{
		{"link", "/api/v3.1/connected_accounts/link", `{"auth_config_id":"ac","user_id":"u"}`},
		{"legacy create", "/api/v3.1/connected_accounts", `{"auth_config":{"id":"ac"},"connection":{"user_id":"u"}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, intercept.Config{})
			e.up.add(upstream.Account{ID: "ca_elsewhere", Status: "INITIATED", UserID: "u", AuthConfigID: "ac", CreatedAt: time.Now()})
			a := e.do(t, "POST", tc.path, []byte(tc.body))
			if a.Status != http.StatusConflict || a.Header.Get("X-Should-Retry") != "false" || len(e.up.requests()) != 0 {
				t.Fatalf("status %d, %d forwards: %s", a.Status, len(e.up.requests()), a.Body)
			}
			if env := a.envelope(t); env["slug"] != "ConnectedAccount_LinkPending" || fmt.Sprint(env["existing_connected_account_ids"]) != "[ca_elsewhere]" {
				t.Fatalf("envelope %v", env)
			}
		})
	}
}

// A trailer cannot carry a second credential past the check: a guarded
// body is forwarded with a fixed length, and no trailer follows it.
func TestTrailersDoNotReachComposio(t *testing.T) {
	e := newEnv(t, intercept.Config{})
	pr, pw := io.Pipe()
	go func() {
		_, _ = pw.Write(linkBody("u", "ac"))
		_ = pw.Close()
	}()
	req, err := http.NewRequest(http.MethodPost, e.srv.URL+"/api/v3.1/connected_accounts/link", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Api-Key", "k1")
	req.Header.Set("Content-Type", "application/json")
	req.Trailer = http.Header{"X-Api-Key": {"k2"}}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("status %d", res.StatusCode)
	}
	got := e.up.requests()[0]
	if len(got.Trailer) != 0 || got.Header.Get("Trailer") != "" || fmt.Sprint(got.Header["X-Api-Key"]) != "[k1]" {
		t.Fatalf("upstream got trailer %v, header %v", got.Trailer, got.Header)
	}
}
