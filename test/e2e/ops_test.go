package e2e_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/composio-guard/composio-guard/internal/apierror"
	"github.com/composio-guard/composio-guard/internal/composiotest"
	"github.com/composio-guard/composio-guard/internal/testproc"
)

// TestCredentialsNeverLogged sends distinctive credentials and cookies down
// every path (pass-through, forwarded, replayed, refused, failing) through a
// proxy logging at debug level, then looks for them in everything the
// process wrote and in its metrics.
func TestCredentialsNeverLogged(t *testing.T) {
	t.Parallel()
	f := startFake(t)
	p := startProxy(t, "debug-logs", f.URL, "GUARD_LOG_LEVEL=debug",
		"GUARD_LOOKUP_TIMEOUT=300ms", "GUARD_LOOKUP_BREAKER_THRESHOLD=0", "GUARD_MAX_BODY_BYTES=2048")

	const marker = "E2ESECRET" // in every secret below, and nowhere else
	apiKey := "sk_live_" + marker + "_apikey_9f1c2b"
	userKey := "uak_" + marker + "_userkey_77aa"
	orgKey := "oak_" + marker + "_orgkey_31bd"
	scoped := "scoped_nolist_" + marker + "_k3y"
	cookie := "session=" + marker + "_cookie_5e5e; other=" + marker + "_two"
	secrets := []string{apiKey, userKey, orgKey, scoped, cookie, marker}

	user, ac := uniq("user"), uniq("ac")
	withKey := []string{"x-api-key", apiKey, "Cookie", cookie}
	linkURL := p.URL + "/api/v3/connected_accounts/link"
	sent := 0
	step := func(method, u string, body []byte, hdr ...string) answer {
		t.Helper()
		sent++
		return send(t, method, u, body, hdr...)
	}

	step(http.MethodGet, p.URL+"/api/v3/connected_accounts?user_ids="+user, nil, withKey...)
	first := step(http.MethodPost, linkURL, linkBody(user, ac), withKey...)
	if first.status != http.StatusCreated {
		t.Fatalf("first link: %s", first)
	}
	step(http.MethodPost, linkURL, linkBody(user, ac), withKey...) // replayed
	f.SetStatus(t, decodeLink(t, first).ConnectedAccountID, composiotest.StatusActive)
	if a := step(http.MethodPost, linkURL, linkBody(user, ac), withKey...); a.status != http.StatusConflict {
		t.Errorf("duplicate: %s", a)
	}
	step(http.MethodPost, linkURL, linkBody(user, ac), append(withKey, apierror.HeaderAllowMultiple, "true")...)
	step(http.MethodPost, p.URL+"/api/v3.1/connected_accounts/link", linkBody(user, ac),
		"x-user-api-key", userKey, "x-org-id", "org_1", "Cookie", cookie)
	step(http.MethodPost, p.URL+"/api/v3/connected_accounts", createBody(user, ac), "x-org-api-key", orgKey, "Cookie", cookie)
	step(http.MethodPost, linkURL, []byte(`{"user_id":1}`), withKey...)
	step(http.MethodPost, linkURL, []byte(`{}`), append(withKey, "Content-Encoding", "br")...)
	step(http.MethodPost, linkURL, bytes.Repeat([]byte(" "), 4096), withKey...)
	if a := step(http.MethodPost, linkURL, linkBody(uniq("user"), ac), "x-api-key", scoped, "Cookie", cookie); a.status != http.StatusForbidden {
		t.Errorf("scoped key: %s", a)
	}
	step(http.MethodPost, linkURL, linkBody(user, ac), "x-api-key", apiKey, "x-org-api-key", orgKey) // two credentials: 401 from the lookup
	for _, fl := range []composiotest.Fault{
		{Status: 500, Body: "boom"}, {NotJSON: true}, {Hang: true}, {Reset: true},
		{Status: 429, Headers: map[string]string{"Retry-After": "1"}, Body: "{}"},
	} {
		f.SetFault(t, composiotest.RouteList, fl)
		step(http.MethodPost, linkURL, linkBody(uniq("user"), ac), withKey...)
		f.ClearFaults(t)
	}
	for _, fl := range []composiotest.Fault{{Status: 502, Body: "bad"}, {Reset: true}, {Truncate: true}} {
		f.SetFault(t, composiotest.RouteLink, fl)
		req, err := http.NewRequest(http.MethodPost, linkURL, bytes.NewReader(linkBody(uniq("user"), ac)))
		if err != nil {
			t.Fatal(err)
		}
		sent++
		_, _ = tryDo(req, withKey...) // a truncated answer may fail to read: fine
		f.ClearFaults(t)
	}

	logs := p.WaitLogs(5*time.Second, func(l string) bool { return strings.Count(l, `"msg":"request"`) >= sent })
	if n := strings.Count(logs, `"msg":"request"`); n < sent {
		t.Fatalf("access lines = %d for %d requests: the logs are not what this test assumes\n%s", n, sent, testproc.Tail(logs, 40))
	}
	if !strings.Contains(logs, "GUARD_LOG_LEVEL=debug") {
		t.Errorf("the proxy did not run at debug level")
	}
	metrics := string(send(t, http.MethodGet, p.AdminURL+"/metrics", nil).body)
	for _, s := range secrets {
		if i := strings.Index(logs, s); i >= 0 {
			t.Errorf("secret %q in the proxy's output: ...%s...", s, logs[max(0, i-200):min(len(logs), i+100)])
		}
		if strings.Contains(metrics, s) {
			t.Errorf("secret %q in /metrics", s)
		}
	}
}

// TestSIGTERMDrain: after SIGTERM /readyz answers 503, an in-flight request
// still completes with 200, and the process exits 0.
func TestSIGTERMDrain(t *testing.T) {
	t.Parallel()
	f := startFake(t)
	p := startProxy(t, "drain", f.URL, "GUARD_DRAIN_DELAY=200ms", "GUARD_SHUTDOWN_GRACE=10s")
	cred := uniq("key")
	acct := f.Seed(t, composiotest.Account{Credential: cred, UserID: uniq("user"), AuthConfigID: uniq("ac")})
	const slow = 1500 * time.Millisecond
	f.SetFault(t, composiotest.RouteGet, composiotest.Fault{Latency: slow})

	type result struct {
		a   answer
		err error
	}
	done := make(chan result, 1)
	go func() {
		req, err := http.NewRequest(http.MethodGet, p.URL+"/api/v3/connected_accounts/"+acct.ID, nil)
		if err != nil {
			done <- result{err: err}
			return
		}
		a, err := tryDo(req, "x-api-key", cred)
		done <- result{a, err}
	}()
	if !eventually(5*time.Second, func() bool { return len(f.RequestsOf(t, cred, composiotest.RouteGet)) == 1 }) {
		t.Fatal("the slow request never reached the fake")
	}
	if a := send(t, http.MethodGet, p.AdminURL+"/readyz", nil); a.status != http.StatusOK {
		t.Fatalf("/readyz before SIGTERM: %s", a)
	}
	sigterm := time.Now()
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	ready503 := eventually(slow/2, func() bool {
		req, _ := http.NewRequest(http.MethodGet, p.AdminURL+"/readyz", nil)
		a, err := tryDo(req)
		return err == nil && a.status == http.StatusServiceUnavailable
	})
	if !ready503 {
		t.Errorf("/readyz did not answer 503 during the drain")
	}

	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("in-flight request cut by the drain: %v", r.err)
		}
		if r.a.status != http.StatusOK || !strings.Contains(string(r.a.body), acct.ID) {
			t.Errorf("in-flight request: got %s, want 200 with the account", r.a)
		}
		if time.Since(sigterm) < slow/3 {
			t.Errorf("the in-flight request answered too soon after SIGTERM: the latency fault did not hold it")
		}
	case <-time.After(15 * time.Second):
		t.Fatal("in-flight request never answered")
	}
	if code := p.Wait(15 * time.Second); code != 0 {
		t.Errorf("exit code after SIGTERM = %d, want 0\n%s", code, testproc.Tail(p.Logs(), 30))
	}
}

// TestConfig: the binary refuses an invalid configuration naming every
// problem, checks a valid one with -check-config, and prints its version.
func TestConfig(t *testing.T) {
	t.Parallel()
	bin := proxyBin(t)
	safe := []string{"GUARD_LISTEN_ADDR=127.0.0.1:0", "GUARD_ADMIN_ADDR=127.0.0.1:0", "GUARD_UPSTREAM_URL=http://127.0.0.1:9"}
	for _, c := range []struct {
		name     string
		args     []string
		env      []string
		wantCode int // -1: any non-zero
		want     []string
	}{
		{"invalid settings", nil, []string{"GUARD_MODE=bogus", "GUARD_MAX_BODY_BYTES=-1"}, -1,
			[]string{"GUARD_MODE", "bogus", "GUARD_MAX_BODY_BYTES"}},
		{"invalid settings with -check-config", []string{"-check-config"}, []string{"GUARD_MODE=bogus", "GUARD_MAX_BODY_BYTES=-1"}, -1,
			[]string{"GUARD_MODE", "GUARD_MAX_BODY_BYTES"}},
		{"unparseable duration", []string{"-check-config"}, []string{"GUARD_LOOKUP_TIMEOUT=soon"}, -1,
			[]string{"GUARD_LOOKUP_TIMEOUT"}},
		{"valid -check-config", []string{"-check-config"}, []string{"GUARD_MODE=shadow", "GUARD_FAILURE_MODE=open"}, 0, nil},
		// A default gives way to the one setting given, and says so.
		{"shutdown grace alone", []string{"-check-config"}, []string{"GUARD_SHUTDOWN_GRACE=5s"}, 0,
			[]string{"configuration ok", "GUARD_SHUTDOWN_GRACE=5s GUARD_DRAIN_DELAY=1s", "note: GUARD_DRAIN_DELAY lowered from its default 5s to 1s"}},
		{"drain delay alone", []string{"-check-config"}, []string{"GUARD_DRAIN_DELAY=30s"}, 0,
			[]string{"GUARD_SHUTDOWN_GRACE=50s GUARD_DRAIN_DELAY=30s", "note: GUARD_SHUTDOWN_GRACE raised from its default 25s to 50s"}},
		{"drain delay and grace contradict", []string{"-check-config"}, []string{"GUARD_SHUTDOWN_GRACE=5s", "GUARD_DRAIN_DELAY=5s"}, -1,
			[]string{"GUARD_DRAIN_DELAY: (5s) must be shorter than GUARD_SHUTDOWN_GRACE (5s)"}},
		// A Redis URL alone means Redis; Redis settings the memory backend
		// cannot use are named, not silently dropped.
		{"redis URL alone", []string{"-check-config"}, []string{"GUARD_REDIS_URL=redis://guard:s3cret@127.0.0.1:6390/0"}, 0,
			[]string{"GUARD_LOCK_BACKEND=redis", "redis: one Redis endpoint: 127.0.0.1:6390", "note: GUARD_LOCK_BACKEND set from its default memory to redis, since GUARD_REDIS_URL is given"}},
		{"redis settings with the memory backend", []string{"-check-config"}, []string{"GUARD_LOCK_BACKEND=memory", "GUARD_REDIS_URL=redis://127.0.0.1:6390", "GUARD_REDIS_MIN_REPLICAS=1"}, 0,
			[]string{"GUARD_LOCK_BACKEND=memory", "warning: GUARD_REDIS_URL has no effect: GUARD_LOCK_BACKEND is memory (as set)",
				"warning: GUARD_REDIS_MIN_REPLICAS has no effect"}},
		{"version", []string{"-version"}, nil, 0, []string{"composio-guard"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, c.args...)
			cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, append(safe, c.env...)...)
			out, err := cmd.CombinedOutput()
			code := 0
			var ee *exec.ExitError
			switch {
			case errors.As(err, &ee):
				code = ee.ExitCode()
			case err != nil:
				t.Fatalf("run: %v\n%s", err, out)
			}
			if ctx.Err() != nil {
				t.Fatalf("the binary did not exit: it was serving\n%s", out)
			}
			if c.wantCode == -1 && code == 0 || c.wantCode >= 0 && code != c.wantCode {
				t.Errorf("exit code %d, want %d (-1: non-zero)\n%s", code, c.wantCode, out)
			}
			for _, s := range c.want {
				if !strings.Contains(string(out), s) {
					t.Errorf("output does not name %q:\n%s", s, out)
				}
			}
			if strings.Contains(string(out), "s3cret") {
				t.Errorf("the output holds a password:\n%s", out)
			}
		})
	}
}
