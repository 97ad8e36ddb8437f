package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/composio-guard/composio-guard/internal/logging"
	"github.com/composio-guard/composio-guard/internal/metrics"
	"github.com/composio-guard/composio-guard/internal/settings"
)

// logBuf collects log lines written concurrently by the server.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// lines returns every JSON line whose "msg" is msg.
func (l *logBuf) lines(t *testing.T, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(l.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line is not JSON: %v: %s", err, sc.Text())
		}
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// accessLine waits for the access line of request id (the line is written
// after the answer, so a client can see the answer first).
func (l *logBuf) accessLine(t *testing.T, id string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, m := range l.lines(t, "request") {
			if m[logging.FieldRequestID] == id {
				return m
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no access line for request %s in:\n%s", id, l.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func testConfig(t testing.TB, env map[string]string) Settings {
	t.Helper()
	base := map[string]string{
		"GUARD_LISTEN_ADDR": "127.0.0.1:0",
		"GUARD_ADMIN_ADDR":  "127.0.0.1:0",
		"GUARD_DRAIN_DELAY": "0s",
		"GUARD_LOG_LEVEL":   "debug",
	}
	for k, v := range env {
		base[k] = v
	}
	s, err := settings.Parse[Settings](base)
	if err == nil {
		err = s.Validate()
	}
	if err != nil {
		t.Fatalf("settings: %v", err)
	}
	return s
}

type running struct {
	srv    *Server
	logs   *logBuf
	m      *metrics.Metrics
	cancel context.CancelFunc
	done   chan error
	client *http.Client
}

func (r *running) proxyURL(path string) string { return "http://" + r.srv.ProxyAddr() + path }
func (r *running) adminURL(path string) string { return "http://" + r.srv.AdminAddr() + path }

// stop ends Run and returns its result.
func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err // keep it for Cleanup
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return")
		return nil
	}
}

// start runs a Server on loopback ports until the test ends.
func start(t *testing.T, cfg Settings, h http.Handler, ready func() error) *running {
	t.Helper()
	logs := &logBuf{}
	log, err := logging.New(string(cfg.LogLevel), logs)
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New(metrics.Build{Version: "test"})
	srv := New(Options{Settings: cfg, Logger: log, Metrics: m, Handler: h, Ready: ready})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	select {
	case <-srv.Bound():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	}
	tr := &http.Transport{}
	r := &running{srv: srv, logs: logs, m: m, cancel: cancel, done: done, client: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("Run did not return at cleanup")
		}
	})
	return r
}

func do(t *testing.T, c *http.Client, method, url string, hdr map[string]string, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(resp.Body); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("read body: %v", err)
	}
	return resp, b.String()
}
