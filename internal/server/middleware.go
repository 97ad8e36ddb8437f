package server

import (
	"fmt"
	"net/http"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/composio-guard/composio-guard/internal/apierror"
	"github.com/composio-guard/composio-guard/internal/logging"
	"github.com/composio-guard/composio-guard/internal/metrics"
	"github.com/composio-guard/composio-guard/internal/reqscope"
)

// Middleware wraps a handler.
type Middleware = func(http.Handler) http.Handler

// Chain wraps h in mws, the first being the outermost:
// Chain(h, a, b) serves a(b(h)).
func Chain(h http.Handler, mws ...func(http.Handler) http.Handler) http.Handler {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}

// StatusClientClosed is logged and counted when the client went away before
// any answer was sent (nginx's convention; never written on the wire).
const StatusClientClosed = 499

// Caps on what one access line copies from the request.
const (
	maxLoggedPath      = 512
	maxLoggedUserAgent = 256
)

// Recover turns a panic into a 500 in Composio's envelope, logged with its
// stack; the process never crashes on a request. http.ErrAbortHandler goes
// on to net/http, which aborts the connection quietly. A panic after the
// headers went out aborts the connection too, so the client sees a broken
// answer rather than a truncated one that looks complete.
func Recover(log *zap.Logger) Middleware {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rw := wrap(w)
			defer func() {
				p := recover()
				if p == nil {
					return
				}
				if p == http.ErrAbortHandler {
					panic(p)
				}
				id := rw.scope.RequestID
				if !rw.hasScope {
					id = newRequestID()
				}
				log.Error("panic serving request",
					zap.String(logging.FieldRequestID, id),
					zap.String(logging.FieldMethod, r.Method),
					zap.String(logging.FieldPath, capString(r.URL.Path, maxLoggedPath)),
					zap.String("panic", capString(fmt.Sprint(p), 1024)),
					zap.ByteString("stack", debug.Stack()))
				if rw.status != 0 {
					panic(http.ErrAbortHandler)
				}
				apierror.Write(rw, &apierror.Error{
					Message:      "composio-guard hit an internal error while handling the request.",
					Code:         apierror.CodeInternal,
					Slug:         apierror.SlugInternal,
					Status:       http.StatusInternalServerError,
					RequestID:    id,
					SuggestedFix: "This is a bug in the proxy; report it with the request id. Retrying the same request will likely fail the same way.",
				}, apierror.Options{NoRetry: true})
			}()
			next.ServeHTTP(rw, r)
		})
	}
}

// RequestID takes the inbound X-Request-Id when it is sane (1 to 128 visible
// ASCII characters) or makes one, sends it upstream (the request header is
// set) and back (the answer's header), and puts the request's Scope, whose
// Logger carries request_id, in the context. It ends the Scope once the
// request is served (reqscope.Scope.End), panic or not.
func RequestID(base *zap.Logger) Middleware {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rw := wrap(w)
			vals := r.Header[apierror.HeaderRequestID]
			var id string
			if len(vals) == 1 && saneRequestID(vals[0]) {
				id = vals[0]
			} else {
				if len(vals) > 0 && saneRequestID(vals[0]) {
					id = vals[0]
				} else {
					id = newRequestID()
				}
				r.Header[apierror.HeaderRequestID] = []string{id}
			}
			s := &rw.scope
			s.RequestID = id
			s.Start = time.Now()
			s.SetBaseLogger(base) // built with request_id only if the handler logs
			s.Route = reqscope.RoutePassthrough
			rw.hasScope = true
			s.WillEnd()
			defer s.End() // what the request held (guarded body bytes) goes back once it is served
			if r.ProtoMajor == 1 && len(r.TransferEncoding) > 0 {
				// net/http reads a body sent with both Content-Length and
				// Transfer-Encoding as chunked and drops the length, but cannot
				// tell us it did; RFC 9112 §6.1 then wants the connection closed,
				// which also ends anything smuggled behind the body. Closing after
				// every chunked request costs chunked uploaders a reconnect only.
				rw.Header().Set("Connection", "close")
			}
			next.ServeHTTP(rw, r.WithContext(reqscope.With(r.Context(), s)))
		})
	}
}

// Forwarding headers a client could forge to pass for someone else.
var forwardingHeaders = [...]string{
	"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto",
	"X-Forwarded-Port", "X-Forwarded-Prefix", "X-Real-Ip", "X-Client-Ip",
}

// StripForwarded drops forwarding headers from the inbound request, so that
// neither the guard nor Composio sees values a client made up. Used unless
// GUARD_TRUST_FORWARDED says a trusted hop in front sets them.
func StripForwarded() Middleware {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			for _, k := range forwardingHeaders {
				delete(r.Header, k)
			}
			next.ServeHTTP(w, r)
		})
	}
}

// Observe keeps the in-flight gauge, counts and times every request by
// {route, method, code}, records the proxy's own overhead, and writes ONE
// access line per request at INFO. It reads the Scope RequestID put in the
// context, so it goes after RequestID.
func Observe(m *metrics.Metrics, log *zap.Logger) Middleware {
	o := &observer{m: m, log: log, series: newSeriesCache(m)}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rw := wrap(w)
			s := &rw.scope
			if !rw.hasScope {
				s = reqscope.From(r.Context())
			}
			start := s.Start
			if start.IsZero() {
				start = time.Now()
			}
			m.InFlight.Inc()
			defer func() {
				// Recovered only to learn about the panic; it goes on to
				// Recover, which writes the answer.
				p := recover()
				o.finish(rw, r, s, start, p)
				if p != nil {
					panic(p)
				}
			}()
			next.ServeHTTP(rw, r)
		})
	}
}

type observer struct {
	m      *metrics.Metrics
	log    *zap.Logger
	series *seriesCache
}

// fieldPool recycles access-line field slices (zap encodes fields during
// Write and keeps none), saving a 1 KiB allocation per request.
var fieldPool = sync.Pool{New: func() any {
	f := make([]zap.Field, 0, 20)
	return &f
}}

func (o *observer) finish(rw *responseWriter, r *http.Request, s *reqscope.Scope, start time.Time, p any) {
	total := time.Since(start)
	o.m.InFlight.Dec()
	status := rw.status
	aborted := p != nil && status != 0
	switch {
	case status != 0:
	case p != nil && p != http.ErrAbortHandler:
		status = http.StatusInternalServerError // what Recover will write
	case r.Context().Err() != nil:
		status = StatusClientClosed
	default:
		status = http.StatusOK // net/http's implicit answer
	}
	route := s.Route
	if route == "" {
		route = reqscope.RoutePassthrough
	}
	ser := o.series.get(route, methodLabel(r.Method), status)
	ser.requests.Inc()
	ser.duration.Observe(total.Seconds())
	upstream := time.Duration(s.UpstreamNanos.Load())
	ser.overhead.Observe(max(total-upstream, 0).Seconds())

	ce := o.log.Check(zap.InfoLevel, "request")
	if ce == nil {
		return
	}
	fp := fieldPool.Get().(*[]zap.Field)
	fields := (*fp)[:0]
	fields = append(fields,
		zap.String(logging.FieldRequestID, s.RequestID),
		zap.String(logging.FieldRoute, route),
		zap.String(logging.FieldMethod, capString(r.Method, 16)),
		zap.String(logging.FieldPath, capString(r.URL.Path, maxLoggedPath)),
		zap.Int(logging.FieldStatus, status),
		zap.Duration(logging.FieldDuration, total),
		zap.Duration(logging.FieldUpstreamDuration, upstream),
	)
	if l := s.LookupNanos.Load(); l > 0 {
		fields = append(fields, zap.Duration(logging.FieldLookupDuration, time.Duration(l)))
	}
	if s.Decision != "" {
		fields = append(fields, zap.String(logging.FieldDecision, s.Decision))
	}
	if s.Reason != "" {
		fields = append(fields, zap.String(logging.FieldReason, s.Reason))
	}
	if s.Mode != "" {
		fields = append(fields, zap.String(logging.FieldMode, s.Mode))
	}
	if s.SandboxSize != "" {
		fields = append(fields, zap.String(logging.FieldSandboxSize, s.SandboxSize))
	}
	if r.ContentLength >= 0 {
		fields = append(fields, zap.Int64(logging.FieldBytesIn, r.ContentLength))
	}
	fields = append(fields,
		zap.Int64(logging.FieldBytesOut, rw.bytesOut),
		zap.String(logging.FieldRemoteAddr, r.RemoteAddr),
		zap.String(logging.FieldUserAgent, capString(r.UserAgent(), maxLoggedUserAgent)),
	)
	if p != nil && p != http.ErrAbortHandler {
		fields = append(fields, zap.Bool("panic", true))
	}
	if aborted {
		fields = append(fields, zap.Bool("aborted", true))
	}
	ce.Write(fields...)
	clear(fields) // drop references to this request's strings
	*fp = fields[:0]
	fieldPool.Put(fp)
}

// methodLabel folds the method into a closed set for metric labels.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet:
		return http.MethodGet
	case http.MethodPost:
		return http.MethodPost
	case http.MethodPut:
		return http.MethodPut
	case http.MethodPatch:
		return http.MethodPatch
	case http.MethodDelete:
		return http.MethodDelete
	case http.MethodHead:
		return http.MethodHead
	case http.MethodOptions:
		return http.MethodOptions
	}
	return "other"
}

// codeLabels holds "100" … "599" so labelling a status allocates nothing.
var codeLabels = func() (t [600]string) {
	for i := 100; i < len(t); i++ {
		t[i] = strconv.Itoa(i)
	}
	return t
}()

func codeLabel(code int) string {
	if code >= 100 && code < len(codeLabels) {
		return codeLabels[code]
	}
	return "other"
}

func capString(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
