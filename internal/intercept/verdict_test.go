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
