package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// The naive guard makes the lookup the real guard makes, answers 409 on an
// ACTIVE account, forwards the link otherwise, and forwards everything else.
func TestNaiveGuard(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.RequestURI()+" key="+r.Header.Get("x-api-key")+" "+string(body))
		mu.Unlock()
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/api/v3/connected_accounts":
			if strings.HasPrefix(r.URL.Query().Get("auth_config_ids"), "ac_active") {
				_, _ = io.WriteString(w, `{"items":[{"id":"ca_1","status":"ACTIVE"}],"next_cursor":null}`)
				return
			}
			_, _ = io.WriteString(w, `{"items":[{"id":"ca_2","status":"INITIATED"}],"next_cursor":null}`)
		case r.URL.Path == "/api/v3/connected_accounts/link":
			w.WriteHeader(http.StatusCreated)
			_, _ = io.WriteString(w, `{"connected_account_id":"ca_new"}`)
		default:
			_, _ = io.WriteString(w, `{"ok":true}`)
		}
	}))
	defer up.Close()
	g, err := newGuard(up.URL)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g)
	defer srv.Close()

	do := func(method, path, body string) int {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		req.Header.Set("x-api-key", "k1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	take := func() []string {
		mu.Lock()
		defer mu.Unlock()
		s := seen
		seen = nil
		return s
	}
	link := `{"auth_config_id":"%s","user_id":"user_7","alias":"work"}`

	if got := do("POST", "/api/v3/connected_accounts/link", strings.Replace(link, "%s", "ac_active_1", 1)); got != http.StatusConflict {
		t.Errorf("ACTIVE: status %d, want 409", got)
	}
	want := "GET /api/v3/connected_accounts?auth_config_ids=ac_active_1&statuses=ACTIVE%2CINITIATED&user_ids=user_7 key=k1 "
	if s := take(); len(s) != 1 || s[0] != want {
		t.Errorf("ACTIVE: upstream saw %q, want only %q", s, want)
	}

	body := strings.Replace(link, "%s", "ac_free", 1)
	if got := do("POST", "/api/v3/connected_accounts/link", body); got != http.StatusCreated {
		t.Errorf("none ACTIVE: status %d, want 201", got)
	}
	if s := take(); len(s) != 2 || !strings.HasPrefix(s[0], "GET /api/v3/connected_accounts?") || s[1] != "POST /api/v3/connected_accounts/link key=k1 "+body {
		t.Errorf("none ACTIVE: upstream saw %q, want the lookup then the link", s)
	}

	if got := do("POST", "/api/v3/connected_accounts/link", `{"user_id":`); got != http.StatusBadRequest {
		t.Errorf("bad body: status %d, want 400", got)
	}
	if got := do("GET", "/api/v3/toolkits?limit=5", ""); got != http.StatusOK {
		t.Errorf("pass-through: status %d", got)
	}
	if s := take(); len(s) != 1 || s[0] != "GET /api/v3/toolkits?limit=5 key=k1 " {
		t.Errorf("pass-through: upstream saw %q", s)
	}
}
