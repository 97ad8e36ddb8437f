package server

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"go.uber.org/zap"

	"github.com/composio-guard/composio-guard/internal/reqscope"
)

type releaser struct{ held int64 }

func (r *releaser) Release(n int64) { r.held -= n }

// What a request holds on its scope (the guard's body budget) goes back once
// it is served, when the handler returns and when it panics.
func TestRequestIDEndsScope(t *testing.T) {
	for _, panics := range []bool{false, true} {
		budget := &releaser{}
		h := Chain(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			sc := reqscope.From(r.Context())
			if !sc.Hold(budget, 4096) {
				t.Error("the server's scope cannot hold")
			}
			budget.held += 4096
			if panics {
				panic("boom")
			}
		}), Recover(zap.NewNop()), RequestID(zap.NewNop()))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/api/v3/connected_accounts/link", nil))
		if budget.held != 0 {
			t.Errorf("panics %v: %d bytes still held after the request (status %d)", panics, budget.held, rec.Code)
		}
	}
}
