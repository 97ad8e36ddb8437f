package upstream

import (
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"

	"go.uber.org/zap"

	"github.com/composio-guard/composio-guard/internal/apierror"
	"github.com/composio-guard/composio-guard/internal/logging"
	"github.com/composio-guard/composio-guard/internal/metrics"
	"github.com/composio-guard/composio-guard/internal/reqscope"
)

// ProxyOptions tune the pass-through proxy.
type ProxyOptions struct {
	// TrustForwarded passes the inbound X-Forwarded-For, -Host and -Proto
	// on; otherwise none is sent (a client could make them up).
	TrustForwarded bool
	// KeepOptIn forwards the proxy's own opt-in header instead of removing
	// it: GUARD_MODE=off is a pure pass-through that changes nothing.
	KeepOptIn bool
	// Metrics, when set, instruments rt as op "forward" (see Instrument):
	// pass the bare transport then, not one already instrumented.
	Metrics *metrics.Metrics
	// RetryAfterSeconds, when > 0, adds Retry-After to the proxy's own 502
	// and 504 answers, so the SDKs' retry of those waits at least that long.
	RetryAfterSeconds int
	// Logger receives the ReverseProxy's own lines (e.g. a body copy that
	// failed half way) at WARN. nil: discarded. Per-request lines go to
	// the request scope's logger.
	Logger *zap.Logger
}

// Forwarding headers passed on when TrustForwarded.
var trustedForwarding = [...]string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"}

// NewProxy builds the one ReverseProxy to target (scheme, host and an
// optional path prefix). Whatever Host or absolute-form URL a client sends,
// the request goes to target and nowhere else. Build it once.
func NewProxy(target *url.URL, rt http.RoundTripper, o ProxyOptions) *Proxy {
	if o.Metrics != nil {
		rt = Instrument(rt, OpForward, o.Metrics)
	}
	logger := o.Logger
	if logger == nil {
		logger = zap.NewNop()
	}
	target = &url.URL{Scheme: target.Scheme, Host: target.Host, Path: target.Path, RawPath: target.RawPath}
	p := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			// SetURL replaces scheme and host (absolute-form URLs included),
			// joins the path and makes the outbound Host the target's.
			pr.SetURL(target)
			if o.TrustForwarded {
				for _, k := range trustedForwarding {
					if vs := pr.In.Header[k]; len(vs) > 0 {
						pr.Out.Header[k] = vs
					}
				}
			}
			// The proxy's own opt-in header is never Composio's business,
			// unless the guard is off and the proxy changes nothing.
			if !o.KeepOptIn {
				pr.Out.Header.Del(apierror.HeaderAllowMultiple)
			}
			if id := reqscope.From(pr.In.Context()).RequestID; id != "" {
				pr.Out.Header[apierror.HeaderRequestID] = []string{id}
			}
		},
		Transport: rt,
		// 0: answers of unknown length and server-sent events are flushed
		// after every write by the ReverseProxy itself; known-length ones
		// by streamWriter, after every part but the last (see Proxy).
		FlushInterval: 0,
		BufferPool:    bufferPool{},
		ErrorLog:      stdLog(logger),
		ModifyResponse: func(resp *http.Response) error {
			// Composio's own request id wins; else the client gets ours.
			if _, ok := resp.Header[apierror.HeaderRequestID]; !ok {
				if id := reqscope.From(resp.Request.Context()).RequestID; id != "" {
					resp.Header[apierror.HeaderRequestID] = []string{id}
				}
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			writeUpstreamError(w, r, err, o.RetryAfterSeconds)
		},
	}
	return &Proxy{rp: p}
}

func stdLog(l *zap.Logger) *log.Logger {
	sl, err := zap.NewStdLogAt(l, zap.WarnLevel)
	if err != nil { // only for an invalid level
		return zap.NewStdLog(l)
	}
	return sl
}

// writeUpstreamError answers a forward that got no answer. The error text
// is logged with the request id, never sent to the client.
func writeUpstreamError(w http.ResponseWriter, r *http.Request, err error, retryAfter int) {
	s := reqscope.From(r.Context())
	status, reason := StatusFor(err)
	if status == StatusClientGone {
		// Nobody is left to read an answer.
		s.Log().Info("client gone", zap.String(logging.FieldReason, reason), zap.Error(err))
		return
	}
	s.Log().Warn("upstream call failed",
		zap.Int(logging.FieldStatus, status), zap.String(logging.FieldReason, reason), zap.Error(err))
	e := &apierror.Error{Status: status, RequestID: s.RequestID}
	opt := apierror.Options{}
	switch status {
	case http.StatusRequestEntityTooLarge:
		e.Code, e.Slug = apierror.CodeBodyTooLarge, apierror.SlugBodyTooLarge
		e.Message = "The request body is larger than the proxy accepts."
		e.SuggestedFix = "Send a smaller body."
		opt.NoRetry = true
	case http.StatusGatewayTimeout:
		e.Code, e.Slug = apierror.CodeUpstream, apierror.SlugUpstreamTimeout
		e.Message = "Composio did not answer in time."
		e.SuggestedFix = "Retry later; if it persists, check Composio's status."
		opt.RetryAfterSeconds = retryAfter
	default:
		e.Code, e.Slug = apierror.CodeUpstream, apierror.SlugUpstreamError
		e.Message = "The proxy could not reach Composio."
		e.SuggestedFix = "Retry later; if it persists, check the proxy's upstream settings and Composio's status."
		opt.RetryAfterSeconds = retryAfter
	}
	apierror.Write(w, e, opt)
}

// bufferPool recycles the 32 KiB copy buffers of streamed bodies.
type bufferPool struct{}

var copyBuffers = sync.Pool{New: func() any {
	b := make([]byte, 32<<10)
	return &b
}}

func (bufferPool) Get() []byte { return *(copyBuffers.Get().(*[]byte)) }

func (bufferPool) Put(b []byte) {
	if cap(b) == 32<<10 {
		copyBuffers.Put(&b)
	}
}
