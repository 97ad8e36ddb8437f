package intercept_test

import (
	"net/http"
	"testing"

	"github.com/composio-guard/composio-guard/internal/intercept"
)

// The session policies: off by default; each refuses with 403 what it
// forbids, and manage_connections off is inserted on a create that omits it.
func TestSessionPolicies(t *testing.T) {
	const create = "/api/v3.1/tool_router/session"
	const patch = "/api/v3.1/tool_router/session/trs_1"
	deny := intercept.Config{SessionMultiAccount: intercept.SessionDeny}
	capped := intercept.Config{SessionMaxAccountsPerToolkit: 3}
	noManage := intercept.Config{SessionManageConnections: intercept.SessionManageDisable}
	for _, tc := range []struct {
		name, method, path, body string
		cfg                      intercept.Config
		status                   int    // what the client got
		forwarded                string // the body Composio got; "" when nothing was forwarded
		reason                   string
	}{
		{"off by default", "POST", create, `{"user_id":"u","multi_account":{"enable":true,"max_accounts_per_toolkit":10},"manage_connections":{"enable":true}}`,
			intercept.Config{}, 200, `{"user_id":"u","multi_account":{"enable":true,"max_accounts_per_toolkit":10},"manage_connections":{"enable":true}}`, intercept.ReasonNoSize},
		{"multi-account denied", "POST", create, `{"user_id":"u","multi_account":{"enable":true}}`, deny, 403, "", intercept.ReasonMultiAccountDenied},
		{"multi-account denied on PATCH", "PATCH", patch, `{"multi_account":{"enable":true}}`, deny, 403, "", intercept.ReasonMultiAccountDenied},
		{"multi-account off passes deny", "POST", create, `{"user_id":"u","multi_account":{"enable":false}}`, deny, 200,
			`{"user_id":"u","multi_account":{"enable":false}}`, intercept.ReasonNoSize},
		{"above the cap", "POST", create, `{"user_id":"u","multi_account":{"enable":true,"max_accounts_per_toolkit":4}}`, capped, 403, "", intercept.ReasonMaxAccountsAboveCap},
		{"the default 5 is above a cap of 3", "PATCH", patch, `{"multi_account":{"enable":true}}`, capped, 403, "", intercept.ReasonMaxAccountsAboveCap},
		{"at the cap", "POST", create, `{"user_id":"u","multi_account":{"enable":true,"max_accounts_per_toolkit":3}}`, capped, 200,
			`{"user_id":"u","multi_account":{"enable":true,"max_accounts_per_toolkit":3}}`, intercept.ReasonNoSize},
		{"manage connections enabled", "POST", create, `{"user_id":"u","manage_connections":{"enable":true}}`, noManage, 403, "", intercept.ReasonManageConnectionsOn},
		{"manage connections inserted", "POST", create, `{"user_id":"u"}`, noManage, 200,
			`{"manage_connections":{"enable":false},"user_id":"u"}`, intercept.ReasonManageOffInserted},
		{"manage connections off kept", "POST", create, `{"user_id":"u","manage_connections":{"enable":false}}`, noManage, 200,
			`{"user_id":"u","manage_connections":{"enable":false}}`, intercept.ReasonNoSize},
		{"not inserted on PATCH", "PATCH", patch, `{"tags":["a"]}`, noManage, 200, `{"tags":["a"]}`, intercept.ReasonNoSize},
		{"bad enable", "POST", create, `{"user_id":"u","multi_account":{"enable":"yes"}}`, deny, 400, "", intercept.ReasonBadMember},
		// Shapes the policies cannot read are refused, not passed by
		// (an operator's review: both were forwarded, the first with a
		// second manage_connections member the proxy had added).
		{"manage connections not an object", "POST", create, `{"user_id":"u","manage_connections":true}`, noManage, 400, "", intercept.ReasonBadMember},
		{"multi-account not an object", "POST", create, `{"user_id":"u","multi_account":true}`, deny, 400, "", intercept.ReasonBadMember},
		{"multi-account not an object, no policy on it", "PATCH", patch, `{"multi_account":"on"}`, noManage, 400, "", intercept.ReasonBadMember},
		// Present without an explicit false: Composio's default is on.
		{"manage connections null", "POST", create, `{"user_id":"u","manage_connections":null}`, noManage, 403, "", intercept.ReasonManageConnectionsOn},
		{"manage connections without enable", "POST", create, `{"user_id":"u","manage_connections":{}}`, noManage, 403, "", intercept.ReasonManageConnectionsOn},
		{"null multi-account passes", "POST", create, `{"user_id":"u","multi_account":null}`, deny, 200, `{"user_id":"u","multi_account":null}`, intercept.ReasonNoSize},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.cfg)
			a := e.do(t, tc.method, tc.path, []byte(tc.body))
			if a.Status != tc.status {
				t.Fatalf("status %d, want %d: %s", a.Status, tc.status, a.Body)
			}
			reqs := e.up.requests()
			switch {
			case tc.forwarded == "" && len(reqs) != 0:
				t.Fatalf("forwarded %s", reqs[0].Body)
			case tc.forwarded != "" && (len(reqs) != 1 || string(reqs[0].Body) != tc.forwarded):
				t.Fatalf("forwarded %v, want %s", reqs, tc.forwarded)
			}
			if tc.status == http.StatusForbidden && a.envelope(t)["slug"] != "ToolRouter_SessionPolicyForbidden" {
				t.Fatalf("envelope %s", a.Body)
			}
			if s := <-e.scopes; s.Reason != tc.reason {
				t.Fatalf("reason %q, want %q", s.Reason, tc.reason)
			}
		})
	}
}

// Shadow mode counts a would-refusal and forwards the body as sent.
func TestSessionPoliciesShadow(t *testing.T) {
	e := newEnv(t, intercept.Config{Mode: intercept.ModeShadow, SessionManageConnections: intercept.SessionManageDisable})
	body := `{"user_id":"u"}`
	if a := e.do(t, "POST", "/api/v3.1/tool_router/session", []byte(body)); a.Status != 200 {
		t.Fatalf("status %d", a.Status)
	}
	if got := string(e.up.requests()[0].Body); got != body {
		t.Fatalf("shadow changed the body: %s", got)
	}
	if s := <-e.scopes; s.Decision != intercept.DecisionDefaulted || s.Reason != intercept.ReasonManageOffInserted {
		t.Fatalf("scope %+v", s)
	}
}
