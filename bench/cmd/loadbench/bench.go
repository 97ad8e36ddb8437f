package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Targets, in the order they are measured.
const (
	targetDirect = "direct" // load generator -> tiny upstream
	targetBare   = "bare"   // -> bare httputil.ReverseProxy -> upstream
	targetNaive  = "naive"  // -> naive guard (list call, 409 or forward) -> upstream; links only
	targetGuard  = "guard"  // -> composio-guard -> upstream
)

// workload is one wrk run shape. Its targets are measured back to back in
// each round, so a ratio is taken between runs minutes apart at most.
type workload struct {
	name       string
	script     string
	args       []string
	conns      int
	targets    []string
	wantStatus int // what composio-guard must answer (checked on its metrics)
	what       string
	// bareScript, when set, is what the bare proxy runs instead: the guarded
	// links compare with a plain forward of a GET or POST.
	bareScript, bareWhat string
	// fullOnly are targets left out of -short runs (the guarded links' bare
	// reference: their -short targets are against the naive guard).
	fullOnly []string
}

// targetsFor is the workload's targets in this run, in order.
func (w workload) targetsFor(short bool) []string {
	if !short {
		return w.targets
	}
	return slices.DeleteFunc(slices.Clone(w.targets), func(t string) bool { return slices.Contains(w.fullOnly, t) })
}

func (w workload) scriptFor(target string) (string, []string) {
	if target == targetBare && w.bareScript != "" {
		return w.bareScript, nil
	}
	return w.script, w.args
}

var workloads = []workload{
	{name: "get", script: "get.lua", conns: 64, targets: []string{targetDirect, targetBare, targetGuard}, wantStatus: 200,
		what: "pass-through GET, 64 keep-alive connections"},
	{name: "post", script: "post.lua", conns: 64, targets: []string{targetDirect, targetBare, targetGuard}, wantStatus: 200,
		what: "pass-through POST (100-byte JSON body), 64 connections"},
	{name: "link_allowed", script: "link.lua", args: []string{"ac_bench"}, conns: 64, targets: []string{targetBare, targetNaive, targetGuard}, wantStatus: 201,
		what: "guarded link, list says none: one list call + the forward (201), 64 connections, users cycling over 10,000 ids; " +
			"the naive guard runs the same links", bareScript: "post.lua", bareWhat: "POST", fullOnly: []string{targetBare}},
	{name: "link_409", script: "link.lua", args: []string{"ac_active_bench"}, conns: 64, targets: []string{targetBare, targetNaive, targetGuard}, wantStatus: 409,
		what: "guarded link, list says ACTIVE: one list call, 409, nothing forwarded, 64 connections, users cycling over 10,000 ids; " +
			"the naive guard runs the same links", bareScript: "get.lua", bareWhat: "GET", fullOnly: []string{targetBare}},
	{name: "latency_c1", script: "get.lua", conns: 1, targets: []string{targetDirect, targetBare, targetGuard}, wantStatus: 200,
		what: "pass-through GET at concurrency 1 (latency)"},
	{name: "rss_128", script: "get.lua", conns: 128, targets: []string{targetBare, targetGuard}, wantStatus: 200,
		what: "pass-through GET, 128 concurrent keep-alive connections (memory)"},
}

// row is one measured (workload, target): medians over the rounds.
type row struct {
	rps, p50, p99, cpuUS float64 // latencies and CPU in µs
	rssKiB               int64
	growth               int64 // streams: peak RSS above the idle level, KiB
	note                 string
	samples              []sample // one per round, in round order
}

// target is a process under load.
type target struct {
	name  string
	url   string
	p     *proc // whose CPU and memory are measured
	admin string
	reqs  int64 // requests sent to it, warm-ups included
}

type bench struct {
	o        *options
	upstream *proc
	results  map[string]map[string]*row // workload -> target
	order    []string                   // workloads in the order run
	whats    map[string]string
	bareWhat map[string]string // workload -> what the bare proxy ran, when not the same
	checks   []verdict         // sanity checks (statuses, access lines)
	longRes  *longResult
}

func (b *bench) runAll(ctx context.Context) error {
	up, err := startProc("upstream", b.o.loadCPU, nil, b.o.upstreamBin, "-addr", "127.0.0.1:0")
	if err != nil {
		return err
	}
	b.upstream = up
	b.whats = map[string]string{}
	b.bareWhat = map[string]string{}
	for _, w := range workloads {
		if !b.selected(w.name) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "loadbench: %s (%s)\n", w.name, w.what)
		if err := b.runWorkload(ctx, w); err != nil {
			return fmt.Errorf("%s: %w", w.name, err)
		}
	}
	for _, kind := range []string{"download", "upload"} {
		name := "stream_" + kind
		if !b.selected(name) {
			continue
		}
		fmt.Fprintf(os.Stderr, "loadbench: %s (10 MiB, 4 at a time)\n", name)
		if err := b.runStreams(ctx, kind); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	if b.o.long {
		fmt.Fprintf(os.Stderr, "loadbench: long soak, %s\n", b.o.longDuration)
		if err := b.runLong(ctx); err != nil {
			return fmt.Errorf("long soak: %w", err)
		}
	}
	return nil
}

func (b *bench) selected(name string) bool {
	if b.o.only == "" {
		return true
	}
	return slices.Contains(strings.Split(b.o.only, ","), name)
}

// startTarget starts a fresh process for a target (direct is the upstream).
func (b *bench) startTarget(name string) (*target, error) {
	upURL := "http://" + b.upstream.addr("addr")
	switch name {
	case targetDirect:
		return &target{name: name, url: upURL, p: b.upstream}, nil
	case targetBare:
		args := []string{"-addr", "127.0.0.1:0", "-upstream", upURL}
		if b.o.barePool {
			args = append(args, "-buffer-pool")
		}
		p, err := startProc("bareproxy", b.o.proxyCPU, nil, b.o.bareBin, args...)
		if err != nil {
			return nil, err
		}
		return &target{name: name, url: "http://" + p.addr("addr"), p: p}, nil
	case targetNaive:
		p, err := startProc("naiveguard", b.o.proxyCPU, nil, b.o.naiveBin, "-addr", "127.0.0.1:0", "-upstream", upURL)
		if err != nil {
			return nil, err
		}
		return &target{name: name, url: "http://" + p.addr("addr"), p: p}, nil
	case targetGuard:
		env := []string{
			"GUARD_UPSTREAM_URL=" + upURL,
			"GUARD_LISTEN_ADDR=127.0.0.1:0",
			"GUARD_ADMIN_ADDR=127.0.0.1:0",
			"GUARD_LOG_LEVEL=info",
			"GUARD_MODE=enforce",
			"GUARD_DRAIN_DELAY=0s",
			"GUARD_SHUTDOWN_GRACE=5s",
		}
		if b.o.profileDir != "" {
			env = append(env, "GUARD_PPROF=true")
		}
		if b.o.guardEnv != "" {
			env = append(env, strings.Split(b.o.guardEnv, ",")...)
		}
		p, err := startProc("composio-guard", b.o.proxyCPU, env, b.o.guardBin)
		if err != nil {
			return nil, err
		}
		return &target{name: name, url: "http://" + p.addr("proxy_addr"), p: p, admin: p.addr("admin_addr")}, nil
	}
	return nil, fmt.Errorf("unknown target %q", name)
}

func (b *bench) stopTarget(t *target) {
	if t.name != targetDirect {
		t.p.stop()
	}
}

type sample struct {
	rps, p50, p99, cpuUS float64
}

func (b *bench) runWorkload(ctx context.Context, w workload) error {
	var ts []*target
	defer func() {
		for _, t := range ts {
			b.stopTarget(t)
		}
	}()
	for _, name := range w.targetsFor(b.o.short) {
		t, err := b.startTarget(name)
		if err != nil {
			return err
		}
		ts = append(ts, t)
	}
	for _, t := range ts { // warm: connections, heap size, metric series
		script, args := w.scriptFor(t.name)
		r, err := runWrk(ctx, b.o, script, t.url, w.conns, b.o.warmup, args...)
		if err != nil {
			return err
		}
		t.reqs += r.Requests
	}
	samples := map[string][]sample{}
	for round := range b.o.rounds {
		order := slices.Clone(ts)
		if round%2 == 1 { // alternate, so drift favours no target
			slices.Reverse(order)
		}
		for _, t := range order {
			s, err := b.measure(ctx, w, t, round)
			if err != nil {
				return err
			}
			samples[t.name] = append(samples[t.name], s)
			fmt.Fprintf(os.Stderr, "loadbench:   round %d %s: %.0f req/s, %.1f CPU µs/req\n", round+1, t.name, s.rps, s.cpuUS)
		}
	}
	b.order = append(b.order, w.name)
	b.whats[w.name] = w.what
	b.bareWhat[w.name] = w.bareWhat
	b.results[w.name] = map[string]*row{}
	for _, t := range ts {
		hwm, err := memKiB(t.p.pid(), "VmHWM")
		if err != nil {
			return err
		}
		ss := samples[t.name]
		r := &row{
			rps:     median(ss, func(s sample) float64 { return s.rps }),
			p50:     median(ss, func(s sample) float64 { return s.p50 }),
			p99:     median(ss, func(s sample) float64 { return s.p99 }),
			cpuUS:   median(ss, func(s sample) float64 { return s.cpuUS }),
			rssKiB:  hwm,
			samples: ss,
		}
		if t.name == targetDirect {
			r.note = "upstream process, lifetime peak RSS"
		}
		b.results[w.name][t.name] = r
		if t.name == targetGuard {
			b.checkGuard(w, t)
		}
	}
	return nil
}

// measure runs one measured wrk run and charges the target's CPU time to it.
func (b *bench) measure(ctx context.Context, w workload, t *target, round int) (sample, error) {
	var prof chan error
	if b.o.profileDir != "" && t.name == targetGuard {
		prof = make(chan error, 1)
		path := filepath.Join(b.o.profileDir, fmt.Sprintf("%s-r%d.pprof", w.name, round))
		go func() { prof <- fetchProfile(ctx, t.admin, b.o.duration, path) }()
	}
	c0, err := cpuTime(t.p.pid())
	if err != nil {
		return sample{}, err
	}
	script, args := w.scriptFor(t.name)
	r, err := runWrk(ctx, b.o, script, t.url, w.conns, b.o.duration, args...)
	if err != nil {
		return sample{}, err
	}
	c1, err := cpuTime(t.p.pid())
	if err != nil {
		return sample{}, err
	}
	if prof != nil {
		if err := <-prof; err != nil {
			fmt.Fprintln(os.Stderr, "loadbench: profile:", err)
		}
	}
	t.reqs += r.Requests
	if r.Requests == 0 {
		return sample{}, fmt.Errorf("%s: no request completed", t.name)
	}
	if se := r.socketErrors(); se > r.Requests/1000 {
		return sample{}, fmt.Errorf("%s: %d socket errors in %d requests", t.name, se, r.Requests)
	}
	wantErrs := int64(0)
	if w.wantStatus >= 400 && t.name != targetBare {
		wantErrs = r.Requests
	}
	if t.name != targetGuard && r.ErrStatus != wantErrs {
		return sample{}, fmt.Errorf("%s: %d answers of status >= 400 in %d requests", t.name, r.ErrStatus, r.Requests)
	}
	return sample{
		rps:   r.rps(),
		p50:   float64(r.P50US),
		p99:   float64(r.P99US),
		cpuUS: float64(c1-c0) / float64(time.Microsecond) / float64(r.Requests),
	}, nil
}

// checkGuard verifies that composio-guard answered what the workload means
// to measure (its own metrics) and wrote one access line per request.
func (b *bench) checkGuard(w workload, t *target) {
	// The reader of its stderr may lag a little behind.
	deadline := time.Now().Add(3 * time.Second)
	for t.p.requestLines.Load() < t.reqs && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	// Lines before metrics: a request is counted before its access line is
	// written, so a request that ends in between cannot make lines > counted.
	lines := t.p.requestLines.Load()
	codes, err := scrapeCodes(t.admin)
	if err != nil {
		b.checks = append(b.checks, verdict{name: w.name + ": metrics", measured: err.Error(), limit: "scrape ok"})
		return
	}
	// Requests cut in flight when wrk stops count as 499 (client gone);
	// every other answer must have the wanted status.
	var total, want, other float64
	for code, n := range codes {
		total += n
		switch code {
		case strconv.Itoa(w.wantStatus):
			want += n
		case "499":
		default:
			other += n
		}
	}
	b.checks = append(b.checks, verdict{
		name:     fmt.Sprintf("%s: guard answered %d", w.name, w.wantStatus),
		measured: fmt.Sprintf("%.0f of %.0f counted, %.0f other than %d or 499", want, total, other, w.wantStatus),
		limit:    "all completed requests", pass: other == 0 && want >= float64(t.reqs),
	})
	b.checks = append(b.checks, verdict{
		name:     w.name + ": one access line per request at INFO",
		measured: fmt.Sprintf("%d lines, %d requests completed", lines, t.reqs),
		limit:    ">= requests", pass: lines >= t.reqs && float64(lines) <= total,
	})
}

// scrapeCodes sums composio_guard_http_requests_total by code.
func scrapeCodes(admin string) (map[string]float64, error) {
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	defer closeQuietly(resp.Body)
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "composio_guard_http_requests_total{") {
			continue
		}
		_, rest, _ := strings.Cut(line, `code="`)
		code, _, _ := strings.Cut(rest, `"`)
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %q: %w", line, err)
		}
		out[code] += v
	}
	return out, sc.Err()
}

func fetchProfile(ctx context.Context, admin string, d time.Duration, path string) error {
	secs := max(1, int(d.Seconds()))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", admin, secs), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer closeQuietly(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("pprof answered %d (is GUARD_PPROF on?)", resp.StatusCode)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func median(ss []sample, f func(sample) float64) float64 {
	if len(ss) == 0 {
		return 0
	}
	v := make([]float64, len(ss))
	for i, s := range ss {
		v[i] = f(s)
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}
