package replicas_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/composio-guard/composio-guard/internal/apierror"
	"github.com/composio-guard/composio-guard/internal/composiotest"
	"github.com/composio-guard/composio-guard/internal/lock/redistest"
	"github.com/composio-guard/composio-guard/internal/testproc"
)

const (
	apiKey        = "test_key_replicas" // a test key: the fake's request log keeps it
	authConfig    = "ac_replicas"
	lookupTimeout = 4 * time.Second
	concurrent    = 60
)

// cluster is one Redis, one fake Composio and the proxies in front of it.
type cluster struct {
	redis    *redistest.Server
	fake     *testproc.Fake
	replicas []*replica
	client   *http.Client
}

type replica struct {
	*testproc.Proxy
	failureMode string
}

// answer is what a caller of the proxy saw.
type answer struct {
	replica string
	status  int
	header  http.Header
	body    []byte
	took    time.Duration
}

func (a answer) String() string {
	return fmt.Sprintf("%s: %d %s", a.replica, a.status, bytes.TrimSpace(a.body))
}

func (a answer) slug() string {
	var env struct {
		Error struct {
			Slug string `json:"slug"`
		} `json:"error"`
	}
	_ = json.Unmarshal(a.body, &env)
	return env.Error.Slug
}

func (a answer) redirectURL() string {
	var b struct {
		RedirectURL string `json:"redirect_url"`
	}
	_ = json.Unmarshal(a.body, &b)
	return b.RedirectURL
}

func start(t *testing.T, failureModes ...string) *cluster {
	t.Helper()
	srv := redistest.Start(t)
	c := launch(t, srv.URL(), nil, failureModes...)
	c.redis = srv
	return c
}

// launch starts the fake and one proxy per failure mode on the Redis at
// redisURL, with env added to each proxy's settings.
func launch(t *testing.T, redisURL string, env []string, failureModes ...string) *cluster {
	t.Helper()
	c := &cluster{
		fake:   testproc.StartFake(t),
		client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: concurrent}},
	}
	t.Cleanup(c.client.CloseIdleConnections)
	for i, fm := range failureModes {
		p := testproc.LaunchProxy(t, c.fake.URL, testproc.ProxyOptions{
			Name: fmt.Sprintf("replica-%d(%s)", i, fm),
			Env: append([]string{
				"GUARD_FAILURE_MODE=" + fm,
				"GUARD_LOCK_BACKEND=redis",
				"GUARD_REDIS_URL=" + redisURL,
				"GUARD_REDIS_TIMEOUT=500ms",
				"GUARD_LOOKUP_TIMEOUT=" + lookupTimeout.String(),
			}, env...),
		})
		c.replicas = append(c.replicas, &replica{Proxy: p, failureMode: fm})
	}
	return c
}

// link sends one SDK-shaped link POST for user through r.
func (c *cluster) link(t *testing.T, r *replica, user string) answer {
	t.Helper()
	body := fmt.Sprintf(`{"auth_config_id":%q,"user_id":%q,"callback_url":"https://app.example/cb"}`, authConfig, user)
	req, err := http.NewRequest(http.MethodPost, r.URL+"/api/v3/connected_accounts/link", strings.NewReader(body))
	if err != nil {
		t.Error(err)
		return answer{replica: r.Name}
	}
	req.Header.Set("x-api-key", apiKey)
	req.Header.Set("content-type", "application/json")
	start := time.Now()
	res, err := c.client.Do(req)
	if err != nil {
		t.Errorf("%s: POST link: %v", r.Name, err)
		return answer{replica: r.Name}
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Errorf("%s: read answer: %v", r.Name, err)
	}
	return answer{replica: r.Name, status: res.StatusCode, header: res.Header, body: b, took: time.Since(start)}
}

// accounts lists the fake's accounts of user on the test auth config.
func (c *cluster) accounts(t *testing.T, user string) []composiotest.Account {
	t.Helper()
	var mine []composiotest.Account
	for _, a := range c.fake.Accounts(t, apiKey) {
		if a.UserID == user && a.AuthConfigID == authConfig {
			mine = append(mine, a)
		}
	}
	return mine
}

// linksForwarded counts the link POSTs for user that reached the fake.
func (c *cluster) linksForwarded(t *testing.T, user string) int {
	t.Helper()
	n := 0
	for _, r := range c.fake.Requests(t, http.MethodPost, composiotest.RouteLink) {
		if strings.Contains(string(r.Body), strconv.Quote(user)) {
			n++
		}
	}
	return n
}

// metric sums the samples of name whose labels contain every given pair.
func (c *cluster) metric(t *testing.T, r *replica, name string, labels ...string) float64 {
	t.Helper()
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	v, _ := r.Metric(t, name, want)
	return v
}

func (c *cluster) readyz(t *testing.T, r *replica) int {
	t.Helper()
	res, err := c.client.Get(r.AdminURL + "/readyz")
	if err != nil {
		t.Fatalf("%s: GET /readyz: %v", r.Name, err)
	}
	res.Body.Close()
	return res.StatusCode
}

// race fires concurrent links for one user, spread round-robin over the
// replicas, released together.
func (c *cluster) race(t *testing.T, user string, n int) []answer {
	t.Helper()
	answers := make([]answer, n)
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-gate
			answers[i] = c.link(t, c.replicas[i%len(c.replicas)], user)
		})
	}
	close(gate)
	wg.Wait()
	return answers
}

// assertOneAccount checks the race's outcome: one account upstream, one
// forwarded link, and every other caller told about it.
func assertOneAccount(t *testing.T, c *cluster, user string, answers []answer) {
	t.Helper()
	if got := c.accounts(t, user); len(got) != 1 {
		t.Fatalf("accounts created upstream for %s: %d, want exactly 1: %+v", user, len(got), got)
	}
	if got := c.linksForwarded(t, user); got != 1 {
		t.Fatalf("link POSTs that reached Composio for %s: %d, want 1", user, got)
	}
	account := c.accounts(t, user)[0]
	var first []answer
	redirect := ""
	for _, a := range answers {
		if a.status == http.StatusCreated && a.header.Get(apierror.HeaderGuard) != "replayed" {
			first = append(first, a)
			redirect = a.redirectURL()
		}
	}
	if len(first) != 1 {
		t.Fatalf("%d callers got a forwarded 201, want 1: %v", len(first), first)
	}
	if redirect == "" || (account.RedirectURL != "" && redirect != account.RedirectURL) {
		t.Fatalf("first answer's redirect_url %q, the fake's account says %q", redirect, account.RedirectURL)
	}
	perReplica := map[string]int{}
	kinds := map[string]int{}
	defer func() { t.Logf("%s: answers %v", user, kinds) }()
	for _, a := range answers {
		perReplica[a.replica]++
		kinds[fmt.Sprintf("%d %s%s", a.status, a.header.Get(apierror.HeaderGuard), a.slug())]++
		switch {
		case a.status == http.StatusCreated && a.header.Get(apierror.HeaderGuard) == "replayed":
			if got := a.redirectURL(); got != redirect {
				t.Errorf("replayed answer from %s: redirect_url %q, want the first link's %q", a.replica, got, redirect)
			}
		case a.status == http.StatusCreated:
			// the one forwarded link
		case a.status == http.StatusConflict:
			if s := a.slug(); s != apierror.SlugLinkPending && s != apierror.SlugMultipleAccounts {
				t.Errorf("409 with slug %q: %v", s, a)
			}
			if a.header.Get(apierror.HeaderShouldRetry) != "false" {
				t.Errorf("409 without x-should-retry: false: %v", a)
			}
		default:
			t.Errorf("unexpected answer %v", a)
		}
	}
	if len(perReplica) != len(c.replicas) {
		t.Fatalf("answers came from %d replicas, want %d", len(perReplica), len(c.replicas))
	}
}

func TestReplicasShareTheGuard(t *testing.T) {
	c := start(t, "closed", "closed", "open")
	closed, open := c.replicas[:2], c.replicas[2]

	t.Run("race", func(t *testing.T) {
		answers := c.race(t, "user_race", concurrent)
		assertOneAccount(t, c, "user_race", answers)
		for _, r := range c.replicas {
			if got := c.metric(t, r, "composio_guard_lock_backend_up", "backend", "redis"); got != 1 {
				t.Errorf("%s: lock_backend_up{backend=redis} = %v, want 1", r.Name, got)
			}
		}
	})
	if t.Failed() {
		return
	}

	t.Run("redis killed mid-burst", func(t *testing.T) {
		// A slow link keeps the first caller inside its guarded create while
		// Redis dies; the callers still waiting for the lock must fail closed.
		c.fake.SetFault(t, composiotest.RouteLink, composiotest.Fault{Latency: 300 * time.Millisecond})
		defer c.fake.ClearFaults(t)
		const user = "user_midrun"
		answers := make([]answer, concurrent)
		var wg sync.WaitGroup
		for i := range concurrent {
			wg.Go(func() { answers[i] = c.link(t, closed[i%len(closed)], user) })
		}
		time.Sleep(100 * time.Millisecond)
		c.redis.Kill()
		wg.Wait()

		accounts := len(c.accounts(t, user))
		if accounts > 1 {
			t.Fatalf("%d accounts upstream for %s, want at most 1", accounts, user)
		}
		if n := c.linksForwarded(t, user); n != accounts {
			t.Fatalf("%d links forwarded, %d accounts", n, accounts)
		}
		kinds := map[string]int{}
		for _, a := range answers {
			guard := a.header.Get(apierror.HeaderGuard)
			kinds[fmt.Sprintf("%d %s%s", a.status, guard, a.slug())]++
			switch {
			case a.status == http.StatusCreated && guard != "replayed":
				accounts-- // one per account created
			case a.status == http.StatusCreated, a.status == http.StatusConflict:
			case a.status == http.StatusServiceUnavailable:
				if a.header.Get("Retry-After") == "" || a.slug() != apierror.SlugGuardUnavailable {
					t.Errorf("503 without Retry-After or with slug %q: %v", a.slug(), a)
				}
			default:
				t.Errorf("unexpected answer %v", a)
			}
		}
		t.Logf("%s: answers %v", user, kinds)
		if accounts != 0 {
			t.Errorf("forwarded 201s do not match the accounts created: %v", kinds)
		}
		if kinds[fmt.Sprintf("%d %s", http.StatusServiceUnavailable, apierror.SlugGuardUnavailable)] == 0 {
			t.Errorf("no caller saw Redis go away (no 503): %v", kinds)
		}
	})
	c.redis.Kill() // already dead unless the subtest above stopped early

	t.Run("redis down, closed", func(t *testing.T) {
		for i, r := range closed {
			user := "user_down_" + strconv.Itoa(i)
			a := c.link(t, r, user)
			if a.status != http.StatusServiceUnavailable || a.slug() != apierror.SlugGuardUnavailable {
				t.Fatalf("%s with Redis down: %v, want 503 %s", r.Name, a, apierror.SlugGuardUnavailable)
			}
			if a.header.Get("Retry-After") == "" {
				t.Errorf("%s: 503 without Retry-After", r.Name)
			}
			// The point is no hang: well under the lookup timeout.
			if a.took > lookupTimeout/2 {
				t.Errorf("%s: 503 took %v, lookup timeout %v", r.Name, a.took, lookupTimeout)
			}
			if n := c.linksForwarded(t, user); n != 0 {
				t.Errorf("%s: %d link(s) forwarded while failing closed", r.Name, n)
			}
		}
	})

	t.Run("redis down, open", func(t *testing.T) {
		before := c.metric(t, open, "composio_guard_decisions_total", "decision", "failed_open")
		a := c.link(t, open, "user_down_open")
		if a.status != http.StatusCreated || a.header.Get(apierror.HeaderGuard) == "replayed" {
			t.Fatalf("%s with Redis down: %v, want the forwarded 201", open.Name, a)
		}
		if a.took > lookupTimeout/2 {
			t.Errorf("%s: answer took %v, lookup timeout %v", open.Name, a.took, lookupTimeout)
		}
		if n := c.linksForwarded(t, "user_down_open"); n != 1 {
			t.Errorf("links forwarded by the fail-open replica: %d, want 1", n)
		}
		if after := c.metric(t, open, "composio_guard_decisions_total", "decision", "failed_open"); after != before+1 {
			t.Errorf("decisions_total{decision=failed_open}: %v -> %v, want +1", before, after)
		}
	})

	t.Run("redis down, metrics and readiness", func(t *testing.T) {
		for _, r := range c.replicas {
			if got := c.metric(t, r, "composio_guard_lock_backend_up", "backend", "redis"); got != 0 {
				t.Errorf("%s: lock_backend_up{backend=redis} = %v while Redis is down, want 0", r.Name, got)
			}
			if got := c.metric(t, r, "composio_guard_lock_errors_total", "backend", "redis"); got == 0 {
				t.Errorf("%s: lock_errors_total{backend=redis} is 0 while Redis is down", r.Name)
			}
			if code := c.readyz(t, r); code != http.StatusOK {
				t.Errorf("%s: /readyz = %d while Redis is down, want 200 (Redis is a guard decision, not a pod failure)", r.Name, code)
			}
		}
	})

	c.redis.Restart()

	t.Run("recovery", func(t *testing.T) {
		// Each replica must guard again by itself within a few seconds.
		for i, r := range c.replicas {
			user := "user_recovered_" + strconv.Itoa(i)
			deadline := time.Now().Add(5 * time.Second)
			var a answer
			for {
				a = c.link(t, r, user)
				if a.status != http.StatusServiceUnavailable || time.Now().After(deadline) {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if a.status != http.StatusCreated {
				t.Fatalf("%s after Redis came back: %v, want 201", r.Name, a)
			}
			// Guarded again, and across replicas: the next replica replays.
			next := c.replicas[(i+1)%len(c.replicas)]
			b := c.link(t, next, user)
			if b.status != http.StatusCreated || b.header.Get(apierror.HeaderGuard) != "replayed" || b.redirectURL() != a.redirectURL() {
				t.Fatalf("repeat through %s after recovery: %v (X-Composio-Guard %q), want the replayed first answer",
					next.Name, b, b.header.Get(apierror.HeaderGuard))
			}
			if n := len(c.accounts(t, user)); n != 1 {
				t.Fatalf("%s: %d accounts upstream, want 1", user, n)
			}
		}
		answers := c.race(t, "user_race_after", concurrent)
		assertOneAccount(t, c, "user_race_after", answers)
		for _, r := range c.replicas {
			if got := c.metric(t, r, "composio_guard_lock_backend_up", "backend", "redis"); got != 1 {
				t.Errorf("%s: lock_backend_up{backend=redis} = %v after recovery, want 1", r.Name, got)
			}
		}
	})
}
