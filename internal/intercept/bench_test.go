package intercept

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"

	"github.com/composio-guard/composio-guard/internal/lock"
	"github.com/composio-guard/composio-guard/internal/upstream"
)

var benchBody = []byte(`{"auth_config_id":"ac_abc123","user_id":"user_123","callback_url":"https://app.example/cb","alias":"work"}`)

func BenchmarkParseLink(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(benchBody)))
	for b.Loop() {
		if _, br := parseBody("link", benchBody); br != nil {
			b.Fatal(br.message)
		}
	}
}

func BenchmarkParseLinkWithFlag(b *testing.B) {
	body := []byte(`{"auth_config_id":"ac_abc123","allow_multiple":true,"user_id":"user_123","callback_url":"https://app.example/cb"}`)
	b.ReportAllocs()
	for b.Loop() {
		g, br := parseBody("link", body)
		if br != nil {
			b.Fatal(br.message)
		}
		_ = stripFlag(body, g.flag)
	}
}

// staticLister answers every lookup with the same items, in process.
type staticLister struct{ items []upstream.Account }

func (l staticLister) List(context.Context, upstream.ListQuery) (upstream.ListResult, error) {
	return upstream.ListResult{Items: l.items}, nil
}

// nullWriter is a ResponseWriter that keeps nothing.
type nullWriter struct {
	h    http.Header
	code int
}

func (w *nullWriter) Header() http.Header         { return w.h }
func (w *nullWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *nullWriter) WriteHeader(code int)        { w.code = code }

var linkAnswerBody = []byte(`{"link_token":"lt_1","redirect_url":"https://connect.example/ca_1","expires_at":"2099-01-01T00:00:00Z","connected_account_id":"ca_1"}`)

// upstreamStub stands for the ReverseProxy: it drains the body and answers a link.
var upstreamStub = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write(linkAnswerBody)
})

func benchGuard(b *testing.B, cfg Config, items []upstream.Account, want int) {
	g := NewGuard(cfg, staticLister{items}, lock.NewMemory(), upstreamStub, nil)
	hdr := http.Header{"X-Api-Key": {"k"}, "Content-Type": {"application/json"}}
	b.ReportAllocs()
	for b.Loop() {
		r, _ := http.NewRequest(http.MethodPost, "http://proxy/api/v3.1/connected_accounts/link", bytes.NewReader(benchBody))
		r.Header = hdr
		w := &nullWriter{h: make(http.Header, 4)}
		g.ServeHTTP(w, r)
		if w.code != want {
			b.Fatalf("status %d, want %d", w.code, want)
		}
	}
}

func BenchmarkGuard(b *testing.B) {
	initiated := []upstream.Account{{ID: "ca_1", Status: "INITIATED", UserID: "user_123", AuthConfigID: "ac_abc123"}}
	b.Run("allowed", func(b *testing.B) {
		benchGuard(b, Config{PendingAction: PendingOff}, nil, http.StatusCreated)
	})
	b.Run("duplicate_409", func(b *testing.B) {
		benchGuard(b, Config{}, []upstream.Account{{ID: "ca_0", Status: "ACTIVE", UserID: "user_123", AuthConfigID: "ac_abc123"}}, http.StatusConflict)
	})
	b.Run("replay", func(b *testing.B) {
		cfg := Config{}
		g := NewGuard(cfg, staticLister{initiated}, lock.NewMemory(), upstreamStub, nil)
		// One real link first, so that every timed request replays it.
		r, _ := http.NewRequest(http.MethodPost, "http://proxy/api/v3.1/connected_accounts/link", bytes.NewReader(benchBody))
		r.Header.Set("X-Api-Key", "k")
		g.ServeHTTP(&nullWriter{h: http.Header{}}, r)
		hdr := http.Header{"X-Api-Key": {"k"}}
		b.ReportAllocs()
		for b.Loop() {
			r, _ := http.NewRequest(http.MethodPost, "http://proxy/api/v3.1/connected_accounts/link", bytes.NewReader(benchBody))
			r.Header = hdr
			w := &nullWriter{h: make(http.Header, 4)}
			g.ServeHTTP(w, r)
			if w.code != http.StatusCreated || w.h.Get("X-Composio-Guard") != "replayed" {
				b.Fatalf("status %d, not replayed", w.code)
			}
		}
	})
}

// The sandbox policy on a session create: a tier checked and forwarded as
// sent, and a default inserted.
func BenchmarkSandbox(b *testing.B) {
	fwd := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusCreated)
	})
	g := NewGuard(Config{SandboxMaxSize: "medium", SandboxDefaultSize: "medium"}, staticLister{}, lock.NewMemory(), fwd, nil)
	for _, bc := range []struct{ name, body string }{
		{"allowed", `{"user_id":"user_123","manage_connections":{"enable":true},"workbench":{"enable":true,"sandbox_size":"medium"}}`},
		{"defaulted", `{"user_id":"user_123","manage_connections":{"enable":true},"workbench":{"enable":true}}`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			body := []byte(bc.body)
			hdr := http.Header{"X-Api-Key": {"k"}, "Content-Type": {"application/json"}}
			b.ReportAllocs()
			for b.Loop() {
				r, _ := http.NewRequest(http.MethodPost, "http://proxy/api/v3.1/tool_router/session", bytes.NewReader(body))
				r.Header = hdr
				w := &nullWriter{h: make(http.Header, 4)}
				g.ServeHTTP(w, r)
				if w.code != http.StatusCreated {
					b.Fatalf("status %d", w.code)
				}
			}
		})
	}
}
