package intercept_test

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/composio-guard/composio-guard/internal/intercept"
	"github.com/composio-guard/composio-guard/internal/lock"
)

// expiring is a store whose locks lapse after their ttl, as Redis's do.
type expiring struct{ lock.Store }

func (expiring) LocksExpire() {}

// A forward made under a lock that lapses must end before the lock's ttl:
// past it another request could take the key and create a second account.
// Under a memory lock, which never lapses, the same deadline applies: a
// forward whose answer stalls must not keep every other create of its key
// waiting without end (an operator's review saw 100 s of 503s).
func TestForwardEndsBeforeLockLapses(t *testing.T) {
	const ttl = 600 * time.Millisecond
	for _, tc := range []struct {
		name  string
		store lock.Store
		cut   bool
	}{
		{"lock that lapses", expiring{lock.NewMemory()}, true},
		{"memory lock", lock.NewMemory(), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gone := make(chan time.Duration, 1)
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body) // then net/http watches the connection
				start := time.Now()
				select {
				case <-r.Context().Done(): // the proxy gave up on the forward
					gone <- time.Since(start)
				case <-time.After(3 * ttl):
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(http.StatusCreated)
					_, _ = w.Write([]byte(`{"connected_account_id":"ca_1","redirect_url":"https://x.example"}`))
				}
			}))
			defer up.Close()
			target, _ := url.Parse(up.URL)
			fwd := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(target) }, ErrorLog: log.New(io.Discard, "", 0)}
			g := intercept.NewGuard(intercept.Config{LockTTL: ttl, LookupTimeout: 100 * time.Millisecond}, &fakeLister{f: &fakeComposio{}}, tc.store, fwd, nil)
			srv := httptest.NewServer(intercept.Router(g, fwd))
			defer srv.Close()

			start := time.Now()
			res, err := http.Post(srv.URL+"/api/v3/connected_accounts/link", "application/json", strings.NewReader(`{"user_id":"u","auth_config_id":"ac"}`))
			if err != nil {
				t.Fatal(err)
			}
			_ = res.Body.Close()
			took := time.Since(start)
			if !tc.cut {
				if res.StatusCode != http.StatusCreated || took < 3*ttl {
					t.Fatalf("status %d after %s: a forward under a memory lock was cut", res.StatusCode, took)
				}
				return
			}
			if res.StatusCode != http.StatusBadGateway || took >= ttl {
				t.Fatalf("status %d after %s: want 502 before the lock's ttl (%s)", res.StatusCode, took, ttl)
			}
			select {
			case d := <-gone:
				if d >= ttl {
					t.Errorf("the upstream saw the forward end after %s, not before the ttl", d)
				}
			case <-time.After(2 * time.Second):
				t.Error("the upstream never saw the forward end")
			}
		})
	}
}
