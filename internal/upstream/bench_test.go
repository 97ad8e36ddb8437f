package upstream_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/composio-guard/composio-guard/internal/metrics"
	"github.com/composio-guard/composio-guard/internal/reqscope"
	"github.com/composio-guard/composio-guard/internal/upstream"
)

// discardWriter is a minimal ResponseWriter, so the benchmark measures the
// proxy and not a recorder.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(int)             {}
func (w *discardWriter) Flush()                      {}

func benchProxy(b *testing.B, method, body string) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-RateLimit-Remaining", "1999")
		io.WriteString(w, `{"items":[],"next_cursor":null}`)
	}))
	defer up.Close()
	tr := upstream.NewTransport(upstream.TransportSettings{})
	defer tr.CloseIdleConnections()
	p := upstream.NewProxy(mustURL(b, up.URL), tr, upstream.ProxyOptions{Metrics: metrics.New(metrics.Build{})})
	s := &reqscope.Scope{RequestID: testRequestID, Logger: zap.NewNop()}
	ctx := reqscope.With(context.Background(), s)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req := httptest.NewRequestWithContext(ctx, method, "http://proxy.local/api/v3/toolkits?limit=5", rd)
		req.Header.Set("x-api-key", "k")
		w := &discardWriter{h: make(http.Header, 8)}
		p.ServeHTTP(w, req)
	}
}

func BenchmarkProxyGET(b *testing.B) { benchProxy(b, http.MethodGet, "") }
func BenchmarkProxyPOST(b *testing.B) {
	benchProxy(b, http.MethodPost, `{"arguments":{"owner":"composio","repo":"composio"},"user_id":"u1"}`)
}

func BenchmarkList(b *testing.B) {
	body := page("", item("ca_1", "ACTIVE", "u", "ac"))
	up := httptest.NewServer(serve(body))
	defer up.Close()
	tr := upstream.NewTransport(upstream.TransportSettings{})
	defer tr.CloseIdleConnections()
	c := upstream.NewListClient(mustURL(b, up.URL), tr, upstream.LookupSettings{PageLimit: 100}, upstream.ListOptions{Metrics: metrics.New(metrics.Build{})})
	q := query("/api/v3.1", "u", "ac", "", http.Header{"X-Api-Key": {"k"}, "X-Request-Id": {"r"}})
	ctx := reqscope.With(context.Background(), &reqscope.Scope{RequestID: "r", Logger: zap.NewNop()})
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.List(ctx, q); err != nil {
			b.Fatal(err)
		}
	}
}
