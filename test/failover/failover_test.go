package failover_test

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/composio-guard/composio-guard/internal/apierror"
	"github.com/composio-guard/composio-guard/internal/lock/redistest"
	"github.com/composio-guard/composio-guard/internal/testproc"
)

const (
	apiKey        = "test_key_failover" // a test key: the fake's request log keeps it
	authConfig    = "ac_failover"
	lookupTimeout = 2 * time.Second
	redisTimeout  = time.Second
	lockWait      = time.Second
	// bound is the longest any answer may take: the lookup timeout plus the
	// Redis timeout (the bound), plus scheduling slack on a shared
	// two-core machine.
	bound   = lookupTimeout + redisTimeout
	slack   = time.Second
	workers = 9
	// userEvery is how long one user is "current": every worker links it
	// through a random proxy, so each user is raced across the replicas.
	userEvery = 100 * time.Millisecond
	// quiet is how long without a failed check (no failed_closed or
	// failed_open decision on any proxy) counts as recovered.
	quiet = time.Second
)

type scenario struct {
	failureMode string
	minReplicas int
	replicas    int
}

func (s scenario) String() string {
	return fmt.Sprintf("%s,min_replicas=%d,replicas=%d", s.failureMode, s.minReplicas, s.replicas)
}

// answer is what one link caller saw.
type answer struct {
	proxy      int
	user       string
	sent, done time.Time
	status     int
	retryAfter string
	guard      string
	slug       string
	err        error
}

type harness struct {
	t       *testing.T
	sc      scenario
	set     *redistest.SentinelSet
	fake    *testproc.Fake
	proxies []*testproc.Proxy
	client  *http.Client
	prefix  string
	start   time.Time

	mu       sync.Mutex
	answers  []answer
	lastFail []time.Time // per proxy: when its failed-check count last moved
	failed   []float64   // per proxy: failed_closed + failed_open decisions so far
}

// TestFailover runs the Sentinel failover under load per failure mode and
// GUARD_REDIS_MIN_REPLICAS. With one replica and MIN_REPLICAS=1 the
// promoted primary has no replica to acknowledge: the guard keeps failing
// closed (lock_unreplicated) until the old primary rejoins as its replica.
// With two replicas it recovers as soon as the switch is over.
func TestFailover(t *testing.T) {
	for _, sc := range []scenario{
		{"closed", 1, 1},
		{"closed", 0, 1},
		{"open", 0, 1},
		{"closed", 1, 2},
	} {
		t.Run(sc.String(), func(t *testing.T) { runScenario(t, sc) })
	}
}

func runScenario(t *testing.T, sc scenario) {
	h := &harness{t: t, sc: sc, prefix: strings.NewReplacer(",", "_", "=", "").Replace(sc.String())}
	h.set = redistest.StartSentinel(t, redistest.SentinelOptions{Replicas: sc.replicas, DownAfter: time.Second, FailoverTimeout: 3 * time.Second})
	h.fake = testproc.StartFake(t)
	h.client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	t.Cleanup(h.client.CloseIdleConnections)
	for i := range 3 {
		h.proxies = append(h.proxies, testproc.LaunchProxy(t, h.fake.URL, testproc.ProxyOptions{
			Name:      fmt.Sprintf("replica-%d", i),
			KeepLines: 400,
			Env: []string{
				"GUARD_FAILURE_MODE=" + sc.failureMode,
				"GUARD_LOCK_BACKEND=redis",
				"GUARD_REDIS_URL=" + h.set.URL(),
				"GUARD_REDIS_TIMEOUT=" + redisTimeout.String(),
				"GUARD_REDIS_MIN_REPLICAS=" + strconv.Itoa(sc.minReplicas),
				"GUARD_LOOKUP_TIMEOUT=" + lookupTimeout.String(),
				"GUARD_LOCK_WAIT=" + lockWait.String(),
			},
		}))
	}
	h.lastFail = make([]time.Time, len(h.proxies))
	h.failed = make([]float64, len(h.proxies))
	h.scrape() // the baseline

	stop := make(chan struct{})
	var wg sync.WaitGroup
	h.start = time.Now()
	for range workers {
		wg.Go(func() { h.worker(stop) })
	}
	wg.Go(func() { h.monitor(stop) })
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()

	// 1. Steady state: every link is checked.
	time.Sleep(2 * time.Second)
	if n := h.countSince(time.Time{}, func(a answer) bool { return a.status == http.StatusServiceUnavailable || a.err != nil }); n > 0 {
		t.Fatalf("%d failed answers before the failover", n)
	}

	// 2. The primary dies.
	old := h.set.Primary
	oldAddr := old.Addr()
	killed := time.Now()
	old.Kill() // SIGKILL by PID
	promoted := h.waitPromotion(oldAddr, killed, 30*time.Second)
	switchTook := promoted.Sub(killed)

	// 3. Recovery by themselves, when a replica is left to acknowledge.
	var recovered time.Time
	noReplicaLeft := sc.minReplicas >= sc.replicas
	if noReplicaLeft {
		// Honest fail-closed: the new primary cannot replicate a lock.
		time.Sleep(2 * time.Second)
		since := time.Now().Add(-time.Second)
		if ok := h.countSince(since, func(a answer) bool { return a.status != http.StatusServiceUnavailable && a.guard != "replayed" }); ok > 0 && sc.failureMode == "closed" {
			t.Errorf("%d links checked without a replica to acknowledge the lock (MIN_REPLICAS=%d)", ok, sc.minReplicas)
		}
	} else {
		recovered = h.waitRecovered(promoted, 20*time.Second)
	}

	// 4. The old primary comes back (empty: no persistence) and must rejoin
	// as a replica of the new primary.
	restarted := time.Now()
	old.Restart()
	rejoined := h.waitRejoined(oldAddr, restarted, 30*time.Second)
	if noReplicaLeft {
		recovered = h.waitRecovered(rejoined, 20*time.Second)
	}
	// Its return disturbs nothing: 2s more of load without a failed check.
	time.Sleep(2 * time.Second)
	h.scrape()
	close(stop)
	wg.Wait()

	h.check(killed, promoted, recovered, restarted, noReplicaLeft, switchTook, rejoined)
}

// worker links the current user through a random proxy, again and again.
func (h *harness) worker(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		user := fmt.Sprintf("%s_u%05d", h.prefix, int(time.Since(h.start)/userEvery))
		i := rand.IntN(len(h.proxies))
		a := h.link(i, user)
		h.mu.Lock()
		h.answers = append(h.answers, a)
		h.mu.Unlock()
		time.Sleep(time.Duration(5+rand.IntN(20)) * time.Millisecond)
	}
}

func (h *harness) link(i int, user string) answer {
	body := fmt.Sprintf(`{"auth_config_id":%q,"user_id":%q,"callback_url":"https://app.example/cb"}`, authConfig, user)
	a := answer{proxy: i, user: user, sent: time.Now()}
	req, err := http.NewRequest(http.MethodPost, h.proxies[i].URL+"/api/v3/connected_accounts/link", strings.NewReader(body))
	if err != nil {
		a.err = err
		return a
	}
	req.Header.Set("x-api-key", apiKey)
	req.Header.Set("content-type", "application/json")
	res, err := h.client.Do(req)
	if err != nil {
		a.err, a.done = err, time.Now()
		return a
	}
	b, err := io.ReadAll(res.Body)
	res.Body.Close()
	a.done, a.err = time.Now(), err
	a.status, a.retryAfter, a.guard = res.StatusCode, res.Header.Get("Retry-After"), res.Header.Get(apierror.HeaderGuard)
	var env struct {
		Error struct {
			Slug string `json:"slug"`
		} `json:"error"`
	}
	_ = json.Unmarshal(b, &env)
	a.slug = env.Error.Slug
	return a
}

// monitor scrapes the proxies' failed-check decisions while the load runs:
// a fail-open answer looks like any other, only the proxy knows.
func (h *harness) monitor(stop <-chan struct{}) {
	tick := time.NewTicker(150 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
			h.scrape()
		}
	}
}

func (h *harness) scrape() {
	for i, p := range h.proxies {
		res, err := h.client.Get(p.AdminURL + "/metrics")
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		n := 0.0
		for _, d := range []string{"failed_closed", "failed_open"} {
			v, _ := testproc.MetricFrom(string(b), "composio_guard_decisions_total", map[string]string{"decision": d})
			n += v
		}
		h.mu.Lock()
		if n > h.failed[i] {
			h.failed[i], h.lastFail[i] = n, time.Now()
		}
		h.mu.Unlock()
	}
}

func (h *harness) countSince(since time.Time, match func(answer) bool) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, a := range h.answers {
		if !a.sent.Before(since) && match(a) {
			n++
		}
	}
	return n
}

func (h *harness) waitPromotion(oldAddr string, killed time.Time, within time.Duration) time.Time {
	h.t.Helper()
	for {
		if m, err := h.set.Master(); err == nil && m != oldAddr {
			if role, err := redistest.Role(m); err == nil && role == "master" {
				return time.Now()
			}
		}
		if time.Since(killed) > within {
			h.t.Fatalf("no replica promoted %v after the primary was killed", within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (h *harness) waitRejoined(oldAddr string, restarted time.Time, within time.Duration) time.Time {
	h.t.Helper()
	for {
		if role, err := redistest.Role(oldAddr); err == nil && role == "slave" {
			master, _ := h.set.Master()
			if err := redistest.WaitReplicas(master, h.sc.replicas, 100*time.Millisecond); err == nil {
				return time.Now()
			}
		}
		if time.Since(restarted) > within {
			role, err := redistest.Role(oldAddr)
			h.t.Fatalf("the old primary did not rejoin as an online replica in %v (role %q, %v)", within, role, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitRecovered waits until no proxy has counted a failed check for
// `quiet`, after from; it returns the last failure seen (or from).
func (h *harness) waitRecovered(from time.Time, within time.Duration) time.Time {
	h.t.Helper()
	for {
		h.mu.Lock()
		last := from
		for _, lf := range h.lastFail {
			if lf.After(last) {
				last = lf
			}
		}
		h.mu.Unlock()
		if time.Since(last) >= quiet && time.Since(from) >= quiet {
			return last
		}
		if time.Since(from) > within {
			h.t.Fatalf("proxies still failing checks %v after %v", within, from)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// check asserts on every answer and on the fake's accounts, and reports.
func (h *harness) check(killed, promoted, recovered, restarted time.Time, noReplicaLeft bool, switchTook time.Duration, rejoined time.Time) {
	t := h.t
	h.mu.Lock()
	answers := append([]answer(nil), h.answers...)
	lastFail := append([]time.Time(nil), h.lastFail...)
	h.mu.Unlock()

	kinds := map[string]int{}
	var during, failedDuring, slow int
	var maxTook time.Duration
	for _, a := range answers {
		if a.err != nil {
			t.Errorf("proxy %d: link for %s: %v (after %v)", a.proxy, a.user, a.err, a.done.Sub(a.sent))
			continue
		}
		took := a.done.Sub(a.sent)
		maxTook = max(maxTook, took)
		if took > bound+slack {
			slow++
			t.Errorf("proxy %d: %d after %v, past lookup timeout + Redis timeout (%v)", a.proxy, a.status, took, bound)
		}
		kinds[fmt.Sprintf("%d %s%s", a.status, a.guard, a.slug)]++
		inSwitch := !a.done.Before(killed) && !a.sent.After(recovered)
		if inSwitch {
			during++
		}
		switch a.status {
		case http.StatusCreated, http.StatusConflict:
		case http.StatusServiceUnavailable:
			if h.sc.failureMode == "open" {
				t.Errorf("fail-open proxy %d answered 503", a.proxy)
			}
			if a.retryAfter == "" || a.slug != apierror.SlugGuardUnavailable {
				t.Errorf("503 without Retry-After or with slug %q", a.slug)
			}
			if inSwitch {
				failedDuring++
			} else {
				t.Errorf("proxy %d: 503 outside the switch (sent %v after the kill, recovered at %v)", a.proxy, a.sent.Sub(killed), recovered.Sub(killed))
			}
		default:
			t.Errorf("proxy %d: unexpected %d %s for %s", a.proxy, a.status, a.slug, a.user)
		}
	}
	after := h.countSince(restarted, func(a answer) bool { return a.status == http.StatusServiceUnavailable })
	if !noReplicaLeft && after > 0 {
		t.Errorf("%d links failed after the old primary was restarted: its return disturbed the proxies", after)
	}
	if h.sc.failureMode == "closed" && failedDuring == 0 {
		t.Errorf("no 503 during the switch: the failover was not seen (%v)", kinds)
	}
	for i, lf := range lastFail {
		if lf.After(recovered.Add(200 * time.Millisecond)) {
			t.Errorf("proxy %d counted a failed check at %v after the kill, after recovery (%v)", i, lf.Sub(killed), recovered.Sub(killed))
		}
	}

	// Duplicates: accounts per user beyond the first, in the fake.
	per := map[string]int{}
	for _, a := range h.fake.Accounts(t, apiKey) {
		if a.AuthConfigID == authConfig && strings.HasPrefix(a.UserID, h.prefix) {
			per[a.UserID]++
		}
	}
	dups := 0
	var dupUsers []string
	for u, n := range per {
		if n > 1 {
			dups += n - 1
			dupUsers = append(dupUsers, u)
		}
	}
	sort.Strings(dupUsers)
	ref, refName := promoted, "promotion"
	if noReplicaLeft {
		ref, refName = restarted, "restart of the old primary"
	}
	if len(dupUsers) > 5 {
		dupUsers = append(dupUsers[:5], "...")
	}
	var unrepl []string
	for _, p := range h.proxies {
		l, _ := p.Metric(t, "composio_guard_lock_unreplicated_total", map[string]string{"op": "lock"})
		unrepl = append(unrepl, strconv.FormatFloat(l, 'f', 0, 64))
	}
	t.Logf("FIGURES %s: switch (kill to promotion) %v; failed checks during the switch: %d 503s of %d answers; "+
		"recovered %v after the kill, %v after the %s; rejoined %v after the restart; max answer %v (bound %v); "+
		"duplicates %d (users with >1 account: %v) among %d users, %d links; unreplicated locks per proxy [%s]; answers %v",
		h.sc, switchTook.Round(10*time.Millisecond), failedDuring, during,
		recovered.Sub(killed).Round(10*time.Millisecond), max(recovered.Sub(ref), 0).Round(10*time.Millisecond), refName,
		rejoined.Sub(restarted).Round(10*time.Millisecond), maxTook.Round(time.Millisecond), bound,
		dups, dupUsers, len(per), len(answers), strings.Join(unrepl, " "), kinds)
	if h.sc.failureMode == "closed" && h.sc.minReplicas >= 1 && dups != 0 {
		t.Errorf("%d duplicate account(s) created across the failover with GUARD_REDIS_MIN_REPLICAS=%d: %v", dups, h.sc.minReplicas, dupUsers)
	}
	// The bound is on the proxies, not on Sentinel: from the promotion, or
	// (no replica left) from the moment a replica is back online.
	boundRef, boundName := promoted, "promotion"
	if noReplicaLeft {
		boundRef, boundName = rejoined, "rejoin"
	}
	if recovered.Sub(boundRef) > 10*time.Second {
		t.Errorf("recovery took %v after the %s, want within 10s", recovered.Sub(boundRef), boundName)
	}
}
