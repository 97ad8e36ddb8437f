package sdk_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/composio-guard/composio-guard/internal/apierror"
	"github.com/composio-guard/composio-guard/internal/composiotest"
)

// authorizeVersions have Tool Router sessions with session.authorize(toolkit)
// (POST …/tool_router/session/{id}/link) and the multiAccount create option
// ({enable, maxAccountsPerToolkit}, sent as multi_account): all three pinned
// versions, read in their dist/index.mjs. 0.8.x call /api/v3, 0.21.0 /api/v3.1.
// None of them checks for a duplicate before the POST, and none wraps the
// HTTP error: a 409 reaches the caller as the client's ConflictError.
var authorizeVersions = versions

// The toolkit authorized; the sessions pin no auth config for it, so the
// fake links on its default, ac_github, and the guard looks the user's
// accounts up by toolkit.
const authorizeToolkit = "github"

// TestSDKSessionAuthorize drives session.authorize() of the real SDKs through
// the proxy: a repeat while the first link is pending is replayed, a repeat
// once the account is ACTIVE is refused with 409, and a session with
// multi-account on is allowed up to its max_accounts_per_toolkit. Each case
// is one SDK process; the fake's accounts are made ACTIVE between calls
// (runSteps), through its control API.
func TestSDKSessionAuthorize(t *testing.T) {
	requireNode(t)
	s := startStack(t)
	cases := []struct {
		name string
		run  func(t *testing.T, s *stack, version, key string)
	}{
		{"pending_then_active", caseAuthorizeSingle},
		{"multi_account", caseAuthorizeMultiAccount},
	}
	for _, c := range cases {
		for _, v := range authorizeVersions {
			t.Run(v+"/"+c.name, func(t *testing.T) {
				t.Parallel()
				c.run(t, s, v, keyFor("auth_"+c.name, v))
			})
		}
	}
}

// linkPath is the path session.authorize() posts to for session id.
func linkPath(version, id string) string {
	return apiPrefix(version) + "/tool_router/session/" + id + "/link"
}

// guardHeaderOfLink is the X-Composio-Guard header on the answer to the one
// link POST of r ("" when absent); it fails the test unless r sent exactly
// one, to the session's link path.
func guardHeaderOfLink(t *testing.T, r result, version, id string) string {
	t.Helper()
	at := -1
	for i, line := range r.Sent {
		if strings.HasPrefix(line, "POST ") && strings.HasSuffix(line, "/link") {
			if at >= 0 || line != "POST "+linkPath(version, id) {
				t.Fatalf("%s: the SDK sent %v, want exactly one POST %s", r.Call, r.Sent, linkPath(version, id))
			}
			at = i
		}
	}
	if at < 0 {
		t.Fatalf("%s: the SDK sent %v, no link POST", r.Call, r.Sent)
	}
	if at >= len(r.GuardHeaders) || r.GuardHeaders[at] == nil {
		return ""
	}
	return *r.GuardHeaders[at]
}

// heldAccount returns the upstream's account id, failing unless it is the
// session user's on the toolkit.
func heldAccount(t *testing.T, held []composiotest.Account, id, user string) composiotest.Account {
	t.Helper()
	i := slices.IndexFunc(held, func(a composiotest.Account) bool { return a.ID == id })
	if i < 0 {
		t.Fatalf("the caller got account %s, the upstream holds %v", id, ids(held))
	}
	a := held[i]
	if a.UserID != user || a.Toolkit != authorizeToolkit || a.AuthConfigID != "ac_"+authorizeToolkit {
		t.Errorf("account %s is %s on %s/%s, want %s on %s/ac_%s", id, a.UserID, a.Toolkit, a.AuthConfigID, user, authorizeToolkit, authorizeToolkit)
	}
	return a
}

// Cases 1 and 2, in one SDK process (an app holding the session create
// returned): authorize() twice while the first link is pending returns the
// first answer again (the proxy's replay) and Composio got one link POST;
// once that account is ACTIVE, authorize() on a session without
// multi-account throws the proxy's 409 as the client's raw ConflictError
// (status 409, the envelope on err.error), asked once. Composio itself makes
// a new account on every link (the fake does too), so without the guard the
// second call gets a second redirect URL and the third a third.
func caseAuthorizeSingle(t *testing.T, s *stack, version, key string) {
	const user = "user_auth_single"
	var id string
	rs := runSteps(t, s, version, key,
		step{call: call{Call: "session_create", UserID: user}, then: func(r result) {
			if !r.OK || r.SessionID == "" {
				t.Fatalf("create failed: %s %d %s", r.ErrorName, r.Status, r.Body)
			}
			id = r.SessionID
		}},
		step{call: call{Call: "session_authorize", Toolkit: authorizeToolkit}},
		step{call: call{Call: "session_authorize", Toolkit: authorizeToolkit}, then: func(second result) {
			if second.OK {
				s.fake.SetStatus(t, second.ConnectedAccountID, "ACTIVE")
			}
		}},
		step{call: call{Call: "session_authorize", Toolkit: authorizeToolkit}},
	)
	first, second, refused := rs[1], rs[2], rs[3]

	// 1: the pending link's answer, replayed.
	if !first.OK || !second.OK {
		t.Fatalf("authorize() twice: ok=%v then ok=%v (%s %d %s)", first.OK, second.OK, second.ErrorName, second.Status, second.Body)
	}
	if second.RedirectURL != first.RedirectURL || second.ConnectedAccountID != first.ConnectedAccountID || first.RedirectURL == "" {
		t.Errorf("second authorize() got (%q, %q), want the first (%q, %q) again", second.ConnectedAccountID, second.RedirectURL, first.ConnectedAccountID, first.RedirectURL)
	}
	if g := guardHeaderOfLink(t, first, version, id); g != "" {
		t.Errorf("first authorize(): X-Composio-Guard %q, want none (Composio's own answer)", g)
	}
	if g := guardHeaderOfLink(t, second, version, id); g != "replayed" {
		t.Errorf("second authorize(): X-Composio-Guard %q, want \"replayed\"", g)
	}

	// 2: the account ACTIVE, the next authorize() refused.
	if refused.OK {
		t.Fatalf("authorize() with an ACTIVE account succeeded: %s %s", refused.ConnectedAccountID, refused.RedirectURL)
	}
	if refused.ErrorName != "ConflictError" {
		t.Errorf("authorize(): threw %s (cause %s), want the client's ConflictError passed through", refused.ErrorName, refused.CauseName)
	}
	guardHeaderOfLink(t, refused, version, id) // exactly one POST, to this session
	assertConflict(t, refused, "/link", apierror.SlugMultipleAccounts, apierror.CodeMultipleAccounts, first.ConnectedAccountID)
	if e := refused.envelope(t); e.UserID != user {
		t.Errorf("envelope user_id %q, want the session's user %q", e.UserID, user)
	}

	held := accounts(t, s, key)
	if len(held) != 1 {
		t.Fatalf("upstream holds %v, want the one account of the first link", ids(held))
	}
	if a := heldAccount(t, held, first.ConnectedAccountID, user); a.Status != "ACTIVE" || a.RedirectURL != first.RedirectURL {
		t.Errorf("upstream account %s is %s with %q, want ACTIVE with the caller's redirect URL", a.ID, a.Status, a.RedirectURL)
	}
	reqs := requests(t, s, key)
	if n := count(reqs, http.MethodPost, composiotest.RouteSessionLink); n != 1 {
		t.Errorf("session link POSTs at Composio = %d, want 1 (the first authorize)", n)
	}
	// The SDK never read the session in this run (it holds the one create
	// returned): every GET of it Composio saw is the guard's.
	if n := count(reqs, http.MethodGet, composiotest.RouteSessionGet); n < 1 {
		t.Errorf("session GETs at Composio = %d, want the guard's read of the session", n)
	}
	for _, r := range reqs {
		if r.Route == composiotest.RouteSessionLink && r.Path != linkPath(version, id) {
			t.Errorf("the link reached Composio on %s, want %s", r.Path, linkPath(version, id))
		}
	}
}

// Case 3, in one SDK process: a session created with multiAccount {enable:
// true, maxAccountsPerToolkit: 2} gets a second account once the first is
// ACTIVE, and a third is refused with 409
// ConnectedAccount_MaxAccountsPerToolkitReached naming both. The repeats go
// through composio.use(id), which reads the session first, as another
// process of the app would.
func caseAuthorizeMultiAccount(t *testing.T, s *stack, version, key string) {
	const user = "user_auth_multi"
	activate := func(r result) {
		if r.OK {
			s.fake.SetStatus(t, r.ConnectedAccountID, "ACTIVE")
		}
	}
	rs := runSteps(t, s, version, key,
		step{call: call{Call: "session_create", UserID: user, MultiAccount: &multiAccount{Enable: true, Max: 2}}},
		step{call: call{Call: "session_authorize", Toolkit: authorizeToolkit}, then: activate},
		step{call: call{Call: "session_authorize", Toolkit: authorizeToolkit, Reopen: true}, then: activate},
		step{call: call{Call: "session_authorize", Toolkit: authorizeToolkit, Reopen: true}},
	)
	created, first, second, third := rs[0], rs[1], rs[2], rs[3]
	if !created.OK || created.SessionID == "" {
		t.Fatalf("create failed: %s %d %s", created.ErrorName, created.Status, created.Body)
	}
	id := created.SessionID
	if held := sessions(t, s, key); len(held) != 1 || !strings.Contains(string(held[0].CreateBody), `"multi_account":{"enable":true,"max_accounts_per_toolkit":2`) {
		t.Fatalf("the create Composio got lacks multi_account {enable: true, max 2}: %+v", held)
	}
	if !first.OK {
		t.Fatalf("authorize() on a fresh session failed: %s %d %s", first.ErrorName, first.Status, first.Body)
	}
	if !second.OK {
		t.Fatalf("second authorize() with 1 of 2 accounts ACTIVE failed: %s %d %s", second.ErrorName, second.Status, second.Body)
	}
	if second.ConnectedAccountID == first.ConnectedAccountID || second.RedirectURL == first.RedirectURL {
		t.Fatalf("second authorize() got (%q, %q), the first account's answer; want a new account", second.ConnectedAccountID, second.RedirectURL)
	}
	for _, r := range []result{first, second} {
		if g := guardHeaderOfLink(t, r, version, id); g != "" {
			t.Errorf("authorize() -> %s: X-Composio-Guard %q, want Composio's own answer", r.ConnectedAccountID, g)
		}
	}
	if third.OK {
		t.Fatalf("third authorize() with 2 of 2 accounts ACTIVE succeeded: %s", third.ConnectedAccountID)
	}
	if third.ErrorName != "ConflictError" {
		t.Errorf("third authorize(): threw %s (cause %s), want the client's ConflictError passed through", third.ErrorName, third.CauseName)
	}
	guardHeaderOfLink(t, third, version, id)
	assertConflict(t, third, "/link", apierror.SlugMaxAccounts, apierror.CodeMaxAccounts, first.ConnectedAccountID, second.ConnectedAccountID)
	held := accounts(t, s, key)
	if len(held) != 2 {
		t.Fatalf("upstream holds %v, want the two accounts of the first two links", ids(held))
	}
	for _, r := range []result{first, second} {
		if a := heldAccount(t, held, r.ConnectedAccountID, user); a.Status != "ACTIVE" || a.RedirectURL != r.RedirectURL {
			t.Errorf("upstream account %s is %s with %q, want ACTIVE with the caller's redirect URL", a.ID, a.Status, a.RedirectURL)
		}
	}
	if n := count(requests(t, s, key), http.MethodPost, composiotest.RouteSessionLink); n != 2 {
		t.Errorf("session link POSTs at Composio = %d, want 2", n)
	}
}
