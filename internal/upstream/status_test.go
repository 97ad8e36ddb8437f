package upstream_test

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/composio-guard/composio-guard/internal/upstream"
)

func TestStatusFor(t *testing.T) {
	var d net.Dialer
	_, refused := d.DialContext(context.Background(), "tcp", closedAddr(t))
	tests := []struct {
		name       string
		err        error
		wantStatus int
		wantReason string
	}{
		{"nil", nil, 0, ""},
		{"client gone", fmt.Errorf("round trip: %w", context.Canceled), upstream.StatusClientGone, upstream.ReasonClientGone},
		{"deadline", fmt.Errorf("lookup: %w", context.DeadlineExceeded), http.StatusGatewayTimeout, upstream.ReasonTimeout},
		{"net timeout", &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}, http.StatusGatewayTimeout, upstream.ReasonTimeout},
		{"body too large", fmt.Errorf("copy: %w", &http.MaxBytesError{Limit: 10}), http.StatusRequestEntityTooLarge, upstream.ReasonBodyTooLarge},
		{"refused (real dial)", refused, http.StatusBadGateway, upstream.ReasonConnRefused},
		{"reset", &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, http.StatusBadGateway, upstream.ReasonConnReset},
		{"broken pipe", &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", syscall.EPIPE)}, http.StatusBadGateway, upstream.ReasonConnReset},
		{"closed under a write", &net.OpError{Op: "write", Net: "tcp", Err: net.ErrClosed}, http.StatusBadGateway, upstream.ReasonConnReset},
		{"dns", &net.OpError{Op: "dial", Err: &net.DNSError{Err: "no such host", Name: "backend.invalid", IsNotFound: true}}, http.StatusBadGateway, upstream.ReasonDNS},
		{"dns timeout", &net.DNSError{Err: "i/o timeout", Name: "x", IsTimeout: true}, http.StatusGatewayTimeout, upstream.ReasonTimeout},
		{"tls", &tlsWrap{x509.UnknownAuthorityError{}}, http.StatusBadGateway, upstream.ReasonTLS},
		{"eof", fmt.Errorf("read: %w", io.EOF), http.StatusBadGateway, upstream.ReasonEOF},
		{"unexpected eof", io.ErrUnexpectedEOF, http.StatusBadGateway, upstream.ReasonEOF},
		{"other", errors.New("malformed HTTP response"), http.StatusBadGateway, upstream.ReasonOther},
		{"breaker", upstream.ErrBreakerOpen, http.StatusBadGateway, upstream.ReasonOther},
	}
	if refused == nil {
		t.Fatal("dialing a closed port succeeded")
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, reason := upstream.StatusFor(tc.err)
			if st != tc.wantStatus || reason != tc.wantReason {
				t.Errorf("StatusFor(%v) = %d %q, want %d %q", tc.err, st, reason, tc.wantStatus, tc.wantReason)
			}
		})
	}
}

type tlsWrap struct{ err error }

func (e *tlsWrap) Error() string { return "tls: " + e.err.Error() }
func (e *tlsWrap) Unwrap() error { return e.err }

// A transport's real response-header timeout maps to 504.
func TestStatusForResponseHeaderTimeout(t *testing.T) {
	e := newListEnv(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }, upstream.LookupSettings{})
	tr := upstream.NewTransport(upstream.TransportSettings{ResponseHeaderTimeout: 50 * time.Millisecond})
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodGet, e.base, nil)
	_, err := tr.RoundTrip(req)
	if st, reason := upstream.StatusFor(err); st != http.StatusGatewayTimeout || reason != upstream.ReasonTimeout {
		t.Errorf("%v -> %d %s", err, st, reason)
	}
}

func TestNewTransport(t *testing.T) {
	t.Setenv("HTTP_PROXY", "http://127.0.0.1:1")
	t.Setenv("HTTPS_PROXY", "http://127.0.0.1:1")
	tr := upstream.NewTransport(upstream.TransportSettings{MaxIdleConnsPerHost: 7})
	if tr.Proxy != nil || !tr.ForceAttemptHTTP2 || tr.DisableKeepAlives || tr.MaxIdleConnsPerHost != 7 ||
		tr.ResponseHeaderTimeout != upstream.DefaultTransportSettings().ResponseHeaderTimeout || tr.TLSHandshakeTimeout == 0 {
		t.Errorf("transport %+v", tr)
	}
	// The environment's proxy is not used: a plain request still arrives.
	e := newListEnv(t, serve(page("")), upstream.LookupSettings{})
	req, _ := http.NewRequest(http.MethodGet, e.base, nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("went through the environment's proxy? %v", err)
	}
	resp.Body.Close()
}
