// Package server owns the proxy's two listeners (the proxy port and the
// admin port), their lifecycle including the SIGTERM drain, and the
// middleware chain every proxied request goes through: recover, request id,
// forwarding-header hygiene, metrics and the access log.
package server

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/pprof"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/composio-guard/composio-guard/internal/metrics"
)

// Options are what the server needs; only Settings is required.
type Options struct {
	Settings Settings
	Logger   *zap.Logger      // nil: no logs
	Metrics  *metrics.Metrics // nil: a private set nobody scrapes
	// Handler serves every request on the proxy port (the intercept Router).
	Handler http.Handler
	// Ready, when set, is asked by /readyz; an error answers 503. Keep it
	// cheap and never let a guard-backend outage fail it (that is a guard
	// decision, not a reason to take the pod out).
	Ready func() error
	// Announce is added to the "listening" line (the guard's mode).
	Announce []zap.Field
}

// Server runs the proxy and admin listeners.
type Server struct {
	cfg      Settings
	announce []zap.Field
	log      *zap.Logger
	metrics  *metrics.Metrics
	ready    func() error
	handler  http.Handler // the full proxy chain
	admin    http.Handler

	draining atomic.Bool
	bound    chan struct{}
	started  atomic.Bool
	// Set once before bound is closed.
	proxyAddr, adminAddr string
}

// New builds the server; nothing listens until Run.
func New(o Options) *Server {
	s := &Server{
		cfg:      o.Settings,
		announce: o.Announce,
		log:      o.Logger,
		metrics:  o.Metrics,
		ready:    o.Ready,
		bound:    make(chan struct{}),
	}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	if s.metrics == nil {
		s.metrics = metrics.New(metrics.Build{})
	}
	h := o.Handler
	if h == nil {
		h = http.NotFoundHandler()
	}
	mws := []Middleware{Recover(s.log), RequestID(s.log)}
	if !s.cfg.TrustForwarded {
		mws = append(mws, StripForwarded())
	}
	mws = append(mws, Observe(s.metrics, s.log))
	s.handler = Chain(h, mws...)
	s.admin = s.adminMux()
	return s
}

// Handler is the proxy port's full chain (middleware + Options.Handler),
// for tests and benchmarks that skip the listener.
func (s *Server) Handler() http.Handler { return s.handler }

// AdminHandler serves the admin port's paths.
func (s *Server) AdminHandler() http.Handler { return s.admin }

// Bound is closed once both listeners are bound; ProxyAddr and AdminAddr
// are valid from then on.
func (s *Server) Bound() <-chan struct{} { return s.bound }

// ProxyAddr is the proxy listener's bound host:port (after Bound).
func (s *Server) ProxyAddr() string { return s.proxyAddr }

// AdminAddr is the admin listener's bound host:port (after Bound).
func (s *Server) AdminAddr() string { return s.adminAddr }

func (s *Server) adminMux() http.Handler {
	mux := http.NewServeMux()
	// "GET /x" also answers HEAD; any path not listed is a 404, so nothing
	// is proxied from here.
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) {
		plain(w, http.StatusOK, "ok\n")
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", s.metrics.Handler())
	if s.cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	if s.draining.Load() {
		plain(w, http.StatusServiceUnavailable, "draining\n")
		return
	}
	if s.ready != nil {
		if err := s.ready(); err != nil {
			// The reason goes to the log, not to whoever can reach the port.
			s.log.Warn("not ready", zap.Error(err))
			plain(w, http.StatusServiceUnavailable, "not ready\n")
			return
		}
	}
	plain(w, http.StatusOK, "ok\n")
}

func plain(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(body))
}

// proxyServer has no ReadTimeout (uploads stream through to Composio at the
// client's pace) and no WriteTimeout (downloads and SSE answers stream for as
// long as Composio sends). A slow client is bounded by ReadHeaderTimeout
// before the request starts and by IdleTimeout between requests; a request
// body or answer that stalls is bounded by the upstream transport's timeouts.
func (s *Server) proxyServer() *http.Server {
	return &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		MaxHeaderBytes:    s.cfg.MaxHeaderBytes,
		ErrorLog:          stdLog(s.log, "proxy"),
	}
}

// adminServer has no WriteTimeout either: a pprof CPU profile takes as long
// as it was asked to.
func (s *Server) adminServer() *http.Server {
	return &http.Server{
		Handler:           s.admin,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		MaxHeaderBytes:    s.cfg.MaxHeaderBytes,
		ErrorLog:          stdLog(s.log, "admin"),
	}
}

// stdLog routes net/http's own complaints (TLS, accept errors, superfluous
// WriteHeader calls) into the JSON log at WARN. They never carry headers.
func stdLog(l *zap.Logger, listener string) *log.Logger {
	sl, err := zap.NewStdLogAt(l.With(zap.String("listener", listener)), zapcore.WarnLevel)
	if err != nil { // only for levels above Fatal
		return zap.NewStdLog(l)
	}
	return sl
}

// ErrGraceExceeded is returned (wrapped) by Run when requests were still in
// flight at the end of GUARD_SHUTDOWN_GRACE and their connections were cut.
var ErrGraceExceeded = errors.New("shutdown grace exceeded")

// Run binds both listeners, logs one "listening" line with the bound
// addresses, and serves until ctx is done. Then it drains: /readyz answers
// 503 (and the draining gauge is 1), keep-alives stop, after
// GUARD_DRAIN_DELAY the proxy listener closes and in-flight requests get
// until GUARD_SHUTDOWN_GRACE (counted from ctx's end) to finish; then the
// admin listener closes. It returns nil after a clean drain. Run may be
// called once.
func (s *Server) Run(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("server: Run called twice")
	}
	var lc net.ListenConfig
	pl, err := lc.Listen(ctx, "tcp", s.cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("server: proxy listener on %s: %w", s.cfg.ListenAddr, err)
	}
	al, err := lc.Listen(ctx, "tcp", s.cfg.AdminAddr)
	if err != nil {
		pl.Close()
		return fmt.Errorf("server: admin listener on %s: %w", s.cfg.AdminAddr, err)
	}
	s.proxyAddr, s.adminAddr = pl.Addr().String(), al.Addr().String()
	close(s.bound)

	proxy, admin := s.proxyServer(), s.adminServer()
	errc := make(chan error, 2)
	go func() { errc <- serve(proxy, pl, "proxy") }()
	go func() { errc <- serve(admin, al, "admin") }()
	s.log.Info("listening", append([]zap.Field{
		zap.String("proxy_addr", s.proxyAddr),
		zap.String("admin_addr", s.adminAddr),
		zap.Bool("pprof", s.cfg.Pprof)}, s.announce...)...)

	var runErr error
	pending := 2
	select {
	case <-ctx.Done():
	case runErr = <-errc: // a listener died: stop the other one too
		pending--
		s.log.Error("listener failed", zap.Error(runErr))
	}

	deadline := time.Now().Add(s.cfg.ShutdownGrace)
	s.draining.Store(true)
	s.metrics.Draining.Set(1)
	proxy.SetKeepAlivesEnabled(false)
	if runErr == nil {
		s.log.Info("draining",
			zap.Duration("drain_delay", s.cfg.DrainDelay),
			zap.Duration("shutdown_grace", s.cfg.ShutdownGrace))
		// Load balancers and kube-proxy need a moment to see /readyz fail;
		// until then new requests are still served.
		t := time.NewTimer(s.cfg.DrainDelay)
		<-t.C
	}

	sctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	if err := proxy.Shutdown(sctx); err != nil {
		proxy.Close()
		s.log.Warn("in-flight requests cut at the end of the shutdown grace", zap.Duration("shutdown_grace", s.cfg.ShutdownGrace))
		runErr = errors.Join(runErr, fmt.Errorf("server: %w (%s): %w", ErrGraceExceeded, s.cfg.ShutdownGrace, err))
	}
	actx, acancel := context.WithTimeout(context.Background(), time.Second)
	defer acancel()
	if err := admin.Shutdown(actx); err != nil {
		admin.Close()
	}
	for ; pending > 0; pending-- {
		if err := <-errc; err != nil {
			runErr = errors.Join(runErr, err)
		}
	}
	if runErr == nil {
		s.log.Info("stopped")
	}
	return runErr
}

// serve runs srv on l; a clean close is no error.
func serve(srv *http.Server, l net.Listener, name string) error {
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("server: %s listener: %w", name, err)
	}
	return nil
}
