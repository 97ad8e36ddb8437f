package intercept

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/composio-guard/composio-guard/internal/lock"
	"github.com/composio-guard/composio-guard/internal/metrics"
	"github.com/composio-guard/composio-guard/internal/reqscope"
	"github.com/composio-guard/composio-guard/internal/upstream"
)

// listerFunc answers the lookup from a function.
type listerFunc func(q upstream.ListQuery) (upstream.ListResult, error)

func (f listerFunc) List(_ context.Context, q upstream.ListQuery) (upstream.ListResult, error) {
	return f(q)
}

func accounts(as ...upstream.Account) listerFunc {
	return func(upstream.ListQuery) (upstream.ListResult, error) { return upstream.ListResult{Items: as}, nil }
}

// evaluateLink runs the duplicate policy on one request, with no server:
// the verdict is a value to read.
func evaluateLink(t *testing.T, cfg Config, lister Lister, store lock.Store, method, path, body string, hdr ...string) verdict {
	t.Helper()
	cfg = withDefaults(cfg)
	m := metrics.New(metrics.Build{})
	p := newDuplicatePolicy(cfg, newBodyTools(cfg, false), lister, store, m)
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	r.Header.Set("X-Api-Key", "k")
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	route, prefix := Classify(method, r.URL.EscapedPath())
	c := &call{w: httptest.NewRecorder(), r: r, sc: &reqscope.Scope{RequestID: "rid"}, route: route, prefix: prefix}
	v := p.evaluate(c)
	if v.hold != nil {
		v.hold.release()
	}
	return v
}

// The duplicate guard's decisions, table-driven, without an HTTP server.
func TestDuplicateVerdicts(t *testing.T) {
	const link = "/api/v3.1/connected_accounts/link"
	body := `{"auth_config_id":"ac","user_id":"u"}`
	now := time.Now()
	for _, tc := range []struct {
		name     string
		cfg      Config
		lister   Lister
		path     string
		body     string
		hdr      []string
		decision string
		reason   string
		status   int // of the refusal; 0: none (forwarded or replayed)
		failed   bool
	}{
		{"nothing there", Config{}, accounts(), link, body, nil, DecisionAllowed, ReasonNoAccount, 0, false},
		{"active account", Config{}, accounts(upstream.Account{ID: "ca", Status: "ACTIVE", UserID: "u", AuthConfigID: "ac"}),
			link, body, nil, DecisionRejectedDuplicate, ReasonActiveAccount, http.StatusConflict, false},
		{"another user's active account", Config{}, accounts(upstream.Account{ID: "ca", Status: "ACTIVE", UserID: "v", AuthConfigID: "ac"}),
			link, body, nil, DecisionAllowed, ReasonNoAccount, 0, false},
		{"live pending link made elsewhere", Config{}, accounts(upstream.Account{ID: "ca", Status: "INITIATED", UserID: "u", AuthConfigID: "ac", CreatedAt: now}),
			link, body, nil, DecisionRejectedPending, ReasonPendingUntracked, http.StatusConflict, false},
		{"pending ignored when off", Config{PendingAction: PendingOff}, accounts(upstream.Account{ID: "ca", Status: "INITIATED", CreatedAt: now}),
			link, body, nil, DecisionAllowed, ReasonPendingIgnored, 0, false},
		{"opt-in", Config{}, accounts(upstream.Account{ID: "ca", Status: "ACTIVE"}),
			link, body, []string{"X-Composio-Allow-Multiple", "true"}, DecisionAllowedMultiple, ReasonOptIn, 0, false},
		{"opt-in ignored when never", Config{AllowMultiple: AllowMultipleNever}, accounts(upstream.Account{ID: "ca", Status: "ACTIVE"}),
			link, body, []string{"X-Composio-Allow-Multiple", "true"}, DecisionRejectedDuplicate, ReasonActiveAccount, http.StatusConflict, false},
		{"composio down", Config{}, listerFunc(func(upstream.ListQuery) (upstream.ListResult, error) {
			return upstream.ListResult{}, errors.New("connection refused")
		}), link, body, nil, "", ReasonLookupError, 0, true},
		{"too many pages", Config{}, listerFunc(func(upstream.ListQuery) (upstream.ListResult, error) {
			return upstream.ListResult{}, fmt.Errorf("%w", upstream.ErrTooManyPages)
		}), link, body, nil, DecisionRejectedUnverifiable, ReasonTooManyAccounts, http.StatusUnprocessableEntity, false},
		{"not json", Config{}, accounts(), link, "user_id=u", nil, DecisionInvalidRequest, ReasonNotJSON, http.StatusBadRequest, false},
		{"two credentials", Config{}, accounts(), link, body, []string{"X-Org-Api-Key", "o"}, DecisionInvalidRequest, ReasonCredentialSchemes, http.StatusBadRequest, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := evaluateLink(t, tc.cfg, tc.lister, lock.NewMemory(), http.MethodPost, tc.path, tc.body, tc.hdr...)
			if v.decision != tc.decision || v.reason != tc.reason || v.refusal.err.Status != tc.status || v.failed != tc.failed {
				t.Fatalf("verdict %s/%s status %d failed %v, want %s/%s %d %v",
					v.decision, v.reason, v.refusal.err.Status, v.failed, tc.decision, tc.reason, tc.status, tc.failed)
			}
			if tc.status == http.StatusConflict && !v.refusal.opt.NoRetry {
				t.Fatal("a 409 without x-should-retry: false")
			}
		})
	}
}

// sessionsFunc answers the session read from a function.
type sessionsFunc func(id string) (upstream.Session, error)

func (f sessionsFunc) Session(_ context.Context, _, id, _ string, _ http.Header) (upstream.Session, error) {
	return f(id)
}
func (sessionsFunc) Invalidate(string) {}

// The session link's verdicts: whose account is the session's, and a
// session that cannot be read never lets a link through unchecked.
func TestSessionLinkVerdicts(t *testing.T) {
	const path = "/api/v3.1/tool_router/session/trs_1/link"
	session := func(s upstream.Session, err error) sessionsFunc {
		return func(string) (upstream.Session, error) { return s, err }
	}
	user := upstream.Session{UserID: "u", AuthConfigs: map[string]string{}}
	multi := upstream.Session{UserID: "u", MultiAccount: true, MaxAccounts: 2}
	active := func(id string) upstream.Account {
		return upstream.Account{ID: id, Status: "ACTIVE", UserID: "u", Toolkit: "github"}
	}
	for _, tc := range []struct {
		name     string
		sessions SessionReader
		lister   Lister
		decision string
		reason   string
		status   int
		failed   bool
	}{
		{"nothing there", session(user, nil), accounts(), DecisionAllowed, ReasonNoAccount, 0, false},
		{"active on the toolkit", session(user, nil), accounts(active("ca_1")), DecisionRejectedDuplicate, ReasonActiveAccount, http.StatusConflict, false},
		{"another toolkit's account", session(user, nil), accounts(upstream.Account{ID: "ca", Status: "ACTIVE", Toolkit: "gmail"}),
			DecisionAllowed, ReasonNoAccount, 0, false},
		{"multi-account below the cap", session(multi, nil), accounts(active("ca_1")), DecisionAllowed, ReasonNoAccount, 0, false},
		{"multi-account at the cap", session(multi, nil), accounts(active("ca_1"), active("ca_2")), DecisionRejectedDuplicate, ReasonMaxAccounts, http.StatusConflict, false},
		{"session unreadable", session(upstream.Session{}, errors.New("connection refused")), accounts(), "", ReasonSessionError, 0, true},
		{"session without a user", session(upstream.Session{}, nil), accounts(), DecisionRejectedUnverifiable, ReasonSessionNoUser, http.StatusUnprocessableEntity, false},
		{"no session reader", nil, accounts(), "", ReasonSessionError, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := withDefaults(Config{})
			p := newDuplicatePolicy(cfg, newBodyTools(cfg, false), tc.lister, lock.NewMemory(), metrics.New(metrics.Build{}))
			p.sessions = tc.sessions
			r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(`{"toolkit":"github"}`))
			r.Header.Set("X-Api-Key", "k")
			c := &call{w: httptest.NewRecorder(), r: r, sc: &reqscope.Scope{RequestID: "rid"}, route: reqscope.RouteSessionLink, prefix: "/api/v3.1"}
			v := p.evaluate(c)
			if v.hold != nil {
				v.hold.release()
			}
			if v.decision != tc.decision || v.reason != tc.reason || v.refusal.err.Status != tc.status || v.failed != tc.failed {
				t.Fatalf("verdict %s/%s status %d failed %v, want %s/%s %d %v",
					v.decision, v.reason, v.refusal.err.Status, v.failed, tc.decision, tc.reason, tc.status, tc.failed)
			}
		})
	}
}
