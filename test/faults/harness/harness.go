// Package harness owns what the hardening suites (test/faults, test/hostile)
// share beside testproc's launcher of the proxy binary: an in-process fake
// Composio behind a recording, hookable handler (for misbehaviour the fake
// cannot play), a canary listener that must never be dialled, and the ways a
// client sees the proxy: HTTP answers and raw TCP.
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
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/composio-guard/composio-guard/internal/apierror"
	"github.com/composio-guard/composio-guard/internal/composiotest"
)

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

// Link sends one link() to the proxy at proxyURL with credential key;
// extra headers are added.
func Link(c *http.Client, proxyURL, key, user, authConfig string, extra map[string]string) Answer {
	h := map[string]string{"x-api-key": key}
	for k, v := range extra {
		h[k] = v
	}
	return Do(c, http.MethodPost, proxyURL+"/api/v3/connected_accounts/link", h, LinkBody(user, authConfig))
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
