// Package harness owns what the hardening suites (test/faults, test/hostile,
// test/soak) share: the proxy binary started as a real process in front of an
// upstream, an in-process fake Composio behind a recording, hookable handler
// (for misbehaviour the fake cannot play), a canary listener that must never
// be dialled, and the ways a client sees the proxy: HTTP answers, raw TCP,
// /metrics and the access log.
package harness

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/composio-guard/composio-guard/internal/apierror"
	"github.com/composio-guard/composio-guard/internal/composiotest"
	"github.com/composio-guard/composio-guard/internal/testproc"
)

// ProxyBin builds ./cmd/proxy once per test binary.
func ProxyBin(t testing.TB) string { return testproc.Build(t, "./cmd/proxy") }

// FakeBin builds ./cmd/fakecomposio once per test binary.
func FakeBin(t testing.TB) string { return testproc.Build(t, "./cmd/fakecomposio") }

// Proxy is a running proxy binary.
type Proxy struct {
	Addr     string // host:port of the proxy listener
	URL      string // http://Addr
	AdminURL string
	PID      int // the process (for /proc/PID/status)

	logs func() string
	stop func() int
}

// Logs returns the proxy's log lines kept so far (all of them, or the last
// ones for StartProxyBounded).
func (p *Proxy) Logs() string { return p.logs() }

// Stop sends SIGTERM and returns the exit code (-1: killed after 30s).
func (p *Proxy) Stop() int { return p.stop() }

// StartProxy runs the proxy in front of upstream. The base settings bind
// loopback only, skip the drain delay and log at info (the access log is
// read by tests); env entries ("GUARD_X=v") are applied after them and win.
func StartProxy(t testing.TB, upstream string, env ...string) *Proxy {
	t.Helper()
	base := []string{
		"GUARD_UPSTREAM_URL=" + upstream,
		"GUARD_LISTEN_ADDR=127.0.0.1:0",
		"GUARD_ADMIN_ADDR=127.0.0.1:0",
		"GUARD_DRAIN_DELAY=0s",
		"GUARD_SHUTDOWN_GRACE=5s",
		"GUARD_LOG_LEVEL=info",
	}
	p := testproc.Start(t, ProxyBin(t), append(base, env...))
	px := newProxy(t, p.Fields)
	px.logs, px.stop, px.PID = p.Logs, p.Stop, p.Cmd.Process.Pid
	return px
}

func newProxy(t testing.TB, fields map[string]any) *Proxy {
	t.Helper()
	addr, _ := fields["proxy_addr"].(string)
	admin, _ := fields["admin_addr"].(string)
	if addr == "" || admin == "" {
		t.Fatalf("proxy: listening line without proxy_addr/admin_addr: %v", fields)
	}
	px := &Proxy{Addr: addr, URL: "http://" + addr, AdminURL: "http://" + admin}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("proxy logs:\n%s", tail(px.Logs(), 60))
		}
	})
	return px
}

// StartProxyBounded is StartProxy for long runs: the proxy logs at info (its
// "listening" line is an info line) but only the last keep log lines are
// held in memory.
func StartProxyBounded(t testing.TB, upstream string, keep int, env ...string) *Proxy {
	t.Helper()
	cmd := exec.Command(ProxyBin(t))
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(),
		"GUARD_UPSTREAM_URL=" + upstream, "GUARD_LISTEN_ADDR=127.0.0.1:0", "GUARD_ADMIN_ADDR=127.0.0.1:0",
		"GUARD_DRAIN_DELAY=0s", "GUARD_SHUTDOWN_GRACE=5s", "GUARD_LOG_LEVEL=info"}, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("proxy: %v", err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatalf("proxy: start: %v", err)
	}
	var (
		mu    sync.Mutex
		ring  = make([]string, 0, keep)
		next  int
		ready = make(chan map[string]any, 1)
		done  = make(chan struct{})
	)
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			mu.Lock()
			if len(ring) < keep {
				ring = append(ring, line)
			} else {
				ring[next%keep] = line
				next++
			}
			mu.Unlock()
			if !sent {
				var m map[string]any
				if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == "listening" {
					ready <- m
					sent = true
				}
			}
		}
	}()
	go func() { _ = cmd.Wait(); close(done) }()
	kill := func() {
		select {
		case <-done:
		default:
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}
	t.Cleanup(kill)
	logs := func() string {
		mu.Lock()
		defer mu.Unlock()
		n := len(ring)
		ordered := make([]string, 0, n)
		for i := range n {
			ordered = append(ordered, ring[(next+i)%n])
		}
		return strings.Join(ordered, "\n")
	}
	var fields map[string]any
	select {
	case fields = <-ready:
	case <-done:
		t.Fatalf("proxy exited before listening:\n%s", logs())
	case <-time.After(20 * time.Second):
		kill()
		t.Fatalf("proxy did not announce its listener in 20s:\n%s", logs())
	}
	px := newProxy(t, fields)
	px.logs, px.PID = logs, cmd.Process.Pid
	px.stop = func() int {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
			return cmd.ProcessState.ExitCode()
		case <-time.After(30 * time.Second):
			kill()
			return -1
		}
	}
	return px
}

func tail(s string, lines int) string {
	parts := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

// Client returns an HTTP client for one test: no shared pool, no automatic
// decompression, a timeout above every scenario's own delays.
func Client(t testing.TB) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 32, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Timeout: 20 * time.Second, Transport: tr}
}

// Answer is what a client of the proxy saw.
type Answer struct {
	Status int
	Header http.Header
	Body   []byte
	Took   time.Duration
	Err    error // transport error, or a body that broke while being read
}

func (a Answer) String() string {
	if a.Err != nil {
		return fmt.Sprintf("error after %s: %v (status %d, %d body bytes)", a.Took.Round(time.Millisecond), a.Err, a.Status, len(a.Body))
	}
	return fmt.Sprintf("%d in %s: %s", a.Status, a.Took.Round(time.Millisecond), bytes.TrimSpace(a.Body))
}

// Envelope decodes Composio's error envelope; the zero value when the body
// is not one.
func (a Answer) Envelope() apierror.Error {
	var env struct {
		Error apierror.Error `json:"error"`
	}
	_ = json.Unmarshal(a.Body, &env)
	return env.Error
}

// AccountID reads connected_account_id from a link answer.
func (a Answer) AccountID() string {
	var b struct {
		ID string `json:"connected_account_id"`
	}
	_ = json.Unmarshal(a.Body, &b)
	return b.ID
}

// Do sends one request and reads the whole answer.
func Do(c *http.Client, method, url string, header map[string]string, body string) Answer {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return Answer{Err: err}
	}
	for k, v := range header {
		if strings.EqualFold(k, "Host") {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	if body != "" && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	start := time.Now()
	res, err := c.Do(req)
	if err != nil {
		return Answer{Err: err, Took: time.Since(start)}
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return Answer{Status: res.StatusCode, Header: res.Header, Body: b, Took: time.Since(start), Err: err}
}

// LinkBody is an SDK-shaped link() body.
func LinkBody(user, authConfig string) string {
	return fmt.Sprintf(`{"auth_config_id":%q,"user_id":%q,"callback_url":"https://app.example/cb"}`, authConfig, user)
}

// CreateBody is an SDK-shaped legacy create (initiate()) body.
func CreateBody(user, authConfig string) string {
	return fmt.Sprintf(`{"auth_config":{"id":%q},"connection":{"user_id":%q,"callback_url":"https://app.example/cb"}}`, authConfig, user)
}

// Link sends one link() through the proxy with credential key; extra
// headers are added.
func (p *Proxy) Link(c *http.Client, key, user, authConfig string, extra map[string]string) Answer {
	h := map[string]string{"x-api-key": key}
	for k, v := range extra {
		h[k] = v
	}
	return Do(c, http.MethodPost, p.URL+"/api/v3/connected_accounts/link", h, LinkBody(user, authConfig))
}

// MetricsText fetches the admin listener's exposition.
func (p *Proxy) MetricsText(t testing.TB) string {
	t.Helper()
	res, err := http.Get(p.AdminURL + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v", res.StatusCode, err)
	}
	return string(b)
}

// Metric sums the samples of name whose labels include every pair of
// labels; ok is false when no sample matched.
func (p *Proxy) Metric(t testing.TB, name string, labels map[string]string) (float64, bool) {
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

// Seen is one request as it reached the upstream.
type Seen struct {
	Method           string
	Host             string
	RequestURI       string
	Path             string
	Header           http.Header
	Body             []byte
	ContentLength    int64
	TransferEncoding []string
}

// HookFunc may answer a request in place of the fake (return true), or let
// the fake answer (return false). It runs after the request was recorded.
type HookFunc func(w http.ResponseWriter, r *http.Request, fake http.Handler) bool

// Upstream is an in-process fake Composio behind a handler that records
// every request as it arrived (Host and framing included) and may be told
// to misbehave.
type Upstream struct {
	Fake *composiotest.Fake
	URL  string
	Addr string

	mu   sync.Mutex
	hook HookFunc
	seen []Seen
}

// NewUpstream starts the fake on loopback; it stops when the test ends.
func NewUpstream(t testing.TB, opts ...composiotest.Option) *Upstream {
	t.Helper()
	u := &Upstream{Fake: composiotest.New(opts...)}
	srv := httptest.NewServer(http.HandlerFunc(u.serve))
	t.Cleanup(func() {
		u.Fake.Close() // release hung requests first, so Close can finish
		srv.Close()
	})
	u.URL, u.Addr = srv.URL, srv.Listener.Addr().String()
	return u
}

func (u *Upstream) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
	if err != nil {
		return // the proxy went away mid-body
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	u.mu.Lock()
	if !strings.HasPrefix(r.URL.Path, "/_fake") {
		u.seen = append(u.seen, Seen{
			Method: r.Method, Host: r.Host, RequestURI: r.RequestURI, Path: r.URL.Path,
			Header: r.Header.Clone(), Body: body, ContentLength: r.ContentLength,
			TransferEncoding: append([]string(nil), r.TransferEncoding...),
		})
	}
	hook := u.hook
	u.mu.Unlock()
	if hook != nil && hook(w, r, u.Fake) {
		return
	}
	u.Fake.ServeHTTP(w, r)
}

// Hook installs h (nil removes it).
func (u *Upstream) Hook(h HookFunc) {
	u.mu.Lock()
	u.hook = h
	u.mu.Unlock()
}

// Seen returns the requests received so far, oldest first.
func (u *Upstream) Seen() []Seen {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]Seen(nil), u.seen...)
}

// Accounts returns the fake's accounts of one credential for user on authConfig.
func (u *Upstream) Accounts(credential, user, authConfig string) []composiotest.Account {
	var out []composiotest.Account
	for _, a := range u.Fake.Accounts(credential) {
		if a.UserID == user && a.AuthConfigID == authConfig {
			out = append(out, a)
		}
	}
	return out
}

// Reset drops the connection of w with a TCP RST and no (further) answer.
func Reset(w http.ResponseWriter) {
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler) // not hijackable: abort is the next best cut
	}
	_ = brw.Flush()
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

// Canary is a loopback listener that must never be dialled: a request that
// names it (Host, absolute-form URI) must still go to the configured upstream.
type Canary struct {
	Addr  string
	dials atomic.Int64
}

// NewCanary starts a canary; it accepts and counts connections, and answers nothing.
func NewCanary(t testing.TB) *Canary {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("canary: %v", err)
	}
	c := &Canary{Addr: l.Addr().String()}
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			c.dials.Add(1)
			conn.Close()
		}
	}()
	t.Cleanup(func() { l.Close() })
	return c
}

// Dials counts the connections the canary accepted.
func (c *Canary) Dials() int64 { return c.dials.Load() }

// ClosedPort returns a loopback address nothing listens on.
func ClosedPort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("closed port: %v", err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// RawResult is what came back on a raw TCP connection.
type RawResult struct {
	Responses []*http.Response // bodies already read into Bodies
	Bodies    [][]byte
	Closed    bool  // the server closed the connection (EOF) after the last answer
	Err       error // any other read error (e.g. a timeout while the connection stayed open)
}

// RawExchange writes raw on a new connection to addr, then reads answers
// until the connection closes or nothing more comes within wait.
func RawExchange(addr, raw string, wait time.Duration) RawResult {
	var rr RawResult
	c, err := net.Dial("tcp", addr)
	if err != nil {
		rr.Err = err
		return rr
	}
	defer c.Close()
	if _, err := io.WriteString(c, raw); err != nil {
		rr.Err = err
		return rr
	}
	br := bufio.NewReader(c)
	for {
		_ = c.SetReadDeadline(time.Now().Add(wait))
		if _, err := br.Peek(1); err != nil {
			if err == io.EOF || isReset(err) {
				rr.Closed = true
			} else {
				rr.Err = err
			}
			return rr
		}
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			rr.Err = err
			return rr
		}
		b, err := io.ReadAll(res.Body)
		res.Body.Close()
		rr.Responses = append(rr.Responses, res)
		rr.Bodies = append(rr.Bodies, b)
		if err != nil {
			rr.Err = err
			return rr
		}
	}
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}
