package deploy

import (
	"bufio"
	"context"
	"io"
	"maps"
	"net"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/composio-guard/composio-guard/internal/composiotest"
	"github.com/composio-guard/composio-guard/internal/composiotest/fakeserver"
	"github.com/composio-guard/composio-guard/internal/testproc"
)

// TestBinaryExposesEveryMetricUsed runs the real binary the way the gateway
// overlay does (Redis lock backend), in front of the fake Composio, drives
// the events the dashboard and the alerts watch, scrapes /metrics and checks
// that every metric their expressions name is in the exposition. It also
// runs the image's HEALTHCHECK command against it.
func TestBinaryExposesEveryMetricUsed(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	redis := miniredis.RunT(t)
	fake, upstream := fakeserver.New(t)
	fake.AddAccount(composiotest.Account{Credential: "key_1", UserID: "u_dup", AuthConfigID: "ac_1"})

	p := testproc.StartProxy(t, upstream.URL,
		"GUARD_LOCK_BACKEND=redis",
		"GUARD_REDIS_URL=redis://"+redis.Addr(),
		"GUARD_REDIS_TIMEOUT=200ms",
		// A sandbox policy, so session requests are counted.
		"GUARD_SANDBOX_MAX_SIZE=large",
		"GUARD_SHUTDOWN_GRACE=2s",
	)
	proxy, admin := p.URL, p.AdminAddr

	client := &http.Client{Timeout: 10 * time.Second}
	call := func(method, path, body string, want int) {
		t.Helper()
		req, err := http.NewRequest(method, proxy+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("x-api-key", "key_1")
		if body != "" {
			req.Header.Set("content-type", "application/json")
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s %s: status %d, want %d\n%s", method, path, resp.StatusCode, want, b)
		}
	}
	link := func(user string) string {
		return `{"auth_config_id":"ac_1","user_id":"` + user + `","callback_url":"https://app.example/cb"}`
	}

	call("GET", "/api/v3/connected_accounts?user_ids=u_dup", "", 200)   // pass-through
	call("POST", "/api/v3/connected_accounts/link", link("u_dup"), 409) // duplicate refused
	call("POST", "/api/v3/connected_accounts/link", link("u_new"), 201) // allowed, lease stored
	call("POST", "/api/v3.1/tool_router/session", `{"user_id":"u_new","workbench":{"sandbox_size":"medium"}}`, 201)
	// net/http resends an idempotent GET once on a reused connection that
	// was reset: fail more than once so the lookup really fails.
	if err := fake.SetFault(composiotest.RouteList, composiotest.Fault{Reset: true, Times: 4}); err != nil {
		t.Fatal(err)
	}
	call("POST", "/api/v3/connected_accounts/link", link("u_reset"), 503) // lookup failed: fail closed
	fake.ClearFaults()
	redis.Close()
	call("POST", "/api/v3/connected_accounts/link", link("u_noredis"), 503) // lock backend down: fail closed

	exposed := scrape(t, client, "http://"+admin+"/metrics")

	exprs := dashboardExprs(t, loadDashboard(t))
	for _, a := range loadSource(t).Alerts {
		exprs["alert "+a.Alert] = a.Expr
	}
	var missing []string
	for _, where := range slices.Sorted(maps.Keys(exprs)) {
		names, err := metricNames(exprs[where])
		if err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		for _, n := range names {
			if !exposed[n] && !synthetic[n] && !slices.Contains(missing, n) {
				missing = append(missing, n)
				t.Errorf("%s uses %s, which the running binary does not expose", where, n)
			}
		}
	}

	// The image's HEALTHCHECK: ["/composio-guard", "healthcheck"].
	health := func(adminAddr string) int {
		cmd := exec.Command(p.Cmd.Path, "healthcheck")
		cmd.Env = []string{"GUARD_ADMIN_ADDR=" + adminAddr}
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		} else if err != nil {
			t.Fatalf("healthcheck: %v\n%s", err, out)
		}
		return 0
	}
	if code := health(admin); code != 0 {
		t.Errorf("healthcheck against the running proxy exited %d, want 0", code)
	}
	if code := health(closedAddr(t)); code != 1 {
		t.Errorf("healthcheck against a closed port exited %d, want 1", code)
	}

	if code := p.Stop(); code != 0 {
		t.Errorf("SIGTERM: exit code %d, want 0\n%s", code, p.Logs())
	}
}

// scrape reads an exposition and returns every series name in it, HELP and
// TYPE lines included.
func scrape(t *testing.T, c *http.Client, url string) map[string]bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("scrape %s: status %d", url, resp.StatusCode)
	}
	names := map[string]bool{}
	types := map[string]string{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if f := strings.Fields(line); len(f) >= 4 && f[0] == "#" && f[1] == "TYPE" {
			names[f[2]], types[f[2]] = true, f[3]
			continue
		}
		if line == "" || line[0] == '#' {
			continue
		}
		name, _, _ := strings.Cut(line, "{")
		name, _, _ = strings.Cut(name, " ")
		names[name] = true
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read %s: %v", url, err)
	}
	// A histogram family announced by TYPE has its series even when the
	// exposition shows no sample yet.
	for n, typ := range types {
		if typ == "histogram" || typ == "summary" {
			names[n+"_sum"], names[n+"_count"] = true, true
			if typ == "histogram" {
				names[n+"_bucket"] = true
			}
		}
	}
	return names
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}
