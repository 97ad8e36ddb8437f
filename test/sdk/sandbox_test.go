package sdk_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/composio-guard/composio-guard/internal/apierror"
	"github.com/composio-guard/composio-guard/internal/composiotest"
)

// sessionVersions have composio.create(user, {workbench: {sandboxSize}});
// only 0.21.0 has session.update().
var sessionVersions = []string{"0.8.1", "0.21.0"}

// The policy of the sandbox stack: a team that wants at most medium, with
// every new session on medium unless it asks for less.
var sandboxEnv = []string{"GUARD_SANDBOX_MAX_SIZE=medium", "GUARD_SANDBOX_DEFAULT_SIZE=medium"}

func tier(s string) *string { return &s }

// TestSDKSandbox drives the real SDKs' Tool Router sessions through a proxy
// with a sandbox policy (at most medium, default medium) and checks what the
// caller reads and what reached the fake Composio.
func TestSDKSandbox(t *testing.T) {
	requireNode(t)
	s := startStack(t, sandboxEnv...)
	cases := []struct {
		name     string
		versions []string
		run      func(t *testing.T, s *stack, version, key string)
	}{
		{"create_allowed", sessionVersions, caseSessionAllowed},
		{"create_refused", sessionVersions, caseSessionRefused},
		{"create_invalid_raw", sessionVersions, caseSessionInvalid},
		{"create_default", sessionVersions, caseSessionDefault},
		{"update", []string{"0.21.0"}, caseSessionUpdate},
	}
	for _, c := range cases {
		for _, v := range c.versions {
			t.Run(v+"/"+c.name, func(t *testing.T) {
				t.Parallel()
				c.run(t, s, v, keyFor("sbx_"+c.name, v))
			})
		}
	}
}

// sessions is what the fake holds for key, oldest first.
func sessions(t *testing.T, s *stack, key string) []composiotest.Session {
	t.Helper()
	var mine []composiotest.Session
	for _, x := range s.fake.Sessions(t) {
		if x.Credential == key {
			mine = append(mine, x)
		}
	}
	return mine
}

// sessionBodies are the bodies of the session creates (or updates) that
// reached the fake with key, as received.
func sessionBodies(t *testing.T, s *stack, key, route string) []string {
	t.Helper()
	var out []string
	for _, r := range requests(t, s, key) {
		if r.Route == route {
			out = append(out, string(r.Body))
		}
	}
	return out
}

// sentTo returns the bodies the SDK sent with method to a path ending in suffix.
func sentTo(r result, method, suffix string) []string {
	var out []string
	for i, line := range r.Sent {
		if strings.HasPrefix(line, method+" ") && strings.HasSuffix(line, suffix) && i < len(r.SentBodies) && r.SentBodies[i] != nil {
			out = append(out, *r.SentBodies[i])
		}
	}
	return out
}

// A tier within the policy: the session is created with it and the body
// Composio got is byte for byte the one the SDK sent.
func caseSessionAllowed(t *testing.T, s *stack, version, key string) {
	r := runSDK(t, s, version, key, call{Call: "session_create", UserID: "user_sbx", SandboxSize: tier("medium")})[0]
	if !r.OK || r.SessionID == "" {
		t.Fatalf("create with medium failed: %s %d %s", r.ErrorName, r.Status, r.Body)
	}
	held := sessions(t, s, key)
	if len(held) != 1 || held[0].ID != r.SessionID || held[0].SandboxSize != "medium" {
		t.Fatalf("fake holds %+v, want session %s on medium", held, r.SessionID)
	}
	sent := sentTo(r, "POST", "/tool_router/session")
	got := sessionBodies(t, s, key, composiotest.RouteSessionCreate)
	if len(sent) != 1 || !slices.Equal(got, sent) {
		t.Fatalf("Composio got %q, the SDK sent %q: want it forwarded unchanged", got, sent)
	}
	if !strings.Contains(sent[0], `"sandbox_size":"medium"`) {
		t.Errorf("the SDK sent %s: no sandbox_size on the wire?", sent[0])
	}
	for _, req := range requests(t, s, key) {
		if want := apiPrefix(version) + "/tool_router/session"; req.Route == composiotest.RouteSessionCreate && req.Path != want {
			t.Errorf("create reached Composio on %s, want %s", req.Path, want)
		}
	}
}

// A tier above the ceiling: the SDK surfaces our 403 (PermissionDeniedError,
// the envelope on err.error), asks once, and no session exists.
func caseSessionRefused(t *testing.T, s *stack, version, key string) {
	r := runSDK(t, s, version, key, call{Call: "session_create", UserID: "user_sbx", SandboxSize: tier("xlarge")})[0]
	if r.OK {
		t.Fatalf("create with xlarge succeeded (%s), want the proxy's 403", r.SessionID)
	}
	assertSandboxForbidden(t, r, "xlarge", "POST")
	if held := sessions(t, s, key); len(held) != 0 {
		t.Errorf("fake holds %d sessions, want none", len(held))
	}
	if n := count(requests(t, s, key), http.MethodPost, composiotest.RouteSessionCreate); n != 0 {
		t.Errorf("session creates at Composio = %d, want 0", n)
	}
}

// assertSandboxForbidden checks what the caller reads on a refused tier.
func assertSandboxForbidden(t *testing.T, r result, requested, method string) {
	t.Helper()
	if r.Status != http.StatusForbidden || r.ErrorName != "PermissionDeniedError" {
		t.Fatalf("%s: %s status %d, want PermissionDeniedError 403 (body %s)", r.Call, r.ErrorName, r.Status, r.Body)
	}
	e := r.envelope(t)
	if e.Slug != apierror.SlugSandboxForbidden || e.Code != apierror.CodeSandbox || e.Status != http.StatusForbidden {
		t.Errorf("%s: envelope slug=%q code=%d status=%d", r.Call, e.Slug, e.Code, e.Status)
	}
	if e.RequestedSize != requested || !slices.Equal(e.AllowedSizes, []string{"standard", "medium"}) {
		t.Errorf("%s: requested %q allowed %v, want %q and [standard medium]", r.Call, e.RequestedSize, e.AllowedSizes, requested)
	}
	if e.RequestID == "" || r.Headers["x-request-id"] != e.RequestID || r.Headers["x-should-retry"] != "false" {
		t.Errorf("%s: request id %q / header %q, x-should-retry %q", r.Call, e.RequestID, r.Headers["x-request-id"], r.Headers["x-should-retry"])
	}
	if n := len(sentTo(r, method, "")); n != 1 {
		t.Errorf("%s: the SDK sent %d %s requests (%v), want 1: no retry", r.Call, n, method, r.Sent)
	}
}

// A tier that is not one: the SDKs check sandboxSize themselves, so only
// their raw client can send it; the proxy answers 400 naming the tiers.
func caseSessionInvalid(t *testing.T, s *stack, version, key string) {
	rs := runSDK(t, s, version, key,
		call{Call: "session_create", UserID: "user_sbx", SandboxSize: tier("huge")},
		call{Call: "raw_session_create", UserID: "user_sbx", SandboxSize: tier("huge")},
	)
	sdk, raw := rs[0], rs[1]
	if sdk.OK || len(sdk.Sent) != 0 {
		t.Errorf("create with huge: ok=%v after %v, want the SDK's own refusal before any request", sdk.OK, sdk.Sent)
	}
	if raw.OK || raw.Status != http.StatusBadRequest || raw.ErrorName != "BadRequestError" {
		t.Fatalf("raw create with huge: ok=%v %s %d, want BadRequestError 400 (body %s)", raw.OK, raw.ErrorName, raw.Status, raw.Body)
	}
	e := raw.envelope(t)
	if e.Slug != apierror.SlugInvalidSandbox || !strings.Contains(e.Message, "standard, medium, large, xlarge") {
		t.Errorf("envelope slug=%q message=%q", e.Slug, e.Message)
	}
	if n := len(sentTo(raw, "POST", "/tool_router/session")); n != 1 {
		t.Errorf("raw create sent %d POSTs, want 1", n)
	}
	if held := sessions(t, s, key); len(held) != 0 {
		t.Errorf("fake holds %d sessions, want none", len(held))
	}
}

// No tier, workbench enabled (no workbench config, or {} which the SDK sends
// as {"enable":true}): the proxy inserts the default and leaves every other
// byte as the SDK sent it. (A disabled workbench, which the SDK cannot send
// here, is covered in internal/intercept.)
func caseSessionDefault(t *testing.T, s *stack, version, key string) {
	rs := runSDK(t, s, version, key,
		call{Call: "session_create", UserID: "user_plain"},                     // no workbench config at all
		call{Call: "session_create", UserID: "user_wb", SandboxSize: tier("")}, // workbench: {} -> {"enable":true}
	)
	for _, r := range rs {
		if !r.OK {
			t.Fatalf("create without a tier failed: %s %d %s", r.ErrorName, r.Status, r.Body)
		}
	}
	held := sessions(t, s, key)
	got := sessionBodies(t, s, key, composiotest.RouteSessionCreate)
	if len(held) != 2 || len(got) != 2 {
		t.Fatalf("fake holds %d sessions, got %d creates; want 2", len(held), len(got))
	}
	for i, r := range rs {
		if held[i].ID != r.SessionID || held[i].SandboxSize != "medium" {
			t.Errorf("session %d: fake holds %s on %q, want %s on medium (the default)", i, held[i].ID, held[i].SandboxSize, r.SessionID)
		}
		sent := sentTo(r, "POST", "/tool_router/session")
		if len(sent) != 1 {
			t.Fatalf("the SDK sent %d creates", len(sent))
		}
		want := withDefault(t, sent[0])
		if got[i] != want {
			t.Errorf("Composio got\n%s\nwant the SDK's body with the default inserted:\n%s", got[i], want)
		}
	}
}

// withDefault is the SDK's body as the proxy should forward it: the tier
// inserted first in an existing workbench, or a workbench added first in the body.
func withDefault(t *testing.T, sent string) string {
	t.Helper()
	if i := strings.Index(sent, `"workbench":{`); i >= 0 {
		at := i + len(`"workbench":{`)
		sep := ","
		if strings.HasPrefix(sent[at:], "}") {
			sep = ""
		}
		return sent[:at] + `"sandbox_size":"medium"` + sep + sent[at:]
	}
	if strings.Contains(sent, `"workbench"`) || !strings.HasPrefix(sent, "{") {
		t.Fatalf("unexpected SDK body %s", sent)
	}
	return `{"workbench":{"sandbox_size":"medium"},` + sent[1:]
}

// 0.21.0 session.update(): a tier above the ceiling is refused with 403 (not
// 409, which this SDK reads as ComposioSessionConfigConflictError), asked
// once, and the session is unchanged; an allowed tier goes through, and the
// proxy logs that the sandbox will be recreated.
func caseSessionUpdate(t *testing.T, s *stack, version, key string) {
	created := runSDK(t, s, version, key, call{Call: "session_create", UserID: "user_upd", SandboxSize: tier("standard")})[0]
	if !created.OK {
		t.Fatalf("create failed: %s %d %s", created.ErrorName, created.Status, created.Body)
	}
	id := created.SessionID
	rs := runSDK(t, s, version, key,
		call{Call: "session_update", ID: id, SandboxSize: tier("large")},
		call{Call: "session_update", ID: id, SandboxSize: tier("medium")},
		call{Call: "session_update", ID: id, Clear: true},
	)
	refused, allowed, cleared := rs[0], rs[1], rs[2]
	if refused.OK {
		t.Fatal("update to large succeeded, want the proxy's 403")
	}
	if refused.ErrorName == "ComposioSessionConfigConflictError" {
		t.Fatal("update to large surfaced as a config conflict: the proxy answered 409")
	}
	assertSandboxForbidden(t, refused, "large", "PATCH")
	if !allowed.OK || allowed.SandboxSize != "medium" {
		t.Fatalf("update to medium: ok=%v sandbox_size=%q (%s %d %s)", allowed.OK, allowed.SandboxSize, allowed.ErrorName, allowed.Status, allowed.Body)
	}
	if !cleared.OK {
		t.Fatalf("update with workbench null: %s %d %s", cleared.ErrorName, cleared.Status, cleared.Body)
	}
	held := sessions(t, s, key)
	if len(held) != 1 || held[0].Updates != 2 || held[0].SandboxSize != "" {
		t.Fatalf("fake holds %+v, want one session updated twice (medium, then cleared)", held)
	}
	patches := sessionBodies(t, s, key, composiotest.RouteSessionUpdate)
	sent := append(sentTo(allowed, "PATCH", id), sentTo(cleared, "PATCH", id)...)
	if !slices.Equal(patches, sent) || len(sent) != 2 || sent[1] != `{"workbench":null}` {
		t.Errorf("Composio got PATCHes %q, the SDK sent %q: want the allowed ones unchanged (no default on a PATCH)", patches, sent)
	}
	wants := []string{`"session_id":"` + id + `","sandbox_size":"medium"`, `"session_id":"` + id + `","sandbox_size":"default"`}
	logs := s.proxy.WaitLogs(5*time.Second, func(l string) bool {
		return strings.Contains(l, wants[0]) && strings.Contains(l, wants[1])
	})
	for _, want := range wants {
		if !strings.Contains(logs, `"msg":"sandbox will be recreated"`) || !strings.Contains(logs, want) {
			t.Errorf("proxy logs lack the recreate line with %s", want)
		}
	}
	if strings.Contains(logs, `"session_id":"`+id+`","sandbox_size":"large"`) {
		t.Error("the refused update was logged as a recreate")
	}
}
