package upstream_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/composio-guard/composio-guard/internal/metrics"
	"github.com/composio-guard/composio-guard/internal/reqscope"
	"github.com/composio-guard/composio-guard/internal/upstream"
)

const testRequestID = "req-test-1"

// value reads one counter or gauge.
func value(c prometheus.Collector) float64 {
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	var m dto.Metric
	if err := (<-ch).Write(&m); err != nil {
		return -1
	}
	switch {
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Histogram != nil:
		return float64(m.GetHistogram().GetSampleCount())
	}
	return -1
}

func upstreamErrs(m *metrics.Metrics, op, reason string) float64 {
	return value(m.UpstreamErrs.WithLabelValues(op, reason))
}

func lookups(m *metrics.Metrics, result string) float64 {
	return value(m.Lookup.WithLabelValues(result).(prometheus.Histogram))
}

// scoped puts a fresh request scope with a log observer in ctx, as the
// server's middleware does.
func scoped(ctx context.Context) (context.Context, *reqscope.Scope, *observer.ObservedLogs) {
	core, logs := observer.New(zapcore.DebugLevel)
	s := &reqscope.Scope{RequestID: testRequestID, Logger: zap.New(core).With(zap.String("request_id", testRequestID))}
	return reqscope.With(ctx, s), s, logs
}

// recorded is what reached a test upstream.
type recorded struct {
	Method, Path, RawQuery, Host string
	Header                       http.Header
	Body                         []byte
}

// recorder keeps the requests a test upstream saw.
type recorder struct {
	mu   sync.Mutex
	reqs []recorded
}

func (r *recorder) add(req *http.Request, body []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reqs = append(r.reqs, recorded{req.Method, req.URL.Path, req.URL.RawQuery, req.Host, req.Header.Clone(), body})
}

func (r *recorder) all() []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]recorded(nil), r.reqs...)
}

func mustURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// trusting returns a TLS config that trusts srv's certificate.
func trusting(srv *httptest.Server) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	return &tls.Config{RootCAs: pool}
}

// closedAddr is a loopback address nobody listens on.
func closedAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

var _ = upstream.StatusFor
