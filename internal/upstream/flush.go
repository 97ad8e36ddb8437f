package upstream

import (
	"net/http"
	"net/http/httputil"
	"strconv"
)

// Proxy is the pass-through ReverseProxy with the proxy's flushing policy:
// nothing of an answer is held back while the rest is still to come, yet a
// whole answer costs one write to the client, not one per part.
type Proxy struct {
	rp *httputil.ReverseProxy
}

// ServeHTTP forwards r to Composio.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.rp.ServeHTTP(&streamWriter{ResponseWriter: w}, r)
}

// streamWriter flushes a known-length answer after every part but the
// last. The ReverseProxy itself flushes after every write only answers of
// unknown length and server-sent events; flushing known-length ones the
// same way (FlushInterval -1) cost a timer goroutine, an early flush of the
// header alone and a flush of the body: three writes to the socket for a
// small JSON answer instead of one.
type streamWriter struct {
	http.ResponseWriter
	left int64 // bytes of a known-length body still to come; <= 0 when unknown or done
	sent bool  // the final header was written
}

func (w *streamWriter) WriteHeader(code int) {
	if !w.sent && code >= 200 {
		w.sent = true
		if vs := w.Header()["Content-Length"]; len(vs) == 1 {
			if n, err := strconv.ParseInt(vs[0], 10, 64); err == nil {
				w.left = n
			}
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *streamWriter) Write(p []byte) (int, error) {
	if !w.sent {
		w.WriteHeader(http.StatusOK)
	}
	n, err := w.ResponseWriter.Write(p)
	if w.left > 0 {
		w.left -= int64(n)
		// More is to come, perhaps slowly: what arrived goes out now.
		if w.left > 0 && err == nil {
			_ = w.FlushError()
		}
	}
	return n, err
}

// Flush and FlushError let the ReverseProxy flush through the wrapper
// (unknown lengths, server-sent events, trailers).
func (w *streamWriter) Flush() { _ = w.FlushError() }

func (w *streamWriter) FlushError() error {
	switch f := w.ResponseWriter.(type) {
	case interface{ FlushError() error }:
		return f.FlushError()
	case http.Flusher:
		f.Flush()
		return nil
	}
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the writer underneath
// (hijacking for protocol upgrades, deadlines).
func (w *streamWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
