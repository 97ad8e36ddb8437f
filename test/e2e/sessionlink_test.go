package e2e_test

// The Tool Router session's authorize(toolkit) route, guarded: played
// against the real binary and the fake Composio process.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/composio-guard/composio-guard/internal/apierror"
)

// createSession makes a session through the proxy; extra is more members of
// the create body ("" for none).
func createSession(t *testing.T, p *proxy, prefix, key, user, extra string) string {
	t.Helper()
	body := fmt.Sprintf(`{"user_id":%q%s}`, user, extra)
	a := send(t, http.MethodPost, p.URL+prefix+"/tool_router/session", []byte(body), "x-api-key", key)
	var s struct {
		ID string `json:"session_id"`
	}
	if a.status != http.StatusCreated || json.Unmarshal(a.body, &s) != nil || s.ID == "" {
		t.Fatalf("session create: %s", a)
	}
	return s.ID
}

func authorize(t *testing.T, p *proxy, prefix, key, session, toolkit string, hdr ...string) answer {
	t.Helper()
	return send(t, http.MethodPost, p.URL+prefix+"/tool_router/session/"+session+"/link",
		fmt.Appendf(nil, `{"toolkit":%q}`, toolkit), append([]string{"x-api-key", key}, hdr...)...)
}

func TestSessionLink(t *testing.T) {
	t.Parallel()
	f := startFake(t)
	p := startProxy(t, "enforce", f.URL)
	shadow := startProxy(t, "shadow", f.URL, "GUARD_MODE=shadow")

	for _, prefix := range []string{"/api/v3.1", "/api/v3"} {
		t.Run("pending_then_active"+prefix, func(t *testing.T) {
			t.Parallel()
			key, user := uniq("key"), uniq("user")
			s := createSession(t, p, prefix, key, user, "")
			first := authorize(t, p, prefix, key, s, "github")
			if first.status != http.StatusCreated {
				t.Fatalf("first authorize: %s", first)
			}
			// The toolkit spelled otherwise is refused (TestSessionLinkToolkitSpelling);
			// the same request while pending replays the first link.
			if again := authorize(t, p, prefix, key, s, "GitHub"); again.status != http.StatusBadRequest {
				t.Fatalf("repeat as GitHub: %s, want 400", again)
			}
			exact := authorize(t, p, prefix, key, s, "github")
			if exact.header.Get("X-Composio-Guard") != "replayed" || decodeLink(t, exact).RedirectURL != decodeLink(t, first).RedirectURL {
				t.Fatalf("exact repeat not replayed: %s", exact)
			}
			accounts := f.Accounts(t, key)
			if len(accounts) != 1 {
				t.Fatalf("%d accounts, want 1", len(accounts))
			}
			f.SetStatus(t, accounts[0].ID, "ACTIVE")
			a := authorize(t, p, prefix, key, s, "github")
			e := wantEnvelope(t, a, http.StatusConflict, apierror.SlugMultipleAccounts)
			if a.header.Get("X-Should-Retry") != "false" || fmt.Sprint(e.ExistingAccountIDs) != "["+accounts[0].ID+"]" ||
				!strings.Contains(e.Message, user) || !strings.Contains(e.Message, "github") {
				t.Fatalf("409: %s", a)
			}
			// The opt-in still makes another, and is stripped.
			if a := authorize(t, p, prefix, key, s, "github", apierror.HeaderAllowMultiple, "true"); a.status != http.StatusCreated {
				t.Fatalf("opt-in: %s", a)
			}
			if n := len(f.Accounts(t, key)); n != 2 {
				t.Fatalf("%d accounts after the opt-in, want 2", n)
			}
		})
	}

	t.Run("multi_account_cap", func(t *testing.T) {
		t.Parallel()
		key, user := uniq("key"), uniq("user")
		s := createSession(t, p, "/api/v3.1", key, user, `,"multi_account":{"enable":true,"max_accounts_per_toolkit":2}`)
		for i, want := range []int{http.StatusCreated, http.StatusCreated, http.StatusConflict} {
			a := authorize(t, p, "/api/v3.1", key, s, "github", "X-Request-Id", fmt.Sprintf("r%d", i))
			if i == 2 {
				wantEnvelope(t, a, http.StatusConflict, apierror.SlugMaxAccounts)
				break
			}
			if a.status != want {
				t.Fatalf("authorize %d: %s", i, a)
			}
			for _, acc := range f.Accounts(t, key) {
				f.SetStatus(t, acc.ID, "ACTIVE")
			}
		}
		if n := len(f.Accounts(t, key)); n != 2 {
			t.Fatalf("%d accounts, want 2", n)
		}
	})

	// A link through /connected_accounts/link and one through the session,
	// for the same user and toolkit, are caught in either order.
	t.Run("link_then_session", func(t *testing.T) {
		t.Parallel()
		key, user := uniq("key"), uniq("user")
		if a := send(t, http.MethodPost, p.URL+"/api/v3.1/connected_accounts/link", linkBody(user, "ac_github"), "x-api-key", key); a.status != http.StatusCreated {
			t.Fatalf("link: %s", a)
		}
		s := createSession(t, p, "/api/v3.1", key, user, "")
		a := authorize(t, p, "/api/v3.1", key, s, "github")
		wantEnvelope(t, a, http.StatusConflict, apierror.SlugLinkPending)
	})
	t.Run("session_then_link_pinned", func(t *testing.T) {
		t.Parallel()
		key, user := uniq("key"), uniq("user")
		s := createSession(t, p, "/api/v3.1", key, user, `,"auth_configs":{"github":"ac_pinned"}`)
		if a := authorize(t, p, "/api/v3.1", key, s, "github"); a.status != http.StatusCreated {
			t.Fatalf("authorize: %s", a)
		}
		a := send(t, http.MethodPost, p.URL+"/api/v3.1/connected_accounts/link", linkBody(user, "ac_pinned"), "x-api-key", key)
		wantEnvelope(t, a, http.StatusConflict, apierror.SlugLinkPending)
		if n := len(f.Accounts(t, key)); n != 1 {
			t.Fatalf("%d accounts, want 1", n)
		}
	})

	t.Run("concurrent_authorize_makes_one", func(t *testing.T) {
		t.Parallel()
		key, user := uniq("key"), uniq("user")
		s := createSession(t, p, "/api/v3.1", key, user, "")
		var wg sync.WaitGroup
		for range 10 {
			wg.Go(func() {
				req, _ := http.NewRequest(http.MethodPost, p.URL+"/api/v3.1/tool_router/session/"+s+"/link", strings.NewReader(`{"toolkit":"github"}`))
				if _, err := tryDo(req, "x-api-key", key); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if n := len(f.Accounts(t, key)); n != 1 {
			t.Fatalf("%d accounts, want 1", n)
		}
	})

	// One user id in two projects (two keys), both on GitHub's default auth
	// config: the proxy keys both by toolkit and user, so they share a lock,
	// but each project's pending link is its own. Interleaved, each repeat
	// is replayed its own project's first answer; neither project's link
	// drops or replaces the other's, and each project gets one account.
	t.Run("two_projects_one_user_id", func(t *testing.T) {
		t.Parallel()
		user := uniq("user")
		keys := []string{uniq("key_a"), uniq("key_b")}
		sessions := make([]string, len(keys))
		firsts := make([]answer, len(keys))
		for i, key := range keys {
			sessions[i] = createSession(t, p, "/api/v3.1", key, user, "")
			if firsts[i] = authorize(t, p, "/api/v3.1", key, sessions[i], "github"); firsts[i].status != http.StatusCreated {
				t.Fatalf("project %d: first authorize: %s", i, firsts[i])
			}
		}
		for round := range 2 {
			for i, key := range keys {
				a := authorize(t, p, "/api/v3.1", key, sessions[i], "github")
				if a.status != http.StatusCreated || a.header.Get("X-Composio-Guard") != "replayed" ||
					decodeLink(t, a).RedirectURL != decodeLink(t, firsts[i]).RedirectURL {
					t.Fatalf("project %d, repeat %d: want its own first link replayed, got %s", i, round, a)
				}
			}
		}
		for i, key := range keys {
			if n := len(f.Accounts(t, key)); n != 1 {
				t.Fatalf("project %d: %d accounts, want 1", i, n)
			}
		}
	})

	t.Run("session_refused_is_handed_back", func(t *testing.T) {
		t.Parallel()
		key := uniq("key")
		a := authorize(t, p, "/api/v3.1", key, "trs_nosuch", "github")
		if a.status != http.StatusNotFound || !strings.Contains(string(a.body), "ToolRouter_SessionNotFound") {
			t.Fatalf("unknown session: %s", a)
		}
	})

	t.Run("bad_input", func(t *testing.T) {
		t.Parallel()
		key, user := uniq("key"), uniq("user")
		s := createSession(t, p, "/api/v3.1", key, user, "")
		for _, body := range []string{`{}`, `{"toolkit":1}`, `{"toolkit":""}`, `{"toolkit":"a","toolkit":"b"}`, `not json`} {
			a := send(t, http.MethodPost, p.URL+"/api/v3.1/tool_router/session/"+s+"/link", []byte(body), "x-api-key", key)
			wantEnvelope(t, a, http.StatusBadRequest, apierror.SlugBadRequest)
		}
		if n := len(f.Accounts(t, key)); n != 0 {
			t.Fatalf("%d accounts made by bad input", n)
		}
	})

	t.Run("shadow_forwards_and_counts", func(t *testing.T) {
		t.Parallel()
		key, user := uniq("key"), uniq("user")
		s := createSession(t, shadow, "/api/v3.1", key, user, "")
		authorize(t, shadow, "/api/v3.1", key, s, "github")
		for _, acc := range f.Accounts(t, key) {
			f.SetStatus(t, acc.ID, "ACTIVE")
		}
		if a := authorize(t, shadow, "/api/v3.1", key, s, "github"); a.status != http.StatusCreated {
			t.Fatalf("shadow: %s", a)
		}
		if v, _ := shadow.Metric(t, "composio_guard_decisions_total", map[string]string{"route": "session_link", "decision": "rejected_duplicate", "mode": "shadow"}); v < 1 {
			t.Fatalf("shadow would-refusal not counted: %v", v)
		}
	})
}
