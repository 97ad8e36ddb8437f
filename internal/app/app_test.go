package app_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/composio-guard/composio-guard/internal/apierror"
	"github.com/composio-guard/composio-guard/internal/app"
	"github.com/composio-guard/composio-guard/internal/composiotest"
	"github.com/composio-guard/composio-guard/internal/config"
)

func load(t *testing.T, upstream string, env map[string]string) config.Config {
	t.Helper()
	base := map[string]string{
		"GUARD_UPSTREAM_URL": upstream,
		"GUARD_LISTEN_ADDR":  "127.0.0.1:0",
		"GUARD_ADMIN_ADDR":   "127.0.0.1:0",
		"GUARD_DRAIN_DELAY":  "0s",
	}
	for k, v := range env {
		base[k] = v
	}
	cfg, err := config.LoadFrom(base)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// The assembled handler is the whole request path: a pass-through answer
// from upstream, and the guard's own 409 for a duplicate link.
func TestNewBuildsTheRequestPath(t *testing.T) {
	fake := composiotest.New()
	up := httptest.NewServer(fake)
	t.Cleanup(func() { fake.Close(); up.Close() })
	fake.AddAccount(composiotest.Account{Credential: "key_app", UserID: "u1", AuthConfigID: "ac_app"})

	p, err := app.New(load(t, up.URL, nil), app.Options{Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	h := p.Handler()

	get := httptest.NewRequest(http.MethodGet, "/api/v3/connected_accounts?user_ids=u1", nil)
	get.Header.Set("x-api-key", "key_app")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, get)
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"ac_app"`) {
		t.Fatalf("pass-through GET: %d %s", w.Code, w.Body)
	}

	link := httptest.NewRequest(http.MethodPost, "/api/v3/connected_accounts/link",
		strings.NewReader(`{"auth_config_id":"ac_app","user_id":"u1"}`))
	link.Header.Set("x-api-key", "key_app")
	link.Header.Set("content-type", "application/json")
	w = httptest.NewRecorder()
	h.ServeHTTP(w, link)
	if w.Code != http.StatusConflict || !strings.Contains(w.Body.String(), apierror.SlugMultipleAccounts) {
		t.Fatalf("duplicate link: %d %s", w.Code, w.Body)
	}
	if n := fake.Count(http.MethodPost, composiotest.RouteLink); n != 0 {
		t.Errorf("%d links reached the upstream", n)
	}
}

// Run binds both listeners, serves, and drains cleanly when ctx ends.
func TestRunServesAndStops(t *testing.T) {
	p, err := app.New(load(t, "http://127.0.0.1:9", nil), app.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	select {
	case <-p.Server.Bound():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	}
	res, err := http.Get("http://" + p.Server.AdminAddr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("/readyz = %d", res.StatusCode)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
}

// The Redis backend is opened lazily: a Redis that is down is no start-up
// failure, and Close releases it.
func TestNewWithRedis(t *testing.T) {
	p, err := app.New(load(t, "http://127.0.0.1:9", map[string]string{
		"GUARD_LOCK_BACKEND": "redis", "GUARD_REDIS_URL": "redis://127.0.0.1:9/0",
	}), app.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Store.Backend() != "redis" {
		t.Errorf("backend %s", p.Store.Backend())
	}
	p.Close()
}
