package e2e_test

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestStreaming: pass-through bodies stream both ways. The upstream (an
// in-process server, since the fake does not stream) sends a first part,
// then waits until the client says it saw it; a proxy that buffers never
// lets the client see it and the wait runs out. No timing is measured: the
// timeouts only bound a failure.
func TestStreaming(t *testing.T) {
	t.Parallel()
	const wait = 5 * time.Second
	seen := make(chan string, 8) // the client saw the first part of a case
	got := make(chan string, 8)  // the upstream got the first part of an upload

	first := bytes.Repeat([]byte("a"), 256<<10)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/api/v3/")
		flush := func() { http.NewResponseController(w).Flush() }
		await := func() bool {
			select {
			case <-seen:
				return true
			case <-time.After(wait):
				return false
			}
		}
		switch name {
		case "sse":
			w.Header().Set("Content-Type", "text/event-stream")
			_, _ = io.WriteString(w, "data: one\n\n")
			flush()
			if await() {
				_, _ = io.WriteString(w, "data: two\n\n")
			}
		case "chunked-json":
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"items":[`+"\n")
			flush()
			if await() {
				_, _ = io.WriteString(w, "]}\n")
			}
		case "download":
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Header().Set("Content-Length", strconv.Itoa(2*len(first)))
			_, _ = w.Write(first)
			flush()
			if await() {
				_, _ = w.Write(first)
			}
		case "upload":
			br := bufio.NewReader(r.Body)
			line, err := br.ReadString('\n')
			if err != nil {
				http.Error(w, "upload: "+err.Error(), http.StatusBadRequest)
				return
			}
			got <- line
			rest, _ := io.ReadAll(br)
			_, _ = io.WriteString(w, line+string(rest))
		}
	}))
	t.Cleanup(upstream.Close)
	p := startProxy(t, "stream", upstream.URL)

	for _, c := range []struct {
		name  string
		first int // bytes that make the first part
	}{
		{"sse", len("data: one\n\n")},
		{"chunked-json", len(`{"items":[` + "\n")},
		{"download", len(first)},
	} {
		t.Run(c.name, func(t *testing.T) {
			res, err := client.Get(p.URL + "/api/v3/" + c.name)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			buf := make([]byte, c.first)
			if _, err := io.ReadFull(res.Body, buf); err != nil {
				t.Fatalf("first part: %v", err)
			}
			seen <- c.name
			rest, err := io.ReadAll(res.Body)
			if err != nil {
				t.Fatalf("rest: %v", err)
			}
			if len(rest) == 0 {
				t.Errorf("the upstream gave up waiting: the proxy held the first part back")
			}
		})
	}

	t.Run("upload", func(t *testing.T) {
		pr, pw := io.Pipe()
		req, err := http.NewRequest(http.MethodPut, p.URL+"/api/v3/upload", pr)
		if err != nil {
			t.Fatal(err)
		}
		type result struct {
			a   answer
			err error
		}
		done := make(chan result, 1)
		go func() {
			a, err := tryDo(req, "x-api-key", "k")
			done <- result{a, err}
		}()
		if _, err := io.WriteString(pw, "part one\n"); err != nil {
			t.Fatal(err)
		}
		select {
		case line := <-got:
			if line != "part one\n" {
				t.Errorf("upstream got %q first", line)
			}
		case <-time.After(wait):
			t.Error("the upstream never got the first part while the upload was open: the proxy buffers uploads")
		}
		_, _ = io.WriteString(pw, "part two\n")
		_ = pw.Close()
		r := <-done
		if r.err != nil {
			t.Fatal(r.err)
		}
		if r.a.status != http.StatusOK || string(r.a.body) != "part one\npart two\n" {
			t.Errorf("upload answer: %s", r.a)
		}
	})
}
