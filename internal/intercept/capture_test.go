package intercept_test

import (
	"bufio"
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

// A guarded answer is recorded for the lease, yet still streams: the first
// chunk reaches the client while the upstream is still writing.
func TestGuardedAnswerStreams(t *testing.T) {
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte("{\"connected_account_id\":\"ca_1\",\n"))
		http.NewResponseController(w).Flush()
		<-release
		_, _ = w.Write([]byte(`"redirect_url":"https://x.example"}`))
	}))
	defer up.Close()
	defer close(release)
	target, _ := url.Parse(up.URL)
	fwd := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(target) }, FlushInterval: -1}
	lister := &fakeLister{f: &fakeComposio{}}
	srv := httptest.NewServer(intercept.Router(intercept.NewGuard(intercept.Config{LockTTL: 3 * time.Second}, lister, lock.NewMemory(), fwd, nil), fwd))
	defer srv.Close()

	got := make(chan string, 1)
	go func() {
		res, err := http.Post(srv.URL+"/api/v3/connected_accounts/link", "application/json", strings.NewReader(`{"user_id":"u","auth_config_id":"ac"}`))
		if err != nil {
			got <- err.Error()
			return
		}
		defer res.Body.Close()
		line, _ := bufio.NewReader(res.Body).ReadString('\n')
		got <- line
	}()
	select {
	case line := <-got:
		if !strings.Contains(line, "ca_1") {
			t.Fatalf("first chunk %q", line)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the first chunk was held back: the capture writer does not flush")
	}
}
