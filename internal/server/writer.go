package server

import (
	"bufio"
	"net"
	"net/http"

	"github.com/composio-guard/composio-guard/internal/apierror"
	"github.com/composio-guard/composio-guard/internal/reqscope"
)

// responseWriter records the status and body size for the access log and
// metrics. It also carries the request's Scope, so the writer and the scope
// cost one allocation together, and so the outer Recover can read the
// request id set further in. Every middleware of this package shares the one
// wrapper (see wrap).
type responseWriter struct {
	http.ResponseWriter
	status   int // final status; 0 until headers are sent
	bytesOut int64
	hasScope bool
	scope    reqscope.Scope
}

// wrap returns w itself when an outer middleware of this package already
// wrapped it, else a fresh wrapper.
func wrap(w http.ResponseWriter) *responseWriter {
	if rw, ok := w.(*responseWriter); ok {
		return rw
	}
	return &responseWriter{ResponseWriter: w}
}

// Unwrap lets http.ResponseController reach the connection (deadlines,
// hijacking, full-duplex) through the wrapper.
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// WriteHeader records the final status. Informational answers (103 Early
// Hints, 100 Continue) pass through without being taken for the final one.
func (w *responseWriter) WriteHeader(code int) {
	if w.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		w.status = code
		w.beforeHeader()
	}
	w.ResponseWriter.WriteHeader(code)
}

// beforeHeader gives every answer an X-Request-Id: the proxy's own, unless
// the handler (or Composio's answer) already set one.
func (w *responseWriter) beforeHeader() {
	if !w.hasScope {
		return
	}
	h := w.ResponseWriter.Header()
	if _, ok := h[apierror.HeaderRequestID]; !ok {
		h[apierror.HeaderRequestID] = []string{w.scope.RequestID}
	}
}

func (w *responseWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytesOut += int64(n)
	return n, err
}

// Flush keeps streaming (SSE) working through the wrapper.
func (w *responseWriter) Flush() {
	_ = w.FlushError()
}

// FlushError is what http.ResponseController.Flush calls first.
func (w *responseWriter) FlushError() error {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
		return nil
	}
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Hijack serves protocol upgrades the ReverseProxy passes through; the
// answer then counts as 101.
func (w *responseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil && w.status == 0 {
		w.status = http.StatusSwitchingProtocols
	}
	return c, brw, err
}
