package composiotest_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/composio-guard/composio-guard/internal/composiotest"
	"github.com/composio-guard/composio-guard/internal/composiotest/fakeserver"
)

func TestControlAPI(t *testing.T) {
	fake, srv := fakeserver.New(t)
	decode := func(a answer, v any) {
		t.Helper()
		if err := json.Unmarshal(a.raw, v); err != nil {
			t.Fatalf("decode %s: %v", a.raw, err)
		}
	}

	// Seed accounts over HTTP.
	add := call(t, srv.URL, "POST", "/_fake/accounts", `{"credential":"k1","user_id":"u1","auth_config_id":"ac_1","status":"INITIATED"}`)
	if add.status != http.StatusCreated || add.str("id") == "" || add.str("account_type") != "PRIVATE" {
		t.Fatalf("add: %d %s", add.status, add.raw)
	}
	id := add.str("id")
	call(t, srv.URL, "POST", "/_fake/accounts", `{"credential":"k2","user_id":"u1","auth_config_id":"ac_1"}`)
	var accs []composiotest.Account
	decode(call(t, srv.URL, "GET", "/_fake/accounts?credential=k1", ""), &accs)
	if len(accs) != 1 || accs[0].ID != id || accs[0].Status != "INITIATED" {
		t.Errorf("accounts of k1: %+v", accs)
	}
	decode(call(t, srv.URL, "GET", "/_fake/accounts", ""), &accs)
	if len(accs) != 2 {
		t.Errorf("all accounts: %d", len(accs))
	}

	// Finish the OAuth: the API now lists it as ACTIVE.
	if a := call(t, srv.URL, "POST", "/_fake/accounts/"+id+"/status", `{"status":"ACTIVE"}`); a.status != 200 || a.str("status") != "ACTIVE" {
		t.Errorf("status: %d %s", a.status, a.raw)
	}
	if fake.CountActive("k1", "u1", "ac_1") != 1 {
		t.Error("status change not applied")
	}
	for _, tc := range []struct {
		path, body string
		want       int
	}{
		{"/_fake/accounts/ca_nope/status", `{"status":"ACTIVE"}`, 404},
		{"/_fake/accounts/" + id + "/status", `{"status":"DONE"}`, 400},
		{"/_fake/accounts/" + id + "/status", `nope`, 400},
		{"/_fake/accounts", `{"credential":"k1","status":"DONE"}`, 400},
		{"/_fake/accounts", `[1]`, 400},
	} {
		if a := call(t, srv.URL, "POST", tc.path, tc.body); a.status != tc.want {
			t.Errorf("POST %s %s: %d, want %d", tc.path, tc.body, a.status, tc.want)
		}
	}

	// Control requests are not logged and not rate limited.
	if n := len(fake.Requests()); n != 0 {
		t.Errorf("%d control requests logged", n)
	}
	if a := call(t, srv.URL, "GET", "/_fake/accounts", ""); a.header.Get("X-RateLimit") != "" {
		t.Error("control answer carries rate-limit headers")
	}

	// The request log, with bodies as text.
	call(t, srv.URL, "POST", "/api/v3/connected_accounts/link", linkBody, "x-api-key", "k1")
	call(t, srv.URL, "GET", "/api/v3/connected_accounts?user_ids=u1", "", "x-api-key", "k1")
	var raw []map[string]any
	decode(call(t, srv.URL, "GET", "/_fake/requests?route=link", ""), &raw)
	if len(raw) != 1 || raw[0]["body"] != linkBody || raw[0]["method"] != "POST" || raw[0]["route"] != "link" {
		t.Errorf("requests?route=link: %v", raw)
	}
	var reqs []composiotest.Request
	decode(call(t, srv.URL, "GET", "/_fake/requests", ""), &reqs)
	if len(reqs) != 2 || string(reqs[0].Body) != linkBody || reqs[1].RawQuery != "user_ids=u1" || reqs[1].Header.Get("X-Api-Key") != "k1" {
		t.Errorf("requests: %+v", reqs)
	}
	var counts map[string]int
	decode(call(t, srv.URL, "GET", "/_fake/counts", ""), &counts)
	if counts["POST link"] != 1 || counts["GET list"] != 1 {
		t.Errorf("counts %v", counts)
	}
	if a := call(t, srv.URL, "DELETE", "/_fake/requests", ""); a.status != 204 || len(fake.Requests()) != 0 {
		t.Errorf("clear requests: %d", a.status)
	}

	// Faults over HTTP.
	if a := call(t, srv.URL, "PUT", "/_fake/faults/list", `{"status":429,"headers":{"Retry-After":"3"},"times":1}`); a.status != 204 {
		t.Fatalf("put fault: %d %s", a.status, a.raw)
	}
	if a := call(t, srv.URL, "GET", "/api/v3/connected_accounts", "", "x-api-key", "k1"); a.status != 429 || a.header.Get("Retry-After") != "3" {
		t.Errorf("faulted list: %d %v", a.status, a.header)
	}
	if a := call(t, srv.URL, "GET", "/api/v3/connected_accounts", "", "x-api-key", "k1"); a.status != 200 {
		t.Errorf("after times=1: %d", a.status)
	}
	for _, body := range []string{`{"latency":"x"}`, `{}`, `{"reset":true,"hang":true}`} {
		if a := call(t, srv.URL, "PUT", "/_fake/faults/list", body); a.status != 400 {
			t.Errorf("bad fault %s: %d", body, a.status)
		}
	}
	if a := call(t, srv.URL, "PUT", "/_fake/faults/bogus", `{"status":500}`); a.status != 400 {
		t.Errorf("fault on unknown route: %d", a.status)
	}
	call(t, srv.URL, "PUT", "/_fake/faults/any", `{"status":500}`)
	call(t, srv.URL, "PUT", "/_fake/faults/link", `{"status":502}`)
	call(t, srv.URL, "DELETE", "/_fake/faults/any", "")
	if a := call(t, srv.URL, "GET", "/api/v3/connected_accounts", "", "x-api-key", "k1"); a.status != 200 {
		t.Errorf("after DELETE faults/any: %d", a.status)
	}
	call(t, srv.URL, "DELETE", "/_fake/faults", "")
	if a := call(t, srv.URL, "POST", "/api/v3/connected_accounts/link", linkBody, "x-api-key", "k1"); a.status != 201 {
		t.Errorf("after DELETE faults: %d", a.status)
	}

	// Sessions with the bodies that reached the fake.
	call(t, srv.URL, "POST", "/api/v3/tool_router/session", `{"user_id":"u1","workbench":{"sandbox_size":"xlarge"}}`, "x-api-key", "k1")
	var sessions []map[string]any
	decode(call(t, srv.URL, "GET", "/_fake/sessions", ""), &sessions)
	lb, _ := sessions[0]["last_body"].(map[string]any)
	if len(sessions) != 1 || sessions[0]["sandbox_size"] != "xlarge" || lb["user_id"] != "u1" {
		t.Errorf("sessions %v", sessions)
	}

	// Reset forgets everything.
	if a := call(t, srv.URL, "POST", "/_fake/reset", ""); a.status != 204 {
		t.Errorf("reset: %d", a.status)
	}
	if len(fake.Accounts("")) != 0 || len(fake.Sessions()) != 0 || len(fake.Requests()) != 0 {
		t.Error("reset left state")
	}
	if a := call(t, srv.URL, "DELETE", "/_fake/accounts", ""); a.status != 204 {
		t.Errorf("clear accounts: %d", a.status)
	}
	if a := call(t, srv.URL, "GET", "/_fake/nothing", ""); a.status != 404 {
		t.Errorf("unknown control route: %d", a.status)
	}
}

// A seeded session answers the API under its own id, for its project only,
// and links for the user its create body named.
func TestControlSeedSession(t *testing.T) {
	fake, srv := fakeserver.New(t)
	seed := call(t, srv.URL, "POST", "/_fake/sessions", `{"id":"trs_fixed1","credential":"k1","create_body":{"user_id":"u1"}}`)
	if seed.status != http.StatusCreated || seed.str("id") != "trs_fixed1" || seed.str("user_id") != "u1" {
		t.Fatalf("seed: %d %s", seed.status, seed.raw)
	}
	if a := call(t, srv.URL, "GET", "/api/v3.1/tool_router/session/trs_fixed1", "", "x-api-key", "k1"); a.status != 200 {
		t.Errorf("get as k1: %d %s", a.status, a.raw)
	}
	if a := call(t, srv.URL, "GET", "/api/v3.1/tool_router/session/trs_fixed1", "", "x-api-key", "k2"); a.status != 404 {
		t.Errorf("get as k2: %d %s, want 404", a.status, a.raw)
	}
	link := call(t, srv.URL, "POST", "/api/v3.1/tool_router/session/trs_fixed1/link", `{"toolkit":"github"}`, "x-api-key", "k1")
	if link.status != http.StatusCreated || fake.CountActive("k1", "u1", "ac_github") != 0 {
		t.Fatalf("link: %d %s", link.status, link.raw)
	}
	if accs := fake.Accounts("k1"); len(accs) != 1 || accs[0].UserID != "u1" || accs[0].Status != "INITIATED" {
		t.Errorf("accounts after the link: %+v", accs)
	}
	for _, body := range []string{`{"id":"trs_x","credential":"k1","create_body":{}}`, `{"create_body":[1]}`, `nope`} {
		if a := call(t, srv.URL, "POST", "/_fake/sessions", body); a.status != http.StatusBadRequest {
			t.Errorf("seed %s: %d, want 400", body, a.status)
		}
	}
}
