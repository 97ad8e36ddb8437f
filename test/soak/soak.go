// Package soak owns the soak run: a bounded load driver (loopback only,
// stopped by time and by count) that plays a mix of pass-through calls,
// guarded links for fresh users, concurrent repeats, duplicates, opt-ins and
// legacy creates against the proxy binary in front of the fake Composio
// process, opens fault windows on the fake, and then checks that every
// request was answered as it should be, that the fake's account table never
// holds two live accounts for one user and auth config without an opt-in,
// and that the proxy's goroutines and memory did not grow.
//
// TestSoak runs it for 60 s in CI (-soak.duration for longer);
// cmd/soak runs it against a proxy and fake already running.
package soak

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/composio-guard/composio-guard/internal/composiotest"
	"github.com/composio-guard/composio-guard/internal/testproc/fakectl"
)

// Config is one soak run. Zero values take the defaults listed.
type Config struct {
	ProxyURL string // the proxy listener, e.g. http://127.0.0.1:8080
	AdminURL string // the proxy's admin listener (/metrics)
	FakeURL  string // the fake Composio process (its /_fake/ control API)

	Duration    time.Duration // load phase, wall clock (default 60s)
	MaxRequests int64         // requests through the proxy, at most (default RPS x Duration x 2)
	Workers     int           // concurrent clients (default 8)
	RPS         int           // request rate cap (default 200)
	WarmUp      time.Duration // load before the baseline snapshot (default 3s)

	// A fault window opens every FaultEvery and lasts FaultFor (defaults 8s
	// and 2.5s); NoFaults turns them off.
	FaultEvery, FaultFor time.Duration
	NoFaults             bool
	// Grace: after a window closes, answers may still be the window's
	// (the breaker cools down, a slow lookup ends). Default 4s.
	Grace time.Duration
	// Epoch: every so often the driver pauses, checks the fake's account
	// table, resets the fake and continues with a fresh credential, which
	// keeps the fake's table (scanned on every list) small. Default 15s.
	Epoch time.Duration
	// Settle is the idle wait before a memory/goroutine snapshot, longer
	// than the proxy's GUARD_UPSTREAM_IDLE_CONN_TIMEOUT (default 4s).
	Settle time.Duration

	// Bounds of growth between the baseline and the end (defaults 10
	// goroutines, 32 MiB of heap in use, 64 MiB resident).
	GoroutineSlack int
	HeapSlack      float64
	RSSSlack       float64

	AuthConfig string               // default "ac_soak"
	Logf       func(string, ...any) // progress lines; nil: none
}

func (c *Config) defaults() error {
	setD := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	setD(&c.Duration, 60*time.Second)
	setD(&c.WarmUp, 3*time.Second)
	setD(&c.FaultEvery, 8*time.Second)
	setD(&c.FaultFor, 2500*time.Millisecond)
	setD(&c.Grace, 4*time.Second)
	setD(&c.Epoch, 15*time.Second)
	setD(&c.Settle, 4*time.Second)
	if c.Workers <= 0 {
		c.Workers = 8
	}
	if c.RPS <= 0 {
		c.RPS = 200
	}
	if c.MaxRequests <= 0 {
		c.MaxRequests = int64(float64(c.RPS)*(c.Duration+c.WarmUp).Seconds()*2) + 1000
	}
	if c.GoroutineSlack <= 0 {
		c.GoroutineSlack = 10
	}
	if c.HeapSlack <= 0 {
		c.HeapSlack = 32 << 20
	}
	if c.RSSSlack <= 0 {
		c.RSSSlack = 64 << 20
	}
	if c.AuthConfig == "" {
		c.AuthConfig = "ac_soak"
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	if c.FaultFor >= c.FaultEvery {
		return fmt.Errorf("soak: FaultFor (%s) must be shorter than FaultEvery (%s)", c.FaultFor, c.FaultEvery)
	}
	for name, raw := range map[string]string{"proxy": c.ProxyURL, "admin": c.AdminURL, "fake": c.FakeURL} {
		if err := loopbackURL(raw); err != nil {
			return fmt.Errorf("soak: %s URL %q: %w", name, raw, err)
		}
	}
	return nil
}

// loopbackURL accepts only http URLs on a loopback address: the driver is a
// load generator and must never be pointed at someone else's service.
func loopbackURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("not a URL: %w", err)
	}
	if u.Scheme != "http" {
		return errors.New("want http://")
	}
	host := u.Hostname()
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return errors.New("not a loopback address: the soak driver only loads loopback")
	}
	return nil
}

// Snapshot is the proxy's process state from /metrics.
type Snapshot struct {
	Goroutines float64
	HeapInuse  float64
	RSS        float64
}

func (s Snapshot) String() string {
	return fmt.Sprintf("goroutines %.0f, heap in use %.1f MiB, resident %.1f MiB", s.Goroutines, s.HeapInuse/(1<<20), s.RSS/(1<<20))
}

// OpStats is what one kind of operation saw.
type OpStats struct {
	Count           int64
	Statuses        map[int]int64
	TransportErrors int64
	Unexpected      int64
	buckets         [len(latencyBounds) + 1]int64
}

// Latency buckets (upper bounds) for the p50/p99 estimates.
var latencyBounds = [...]time.Duration{
	time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond,
	50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second,
}

// Quantile returns the bucket bound under which a fraction q of the answers came.
func (o *OpStats) Quantile(q float64) time.Duration {
	var total int64
	for _, n := range o.buckets {
		total += n
	}
	if total == 0 {
		return 0
	}
	want := int64(math.Ceil(q * float64(total)))
	var cum int64
	for i, n := range o.buckets {
		cum += n
		if cum >= want {
			if i < len(latencyBounds) {
				return latencyBounds[i]
			}
			break
		}
	}
	return time.Duration(math.MaxInt64)
}

// Report is the outcome of a run. Problems lists every failed check; a run
// passed when it is empty.
type Report struct {
	Elapsed         time.Duration
	Requests        int64
	TransportErrors int64
	Unexpected      int64
	Ops             map[string]*OpStats
	Examples        []string // the first unexpected answers
	Windows         []string // fault windows played, in order
	Epochs          int
	AccountsChecked int
	Violations      []string
	Baseline, End   Snapshot
	Problems        []string
}

// Summary renders the report for a log.
func (r *Report) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "soak: %d requests in %s (%.0f/s), %d transport errors, %d unexpected answers\n",
		r.Requests, r.Elapsed.Round(time.Second), float64(r.Requests)/max(r.Elapsed.Seconds(), 1), r.TransportErrors, r.Unexpected)
	names := make([]string, 0, len(r.Ops))
	for n := range r.Ops {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		o := r.Ops[n]
		codes := make([]int, 0, len(o.Statuses))
		for c := range o.Statuses {
			codes = append(codes, c)
		}
		sort.Ints(codes)
		parts := make([]string, 0, len(codes))
		for _, c := range codes {
			parts = append(parts, fmt.Sprintf("%d:%d", c, o.Statuses[c]))
		}
		fmt.Fprintf(&b, "  %-16s %7d  p50<=%-6s p99<=%-6s statuses %s\n", n, o.Count, o.Quantile(0.5), o.Quantile(0.99), strings.Join(parts, " "))
	}
	kinds := map[string]int{}
	for _, w := range r.Windows {
		kinds[w]++
	}
	fmt.Fprintf(&b, "  fault windows: %d %v\n", len(r.Windows), kinds)
	fmt.Fprintf(&b, "  epochs: %d, accounts checked: %d, violations: %d\n", r.Epochs, r.AccountsChecked, len(r.Violations))
	fmt.Fprintf(&b, "  baseline: %s\n  end:      %s\n", r.Baseline, r.End)
	for _, e := range r.Examples {
		fmt.Fprintf(&b, "  unexpected: %s\n", e)
	}
	for _, v := range r.Violations {
		fmt.Fprintf(&b, "  violation: %s\n", v)
	}
	return b.String()
}

// ---- the model of the fake's users ----------------------------------------

type userState int

const (
	statePending userState = iota // one INITIATED account, leased by the proxy
	stateActive                   // one ACTIVE account (plus opt-in extras)
)

type simUser struct {
	id      string
	account string // the first account: INITIATED, later ACTIVE
	state   userState
}

// epoch is one credential's worth of users. A user is taken out of its pool
// by one worker at a time, so its model never races.
type epoch struct {
	n       int
	key     string
	mu      sync.Mutex
	next    int
	pending []*simUser
	active  []*simUser
	optIns  map[string]int // successful opt-in creates per user
	known   map[string]bool
	recent  []string // recent account ids, for pass-through gets
	ring    int
}

func newEpoch(run string, n int) *epoch {
	return &epoch{n: n, key: fmt.Sprintf("soak_%s_%d", run, n), optIns: map[string]int{}, known: map[string]bool{}}
}

func (e *epoch) freshUser() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.next++
	id := fmt.Sprintf("u%d_%d", e.n, e.next)
	e.known[id] = true
	return id
}

func (e *epoch) take(pool *[]*simUser, rng *mrand.Rand) *simUser {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := *pool
	if len(p) == 0 {
		return nil
	}
	i := rng.IntN(len(p))
	u := p[i]
	p[i] = p[len(p)-1]
	*pool = p[:len(p)-1]
	return u
}

func (e *epoch) put(u *simUser) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if u.state == statePending {
		e.pending = append(e.pending, u)
	} else {
		e.active = append(e.active, u)
	}
	if len(e.recent) < 256 {
		e.recent = append(e.recent, u.account)
	} else {
		e.recent[e.ring%256] = u.account
		e.ring++
	}
}

func (e *epoch) optedIn(user string) {
	e.mu.Lock()
	e.optIns[user]++
	e.mu.Unlock()
}

func (e *epoch) recentAccount(rng *mrand.Rand) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.recent) == 0 {
		return ""
	}
	return e.recent[rng.IntN(len(e.recent))]
}

// ---- fault windows ----------------------------------------------------------

type faultKind struct {
	name  string
	route string
	fault composiotest.Fault
}

// The windows played in turn. None makes a link take effect while its
// answer breaks: that case (and the duplicate its retry creates) is pinned
// by test/faults TestResetMidResponse instead.
var faultKinds = []faultKind{
	{"list_5xx_storm", "list", composiotest.Fault{Status: 500}},
	{"slow_upstream", "any", composiotest.Fault{Latency: 150 * time.Millisecond}},
	{"link_502", "link", composiotest.Fault{Status: 502}},
	{"list_not_json", "list", composiotest.Fault{NotJSON: true}},
	{"get_reset", "get", composiotest.Fault{Reset: true}},
	{"list_slower_than_lookup_timeout", "list", composiotest.Fault{Latency: 1500 * time.Millisecond}},
}

type window struct{ from, to time.Time }

// ---- the driver -------------------------------------------------------------

type driver struct {
	cfg     Config
	client  *http.Client    // through the proxy
	control *http.Client    // /metrics
	fake    *fakectl.Client // the fake's control API
	run     string

	pause sync.RWMutex // workers hold it shared per operation; an epoch switch takes it
	ep    atomic.Pointer[epoch]

	requests atomic.Int64

	wmu     sync.Mutex
	windows []window

	mu       sync.Mutex
	ops      map[string]*OpStats
	examples []string
	problems []string
	report   Report
}

// Run plays the soak and returns its report. The error is for a run that
// could not take place (bad config, fake unreachable); failed checks are in
// Report.Problems.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	tr := &http.Transport{MaxIdleConnsPerHost: cfg.Workers * 4, DisableCompression: true}
	d := &driver{
		cfg:     cfg,
		client:  &http.Client{Timeout: 30 * time.Second, Transport: tr},
		control: &http.Client{Timeout: 30 * time.Second},
		fake:    fakectl.New(cfg.FakeURL),
		run:     hex.EncodeToString(b),
		ops:     map[string]*OpStats{},
	}
	defer tr.CloseIdleConnections()
	start := time.Now()

	if err := d.fake.Reset(); err != nil {
		return nil, fmt.Errorf("soak: fake control API: %w", err)
	}
	if _, err := d.snapshot(); err != nil {
		return nil, fmt.Errorf("soak: proxy /metrics: %w", err)
	}
	d.ep.Store(newEpoch(d.run, 0))

	cfg.Logf("soak: warm-up %s", cfg.WarmUp)
	d.load(ctx, cfg.WarmUp, false)
	base, err := d.settle(nil)
	if err != nil {
		return nil, err
	}
	d.report.Baseline = base
	cfg.Logf("soak: baseline %s; load for %s at <= %d req/s, %d workers", base, cfg.Duration, cfg.RPS, cfg.Workers)

	d.load(ctx, cfg.Duration, !cfg.NoFaults)
	_ = d.fake.ClearFaults()
	d.checkEpoch(d.ep.Load())

	end, err := d.settle(&base)
	if err != nil {
		return nil, err
	}
	d.report.End = end
	d.report.Elapsed = time.Since(start)
	d.finish()
	return &d.report, nil
}

// load runs the workers for dur (or until the count bound), with the
// control loop opening fault windows and switching epochs.
func (d *driver) load(parent context.Context, dur time.Duration, faults bool) {
	ctx, cancel := context.WithTimeout(parent, dur)
	defer cancel()
	tokens := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Second / time.Duration(d.cfg.RPS))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				select {
				case tokens <- struct{}{}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	var wg sync.WaitGroup
	for w := range d.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), uint64(w)))
			for {
				select {
				case <-ctx.Done():
					return
				case <-tokens:
				}
				if d.requests.Load() >= d.cfg.MaxRequests {
					return
				}
				d.pause.RLock()
				d.step(rng)
				d.pause.RUnlock()
			}
		}()
	}
	d.controlLoop(ctx, faults)
	wg.Wait()
}

// controlLoop opens and closes fault windows and switches epochs until ctx ends.
func (d *driver) controlLoop(ctx context.Context, faults bool) {
	now := time.Now()
	nextWindow, nextEpoch := now.Add(d.cfg.FaultEvery/2), now.Add(d.cfg.Epoch)
	var open *faultKind
	var openedAt time.Time
	played := len(d.report.Windows)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	closeWindow := func() {
		if err := d.fake.ClearFaults(); err != nil {
			d.problem("closing fault window %s: %v", open.name, err)
		}
		d.wmu.Lock()
		d.windows[len(d.windows)-1].to = time.Now()
		d.wmu.Unlock()
		open = nil
	}
	for {
		select {
		case <-ctx.Done():
			if open != nil {
				closeWindow()
			}
			return
		case now = <-tick.C:
		}
		switch {
		case open != nil && now.Sub(openedAt) >= d.cfg.FaultFor:
			closeWindow()
		case faults && open == nil && !now.Before(nextWindow):
			k := faultKinds[played%len(faultKinds)]
			played++
			d.wmu.Lock()
			// Marked before the fault is set, so no faulted answer is judged clean.
			d.windows = append(d.windows, window{from: time.Now(), to: time.Now().Add(365 * 24 * time.Hour)})
			d.wmu.Unlock()
			if err := d.fake.SetFault(k.route, k.fault); err != nil {
				d.problem("opening fault window %s: %v", k.name, err)
			}
			open, openedAt, nextWindow = &k, now, now.Add(d.cfg.FaultEvery)
			d.mu.Lock()
			d.report.Windows = append(d.report.Windows, k.name)
			d.mu.Unlock()
			d.cfg.Logf("soak: fault window %s for %s", k.name, d.cfg.FaultFor)
		case open == nil && !now.Before(nextEpoch):
			d.pause.Lock()
			old := d.ep.Load()
			d.checkEpoch(old)
			if err := d.fake.Reset(); err != nil {
				d.problem("resetting the fake: %v", err)
			}
			d.ep.Store(newEpoch(d.run, old.n+1))
			d.pause.Unlock()
			nextEpoch = time.Now().Add(d.cfg.Epoch)
			d.cfg.Logf("soak: epoch %d done, %d requests so far", old.n, d.requests.Load())
		}
	}
}

// clean reports whether [from, to] kept clear of every fault window and
// its grace period.
func (d *driver) clean(from, to time.Time) bool {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	for i := len(d.windows) - 1; i >= 0 && i >= len(d.windows)-3; i-- {
		w := d.windows[i]
		if !to.Before(w.from) && !from.After(w.to.Add(d.cfg.Grace)) {
			return false
		}
	}
	return true
}

// ---- operations -----------------------------------------------------------

type answer struct {
	status int
	header http.Header
	body   []byte
	err    error
	from   time.Time
	took   time.Duration
}

func (a answer) String() string {
	if a.err != nil {
		return "transport error: " + a.err.Error()
	}
	b := a.body
	if len(b) > 200 {
		b = b[:200]
	}
	return fmt.Sprintf("%d %s", a.status, bytes.TrimSpace(b))
}

func (a answer) accountID() string {
	var v struct {
		ID string `json:"connected_account_id"`
	}
	_ = json.Unmarshal(a.body, &v)
	return v.ID
}

func (a answer) envelope() (slug string, existing []string) {
	var v struct {
		Error struct {
			Slug     string   `json:"slug"`
			Existing []string `json:"existing_connected_account_ids"`
		} `json:"error"`
	}
	_ = json.Unmarshal(a.body, &v)
	return v.Error.Slug, v.Error.Existing
}

func (d *driver) send(method, path, key, body string, extra map[string]string) answer {
	d.requests.Add(1)
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	a := answer{from: time.Now()}
	req, err := http.NewRequest(method, d.cfg.ProxyURL+path, rd)
	if err != nil {
		a.err = err
		return a
	}
	req.Header.Set("x-api-key", key)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range extra {
		req.Header.Set(k, v)
	}
	res, err := d.client.Do(req)
	if err != nil {
		a.err, a.took = err, time.Since(a.from)
		return a
	}
	a.body, a.err = io.ReadAll(res.Body)
	res.Body.Close()
	a.status, a.header, a.took = res.StatusCode, res.Header, time.Since(a.from)
	return a
}

// Statuses an operation may get inside a fault window.
var windowStatuses = map[string][]int{
	"passthrough_list": {200, 500, 502, 504},
	"passthrough_get":  {200, 404, 500, 502, 504},
	"link_fresh":       {201, 502, 503, 504},
	"link_burst":       {201, 502, 503, 504},
	"link_repeat":      {201, 503},
	"link_duplicate":   {409, 503},
	"link_optin":       {201, 502, 504},
	"create_fresh":     {201, 502, 503, 504},
}

// judge records a and decides whether it was as expected: strictly (ok)
// when it kept clear of fault windows, else within the window statuses.
func (d *driver) judge(op string, a answer, ok bool, why string) bool {
	clean := d.clean(a.from, a.from.Add(a.took))
	good := a.err == nil && (ok || !clean && slices.Contains(windowStatuses[op], a.status))
	d.mu.Lock()
	defer d.mu.Unlock()
	o := d.ops[op]
	if o == nil {
		o = &OpStats{Statuses: map[int]int64{}}
		d.ops[op] = o
	}
	o.Count++
	i := sort.Search(len(latencyBounds), func(i int) bool { return a.took <= latencyBounds[i] })
	o.buckets[i]++
	if a.err != nil {
		o.TransportErrors++
	} else {
		o.Statuses[a.status]++
	}
	if !good {
		o.Unexpected++
		if len(d.examples) < 30 {
			d.examples = append(d.examples, fmt.Sprintf("%s (%s, clean=%v, at %s): %s", op, why, clean, a.from.Format("15:04:05.000"), a))
		}
	}
	return good
}

func (d *driver) problem(format string, args ...any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.problems = append(d.problems, fmt.Sprintf(format, args...))
}

func prefix(rng *mrand.Rand) string {
	if rng.IntN(2) == 0 {
		return "/api/v3"
	}
	return "/api/v3.1"
}

func (d *driver) linkBody(user string) string {
	return fmt.Sprintf(`{"auth_config_id":%q,"user_id":%q,"callback_url":"https://app.example/cb"}`, d.cfg.AuthConfig, user)
}

var opWeights = []struct {
	name   string
	weight int
}{
	{"passthrough_list", 20}, {"passthrough_get", 10}, {"link_fresh", 20}, {"link_burst", 4},
	{"link_repeat", 12}, {"complete", 10}, {"link_duplicate", 14}, {"link_optin", 4}, {"create_fresh", 3},
}

var totalWeight = func() int {
	n := 0
	for _, w := range opWeights {
		n += w.weight
	}
	return n
}()

// step plays one operation picked by weight; one that needs a user in a
// state nobody is in becomes a fresh link.
func (d *driver) step(rng *mrand.Rand) {
	e := d.ep.Load()
	pick := rng.IntN(totalWeight)
	op := opWeights[len(opWeights)-1].name
	for _, w := range opWeights {
		if pick < w.weight {
			op = w.name
			break
		}
		pick -= w.weight
	}
	switch op {
	case "passthrough_list":
		u := fmt.Sprintf("u%d_%d", e.n, rng.IntN(1000))
		a := d.send(http.MethodGet, prefix(rng)+"/connected_accounts?user_ids="+u+"&auth_config_ids="+d.cfg.AuthConfig+"&statuses=ACTIVE", e.key, "", nil)
		d.judge(op, a, a.status == 200, "want 200")
		return
	case "passthrough_get":
		if id := e.recentAccount(rng); id != "" {
			a := d.send(http.MethodGet, prefix(rng)+"/connected_accounts/"+id, e.key, "", nil)
			d.judge(op, a, a.status == 200, "want 200")
			return
		}
	case "link_burst":
		d.burst(e, rng)
		return
	case "create_fresh":
		u := e.freshUser()
		body := fmt.Sprintf(`{"auth_config":{"id":%q},"connection":{"user_id":%q}}`, d.cfg.AuthConfig, u)
		a := d.send(http.MethodPost, prefix(rng)+"/connected_accounts", e.key, body, nil)
		// Not reused: a legacy create leaves no pending-link lease, so a
		// later link for this user would (by design) be forwarded.
		d.judge(op, a, a.status == 201, "want 201")
		return
	case "link_repeat":
		if u := e.take(&e.pending, rng); u != nil {
			a := d.send(http.MethodPost, prefix(rng)+"/connected_accounts/link", e.key, d.linkBody(u.id), nil)
			ok := a.status == 201 && a.accountID() == u.account && a.header.Get("X-Composio-Guard") == "replayed"
			d.judge(op, a, ok, "want 201 replayed with "+u.account)
			e.put(u)
			return
		}
	case "complete":
		if u := e.take(&e.pending, rng); u != nil {
			_, err := d.fake.SetStatus(u.account, "ACTIVE")
			if err != nil {
				d.problem("completing %s: %v", u.account, err)
				return
			}
			u.state = stateActive
			e.put(u)
			return
		}
	case "link_duplicate":
		if u := e.take(&e.active, rng); u != nil {
			a := d.send(http.MethodPost, prefix(rng)+"/connected_accounts/link", e.key, d.linkBody(u.id), nil)
			slug, existing := a.envelope()
			ok := a.status == 409 && slug == "ConnectedAccount_MultipleConnectedAccounts" &&
				a.header.Get("X-Should-Retry") == "false" && slices.Contains(existing, u.account)
			d.judge(op, a, ok, "want 409 naming "+u.account)
			e.put(u)
			return
		}
	case "link_optin":
		if u := e.take(&e.active, rng); u != nil {
			a := d.send(http.MethodPost, prefix(rng)+"/connected_accounts/link", e.key, d.linkBody(u.id),
				map[string]string{"X-Composio-Allow-Multiple": "true"})
			if a.err == nil && a.status == 201 {
				e.optedIn(u.id)
			}
			d.judge(op, a, a.status == 201 && a.accountID() != "" && a.accountID() != u.account, "want 201, a new account")
			e.put(u)
			return
		}
	}
	d.fresh(e, rng)
}

// fresh links a new user; a 201 puts the user in the pending pool.
func (d *driver) fresh(e *epoch, rng *mrand.Rand) {
	u := e.freshUser()
	a := d.send(http.MethodPost, prefix(rng)+"/connected_accounts/link", e.key, d.linkBody(u), nil)
	id := a.accountID()
	d.judge("link_fresh", a, a.status == 201 && id != "" && a.header.Get("X-Composio-Guard") == "", "want 201, forwarded")
	if a.err == nil && a.status == 201 && id != "" {
		e.put(&simUser{id: u, account: id, state: statePending})
	}
}

// burst sends three links for one new user at once: one is forwarded, the
// others wait for the per-key lock and get its answer replayed.
func (d *driver) burst(e *epoch, rng *mrand.Rand) {
	u := e.freshUser()
	p := prefix(rng)
	var wg sync.WaitGroup
	answers := make([]answer, 3)
	for i := range answers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i] = d.send(http.MethodPost, p+"/connected_accounts/link", e.key, d.linkBody(u), nil)
		}()
	}
	wg.Wait()
	ids := map[string]bool{}
	forwarded := 0
	for _, a := range answers {
		if a.err == nil && a.status == 201 {
			ids[a.accountID()] = true
			if a.header.Get("X-Composio-Guard") != "replayed" {
				forwarded++
			}
		}
	}
	for _, a := range answers {
		d.judge("link_burst", a, a.status == 201 && len(ids) == 1 && forwarded == 1, "want 3 x 201, one forwarded, the same account")
	}
	if len(ids) > 1 || forwarded > 1 {
		d.problem("burst for %s got %d different accounts, %d forwarded: %v", u, len(ids), forwarded, answers)
	}
	if len(ids) == 1 && forwarded == 1 {
		for id := range ids {
			e.put(&simUser{id: u, account: id, state: statePending})
		}
	}
}

// checkEpoch reads the fake's account table of e's credential: never two
// ACTIVE or INITIATED accounts of one user on the auth config, except the
// extras the user opted in to, and no account of a user the driver never
// sent.
func (d *driver) checkEpoch(e *epoch) {
	accts, err := d.fake.Accounts(e.key)
	if err != nil {
		d.problem("epoch %d: reading the account table: %v", e.n, err)
		return
	}
	live := map[string][]string{}
	for _, a := range accts {
		if !e.known[a.UserID] {
			d.addViolation("epoch %d: account %s of user %q the driver never linked", e.n, a.ID, a.UserID)
		}
		if a.AuthConfigID == d.cfg.AuthConfig && (a.Status == "ACTIVE" || a.Status == "INITIATED") {
			live[a.UserID] = append(live[a.UserID], a.ID+":"+a.Status)
		}
	}
	for u, ids := range live {
		if allowed := 1 + e.optIns[u]; len(ids) > allowed {
			d.addViolation("epoch %d: user %s holds %d live accounts %v, allowed %d (opt-ins %d)", e.n, u, len(ids), ids, allowed, e.optIns[u])
		}
	}
	d.mu.Lock()
	d.report.Epochs++
	d.report.AccountsChecked += len(accts)
	d.mu.Unlock()
}

func (d *driver) addViolation(format string, args ...any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.report.Violations) < 50 {
		d.report.Violations = append(d.report.Violations, fmt.Sprintf(format, args...))
	}
}

// ---- snapshots and the verdict --------------------------------------------

// settle lets the proxy go idle (client and upstream keep-alive
// connections closed) and reads its process state. Given a baseline, it
// waits (up to 20s) for the goroutine count to come back within the slack.
func (d *driver) settle(base *Snapshot) (Snapshot, error) {
	d.client.CloseIdleConnections()
	time.Sleep(d.cfg.Settle)
	deadline := time.Now().Add(20 * time.Second)
	for {
		s, err := d.snapshot()
		if err != nil {
			return s, err
		}
		if base == nil || s.Goroutines <= base.Goroutines+float64(d.cfg.GoroutineSlack) || time.Now().After(deadline) {
			return s, nil
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func (d *driver) snapshot() (Snapshot, error) {
	res, err := d.control.Get(d.cfg.AdminURL + "/metrics")
	if err != nil {
		return Snapshot{}, fmt.Errorf("soak: GET /metrics: %w", err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		return Snapshot{}, fmt.Errorf("soak: GET /metrics: %d %v", res.StatusCode, err)
	}
	text := string(b)
	var s Snapshot
	var ok [3]bool
	s.Goroutines, ok[0] = metricValue(text, "go_goroutines")
	s.HeapInuse, ok[1] = metricValue(text, "go_memstats_heap_inuse_bytes")
	s.RSS, ok[2] = metricValue(text, "process_resident_memory_bytes")
	if !ok[0] || !ok[1] || !ok[2] {
		return s, errors.New("soak: /metrics lacks go_goroutines, go_memstats_heap_inuse_bytes or process_resident_memory_bytes")
	}
	return s, nil
}

// metricValue reads an unlabelled sample from exposition text.
func metricValue(text, name string) (float64, bool) {
	for line := range strings.SplitSeq(text, "\n") {
		if v, found := strings.CutPrefix(line, name+" "); found {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f, err == nil
		}
	}
	return 0, false
}

func (d *driver) finish() {
	r := &d.report
	r.Requests = d.requests.Load()
	r.Ops = d.ops
	r.Examples = d.examples
	r.Problems = append(r.Problems, d.problems...)
	for _, o := range d.ops {
		r.TransportErrors += o.TransportErrors
		r.Unexpected += o.Unexpected
	}
	if r.TransportErrors > 0 {
		r.Problems = append(r.Problems, fmt.Sprintf("%d requests got no answer (transport errors); the fake's faults never call for one", r.TransportErrors))
	}
	if r.Unexpected > 0 {
		r.Problems = append(r.Problems, fmt.Sprintf("%d answers were not what the guard promises (first ones in Examples)", r.Unexpected))
	}
	for _, v := range r.Violations {
		r.Problems = append(r.Problems, "account table: "+v)
	}
	for _, w := range opWeights {
		if w.name != "complete" && (r.Ops[w.name] == nil || r.Ops[w.name].Count == 0) {
			r.Problems = append(r.Problems, "operation "+w.name+" never ran: the run was too short to judge")
		}
	}
	if !d.cfg.NoFaults && d.cfg.Duration > d.cfg.FaultEvery && len(r.Windows) == 0 {
		r.Problems = append(r.Problems, "no fault window was played")
	}
	if g := r.End.Goroutines - r.Baseline.Goroutines; g > float64(d.cfg.GoroutineSlack) {
		r.Problems = append(r.Problems, fmt.Sprintf("goroutines grew by %.0f (%.0f -> %.0f) after going idle; allowed %d",
			g, r.Baseline.Goroutines, r.End.Goroutines, d.cfg.GoroutineSlack))
	}
	if g := r.End.HeapInuse - r.Baseline.HeapInuse; g > d.cfg.HeapSlack {
		r.Problems = append(r.Problems, fmt.Sprintf("heap in use grew by %.1f MiB; allowed %.0f MiB", g/(1<<20), d.cfg.HeapSlack/(1<<20)))
	}
	if g := r.End.RSS - r.Baseline.RSS; g > d.cfg.RSSSlack {
		r.Problems = append(r.Problems, fmt.Sprintf("resident memory grew by %.1f MiB; allowed %.0f MiB", g/(1<<20), d.cfg.RSSSlack/(1<<20)))
	}
}
