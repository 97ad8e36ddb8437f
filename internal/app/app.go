// Package app is the one assembly: settings in, a running proxy out. main,
// the end-to-end tests and the benchmarks build the proxy through New, so
// there is one wiring of metrics, transport, ReverseProxy, lookup client,
// lock store, guard, router and server.
package app

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"go.uber.org/zap"

	"github.com/composio-guard/composio-guard/internal/audit"
	"github.com/composio-guard/composio-guard/internal/config"
	"github.com/composio-guard/composio-guard/internal/intercept"
	"github.com/composio-guard/composio-guard/internal/lock"
	"github.com/composio-guard/composio-guard/internal/metrics"
	"github.com/composio-guard/composio-guard/internal/server"
	"github.com/composio-guard/composio-guard/internal/upstream"
)

// Options are what New needs beside the settings; all may be zero.
type Options struct {
	// Version and Revision are the build's: composio_guard_build_info and
	// the lookup's User-Agent.
	Version, Revision string
	// Logger receives every line; nil: no logs.
	Logger *zap.Logger
	// Metrics, when nil, is a new set (metrics.New with the build info).
	Metrics *metrics.Metrics
	// Transport, when set, replaces the transport to Composio built from
	// cfg.Transport: benchmarks put an in-process upstream here.
	Transport http.RoundTripper
}

// Proxy is the assembled proxy: Run serves it, Handler skips the listeners.
type Proxy struct {
	Server  *server.Server
	Metrics *metrics.Metrics
	Store   lock.Store
	// Audit is the periodic audit (nil when GUARD_AUDIT_INTERVAL is 0);
	// Run starts it beside the server.
	Audit *audit.Periodic

	log *zap.Logger
}

// New builds the request path once from cfg (which Validate has passed):
// one transport (shared; the ReverseProxy and the list client instrument it
// per operation), one ReverseProxy, one list client, one lock store, the
// guard, the router and the server. Nothing listens until Run. Close (or
// Run) releases the store.
func New(cfg config.Config, o Options) (*Proxy, error) {
	log := o.Logger
	if log == nil {
		log = zap.NewNop()
	}
	m := o.Metrics
	if m == nil {
		m = metrics.New(metrics.Build{Version: o.Version, Revision: o.Revision})
	}
	var rt http.RoundTripper = upstream.NewTransport(cfg.Transport)
	if o.Transport != nil {
		rt = o.Transport
	}
	target := cfg.Transport.Base()
	if target == nil {
		return nil, fmt.Errorf("app: invalid %sUPSTREAM_URL", config.Prefix)
	}
	proxy := upstream.NewProxy(target, rt, upstream.ProxyOptions{
		TrustForwarded:    cfg.Server.TrustForwarded,
		KeepOptIn:         cfg.Guard.Mode == config.ModeOff,
		Metrics:           m,
		RetryAfterSeconds: cfg.Guard.RetryAfterSeconds(),
		Logger:            log,
	})
	lister := upstream.NewListClient(target, rt, cfg.Lookup, upstream.ListOptions{
		UserAgent: "composio-guard/" + version(o.Version),
		Metrics:   m,
	})
	store, err := openStore(cfg.Lock, m, log)
	if err != nil {
		return nil, err
	}
	createSeries(m, store.Backend())
	// A session link's lookup reads the session first; it is counted as a
	// lookup (the same list of Composio calls the guard adds).
	sessions := upstream.NewSessionClient(target, upstream.Instrument(rt, upstream.OpLookup, m),
		cfg.Guard.SessionCacheTTL, cfg.Lookup.Timeout, "composio-guard/"+version(o.Version))
	guard := intercept.NewGuard(cfg.GuardConfig(), lister, store, proxy, m, intercept.WithSessions(sessions))
	srv := server.New(server.Options{
		Settings: cfg.Server,
		Logger:   log,
		Metrics:  m,
		Handler:  intercept.Router(guard, proxy),
		Announce: []zap.Field{zap.String("mode", string(cfg.Guard.Mode))},
	})
	p := &Proxy{Server: srv, Metrics: m, Store: store, log: log}
	if cfg.Audit.Enabled() {
		// Its own HTTP client and limits: never the lookup's transport,
		// breaker or body budget. The lock store makes one replica audit.
		p.Audit = audit.NewPeriodic(cfg.Audit, audit.PeriodicOptions{
			BaseURL: target, PendingTTL: cfg.Guard.PendingMaxTTL, Store: store, Metrics: m, Logger: log,
			UserAgent: "composio-guard-audit/" + version(o.Version),
		})
	}
	return p, nil
}

// version is the build's version for User-Agents, "dev" when unstamped.
func version(v string) string {
	if v == "" {
		return "dev"
	}
	return v
}

// Handler is the proxy port's full chain (middleware, router, guard), for
// tests and benchmarks that skip the listeners.
func (p *Proxy) Handler() http.Handler { return p.Server.Handler() }

// Run serves until ctx ends, drains, and closes the store.
func (p *Proxy) Run(ctx context.Context) error {
	defer p.Close()
	if p.Audit != nil {
		actx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			p.Audit.Run(actx)
		}()
		// Stopped before the store closes (deferred Close runs after).
		defer func() { cancel(); <-done }()
	}
	return p.Server.Run(ctx)
}

// Close releases the store (a Redis connection pool); safe to call twice.
func (p *Proxy) Close() {
	if c, ok := p.Store.(io.Closer); ok {
		if err := c.Close(); err != nil {
			p.log.Warn("closing the lock store", zap.Error(err))
		}
	}
}
