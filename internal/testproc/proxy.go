package testproc

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ProxyEnv is the base environment of every proxy binary a test starts, in
// front of upstream: loopback ports the kernel picks, no drain delay and a
// short shutdown grace (a test that drains sets its own), info logs (the
// "listening" line and the access lines are info lines). Settings a test
// adds after these win, as in a shell.
func ProxyEnv(upstream string) []string {
	return []string{
		"GUARD_UPSTREAM_URL=" + upstream,
		"GUARD_LISTEN_ADDR=127.0.0.1:0",
		"GUARD_ADMIN_ADDR=127.0.0.1:0",
		"GUARD_DRAIN_DELAY=0s",
		"GUARD_SHUTDOWN_GRACE=5s",
		"GUARD_LOG_LEVEL=info",
	}
}

// ProxyOptions tune LaunchProxy; all may be zero.
type ProxyOptions struct {
	Name       string   // names the proxy in failure output; default "proxy"
	Env        []string // GUARD_* settings, applied after ProxyEnv's
	BuildFlags []string // go build flags of the binary, e.g. -race
	KeepLines  int      // > 0: keep only the last KeepLines log lines (long runs)
}

// Proxy is a running proxy binary.
type Proxy struct {
	*Proc
	Name      string
	Addr      string // host:port of the proxy listener
	URL       string // http://Addr
	AdminAddr string // host:port of the admin listener
	AdminURL  string // http://AdminAddr
}

// StartProxy runs the proxy binary in front of upstream with ProxyEnv plus
// env ("GUARD_X=v"). It stops when the test ends; on failure its last log
// lines are printed, and a data race it reported (a -race build) fails the
// test.
func StartProxy(t testing.TB, upstream string, env ...string) *Proxy {
	t.Helper()
	return LaunchProxy(t, upstream, ProxyOptions{Env: env})
}

// LaunchProxy is StartProxy with options.
func LaunchProxy(t testing.TB, upstream string, o ProxyOptions) *Proxy {
	t.Helper()
	if o.Name == "" {
		o.Name = "proxy"
	}
	bin := Build(t, "./cmd/proxy", o.BuildFlags...)
	p := start(t, bin, append(ProxyEnv(upstream), o.Env...), nil, o.KeepLines)
	px := &Proxy{Proc: p, Name: o.Name, Addr: p.Addr("proxy_addr"), AdminAddr: p.Addr("admin_addr")}
	if px.Addr == "" || px.AdminAddr == "" {
		t.Fatalf("%s: listening line without proxy_addr/admin_addr: %v", o.Name, p.Fields)
	}
	px.URL, px.AdminURL = "http://"+px.Addr, "http://"+px.AdminAddr
	t.Cleanup(func() {
		logs := p.Logs()
		if i := strings.Index(logs, "WARNING: DATA RACE"); i >= 0 {
			t.Errorf("%s: data race in the proxy:\n%s", o.Name, logs[i:min(len(logs), i+4000)])
		}
		if t.Failed() {
			t.Logf("%s (%s) logs, last lines:\n%s", o.Name, px.URL, Tail(logs, 80))
		}
	})
	return px
}

// Tail returns the last n lines of s.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// MetricsText fetches the admin listener's exposition.
func (p *Proxy) MetricsText(t testing.TB) string {
	t.Helper()
	res, err := http.Get(p.AdminURL + "/metrics")
	if err != nil {
		t.Fatalf("%s: GET /metrics: %v", p.Name, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("%s: GET /metrics: %d %v", p.Name, res.StatusCode, err)
	}
	return string(b)
}

// Metric sums the samples of name whose labels include every pair of
// labels; ok is false when no sample matched.
func (p *Proxy) Metric(t testing.TB, name string, labels map[string]string) (sum float64, ok bool) {
	t.Helper()
	return MetricFrom(p.MetricsText(t), name, labels)
}

// MetricFrom reads a metric from exposition text (see Proxy.Metric).
func MetricFrom(text, name string, labels map[string]string) (float64, bool) {
	sum, found := 0.0, false
	for line := range strings.SplitSeq(text, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		series, val := line[:sp], line[sp+1:]
		n, lbl, _ := strings.Cut(series, "{")
		if n != name {
			continue
		}
		match := true
		for k, v := range labels {
			if !strings.Contains(lbl, k+"="+strconv.Quote(v)) {
				match = false
				break
			}
		}
		if !match {
			continue
		}
		f, err := strconv.ParseFloat(val, 64)
		if err != nil {
			continue
		}
		sum += f
		found = true
	}
	return sum, found
}

// LogLines returns the proxy's JSON log lines whose msg is msg.
func (p *Proxy) LogLines(msg string) []map[string]any {
	var out []map[string]any
	for line := range strings.SplitSeq(p.Logs(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// AccessLine waits up to within for the access-log line of requestID.
func (p *Proxy) AccessLine(requestID string, within time.Duration) (map[string]any, bool) {
	deadline := time.Now().Add(within)
	for {
		for _, m := range p.LogLines("request") {
			if m["request_id"] == requestID {
				return m, true
			}
		}
		if time.Now().After(deadline) {
			return nil, false
		}
		time.Sleep(20 * time.Millisecond)
	}
}
