package server

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/composio-guard/composio-guard/internal/logging"
	"github.com/composio-guard/composio-guard/internal/metrics"
)

// chainAllocBudget is the most allocations one request may cost through the
// middleware chain, access log at INFO and metrics included, the test
// handler's own one counted. Measured 10: the wrapper+scope, the context
// value, the request copy, the scope logger (4, zap's WithLazy), the answer's
// X-Request-Id value, the handler's write.
const chainAllocBudget = 10

type okHandler struct{}

func (okHandler) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	_, _ = io.WriteString(w, "ok")
}

// discardWriter is a ResponseWriter that allocates nothing.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}

func benchChain(tb testing.TB) http.Handler {
	log, err := logging.New("info", io.Discard)
	if err != nil {
		tb.Fatal(err)
	}
	cfg := testConfig(tb, nil)
	return New(Options{Settings: cfg, Logger: log, Metrics: metrics.New(metrics.Build{}), Handler: okHandler{}}).Handler()
}

func TestChainAllocBudget(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under -race; CI's plain `go test` run asserts them")
	}
	h := benchChain(t)
	req := httptest.NewRequest("GET", "/api/v3/toolkits?x=1", nil)
	req.Header.Set("X-Request-Id", "fixed-id")
	w := &discardWriter{h: http.Header{}}
	h.ServeHTTP(w, req) // warm the metric series
	n := testing.AllocsPerRun(200, func() {
		clear(w.h)
		h.ServeHTTP(w, req)
	})
	if n > chainAllocBudget {
		t.Errorf("middleware chain allocates %.0f per request, budget %d", n, chainAllocBudget)
	}
	t.Logf("middleware chain: %.0f allocations per request", n)
}

func BenchmarkChain(b *testing.B) {
	for _, bc := range []struct {
		name string
		h    http.Handler
	}{{"bare", okHandler{}}, {"chain", benchChain(b)}} {
		b.Run(bc.name, func(b *testing.B) {
			req := httptest.NewRequest("GET", "/api/v3/toolkits", nil)
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				bc.h.ServeHTTP(w, req)
			}
		})
	}
}
