package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/composio-guard/composio-guard/internal/composiotest"
	"github.com/composio-guard/composio-guard/internal/config"
	"github.com/composio-guard/composio-guard/internal/intercept"
	"github.com/composio-guard/composio-guard/internal/lock"
	"github.com/composio-guard/composio-guard/internal/logging"
	"github.com/composio-guard/composio-guard/internal/metrics"
	"github.com/composio-guard/composio-guard/internal/server"
	"github.com/composio-guard/composio-guard/internal/upstream"
)

type options struct {
	checkConfig bool
	demo        bool
	stdout      io.Writer
	stderr      io.Writer
}

// run loads the configuration, builds the request path once and serves until
// ctx ends.
func run(ctx context.Context, o options) error {
	cfg, err := config.Load()
	if err != nil {
		return fmt.Errorf("invalid configuration:\n%w", err)
	}
	if o.checkConfig {
		fmt.Fprintf(o.stdout, "configuration ok: %s\n", cfg)
		for _, n := range cfg.Notes() {
			fmt.Fprintf(o.stdout, "note: %s\n", n)
		}
		return nil
	}
	if o.demo {
		stopFake, err := startDemoUpstream(&cfg)
		if err != nil {
			return err
		}
		defer stopFake()
	}
	log, err := logging.New(string(cfg.LogLevel), o.stderr)
	if err != nil {
		return fmt.Errorf("logger: %w", err)
	}
	defer func() { _ = log.Sync() }()
	log.Info("starting", zap.String("version", version), zap.String("revision", revision), zap.Stringer("config", cfg))
	for _, n := range cfg.Notes() {
		log.Info("setting adjusted", zap.String("note", n))
	}
	if unknown := config.UnknownKeys(os.Environ()); len(unknown) > 0 {
		log.Warn("unknown GUARD_ settings ignored", zap.Strings("names", unknown))
	}

	m := metrics.New(metrics.Build{Version: version, Revision: revision})
	handler, closeStore, err := build(cfg, m, log)
	if err != nil {
		return err
	}
	defer closeStore()
	srv := server.New(server.Options{Config: cfg, Logger: log, Metrics: m, Handler: handler})
	if o.demo {
		go func() {
			select {
			case <-srv.Bound():
				printDemo(o.stderr, srv.ProxyAddr(), srv.AdminAddr())
			case <-ctx.Done():
			}
		}()
	}
	return srv.Run(ctx)
}

// build assembles the request path: one transport (shared; NewProxy and
// NewListClient instrument it per operation), one ReverseProxy, one list
// client, one store, the guard, the router.
func build(cfg config.Config, m *metrics.Metrics, log *zap.Logger) (http.Handler, func(), error) {
	target := cfg.UpstreamBase()
	tr := upstream.NewTransport(upstream.TransportOptions{
		DialTimeout:           cfg.UpstreamDialTimeout,
		TLSHandshakeTimeout:   cfg.UpstreamTLSHandshakeTimeout,
		ResponseHeaderTimeout: cfg.UpstreamResponseHeaderTimeout,
		IdleConnTimeout:       cfg.UpstreamIdleConnTimeout,
		MaxIdleConnsPerHost:   cfg.UpstreamMaxIdleConnsPerHost,
	})
	proxy := upstream.NewProxy(target, tr, upstream.ProxyOptions{
		TrustForwarded:    cfg.TrustForwarded,
		KeepOptIn:         cfg.Mode == config.ModeOff,
		Metrics:           m,
		RetryAfterSeconds: cfg.RetryAfterSeconds(),
		Logger:            log,
	})
	lister := upstream.NewListClient(target, tr, upstream.ListOptions{
		Timeout:   cfg.LookupTimeout,
		PageLimit: cfg.LookupPageLimit,
		MaxPages:  cfg.LookupMaxPages,
		UserAgent: "composio-guard/" + version,
		Breaker: upstream.BreakerOptions{
			FailureThreshold: cfg.LookupBreakerThreshold,
			CoolDown:         cfg.LookupBreakerCooldown,
		},
	}, m)

	store, closeStore, err := openStore(cfg, m, log)
	if err != nil {
		return nil, nil, err
	}
	guard := intercept.NewGuard(intercept.Config{
		Mode:                string(cfg.Mode),
		FailureMode:         string(cfg.FailureMode),
		MaxBodyBytes:        cfg.MaxBodyBytes,
		BodyBudgetBytes:     cfg.BodyBudgetBytes,
		BodyReadTimeout:     cfg.BodyReadTimeout,
		LookupTimeout:       cfg.LookupTimeout,
		LockWait:            cfg.EffectiveLockWait(),
		LockTTL:             cfg.LockTTL(),
		PendingAction:       string(cfg.PendingAction),
		PendingMaxTTL:       cfg.PendingMaxTTL,
		AllowMultiple:       string(cfg.AllowMultiple),
		MultipleAuthConfigs: cfg.MultipleAuthConfigs,
		RetryAfterSeconds:   cfg.RetryAfterSeconds(),
		SandboxMaxSize:      cfg.SandboxMaxSize,
		SandboxAllowedSizes: cfg.SandboxAllowedSizes,
		SandboxDefaultSize:  cfg.SandboxDefaultSize,
	}, lister, store, proxy, m)
	return intercept.Router(guard, proxy), closeStore, nil
}

func openStore(cfg config.Config, m *metrics.Metrics, log *zap.Logger) (lock.Store, func(), error) {
	if cfg.LockBackend != config.LockRedis {
		w := &evictionWarner{log: log, count: m.Leases.WithLabelValues(metrics.LeaseEvicted)}
		return lock.NewMemoryWith(lock.MemoryOptions{OnEvict: w.evicted}), func() {}, nil
	}
	store, err := lock.NewRedis(lock.RedisOptions{
		URL:       cfg.RedisURL,
		KeyPrefix: cfg.RedisKeyPrefix,
		Timeout:   cfg.RedisTimeout,
		Metrics:   m,
		Logger:    log,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("redis lock backend: %w", err)
	}
	closeStore := func() {
		if c, ok := store.(io.Closer); ok {
			if err := c.Close(); err != nil {
				log.Warn("closing redis", zap.Error(err))
			}
		}
	}
	return store, closeStore, nil
}

// evictionWarner counts the live leases the full memory store evicts, and
// logs them at WARN, at most once per evictionWarnEvery with how many went
// since the last line: a store kept full would otherwise log every link. The
// line names nothing of a link (its key names a user). See docs/security.md,
// "Resource exhaustion".
type evictionWarner struct {
	log   *zap.Logger
	count prometheus.Counter

	mu      sync.Mutex
	last    time.Time
	pending int
}

const evictionWarnEvery = 10 * time.Second

func (w *evictionWarner) evicted() {
	w.count.Inc()
	w.mu.Lock()
	w.pending++
	now := time.Now()
	if now.Sub(w.last) < evictionWarnEvery {
		w.mu.Unlock()
		return
	}
	n := w.pending
	w.last, w.pending = now, 0
	w.mu.Unlock()
	w.log.Warn("pending-link lease store full: live leases evicted, closest to expiry first (a repeat of such a link is refused as pending, no longer replayed)",
		zap.Int("evicted", n))
}

// startDemoUpstream serves the fake Composio on loopback and points cfg at it.
// The demo also listens on loopback only unless the addresses were set.
func startDemoUpstream(cfg *config.Config) (func(), error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("demo upstream: %w", err)
	}
	fake := composiotest.New()
	ts := &httptest.Server{Listener: l, Config: &http.Server{Handler: fake}}
	ts.Start()
	cfg.UpstreamURL = ts.URL
	if _, set := os.LookupEnv("GUARD_LISTEN_ADDR"); !set {
		cfg.ListenAddr = "127.0.0.1:8080"
	}
	if _, set := os.LookupEnv("GUARD_ADMIN_ADDR"); !set {
		cfg.AdminAddr = "127.0.0.1:9090"
	}
	if _, set := os.LookupEnv("GUARD_DRAIN_DELAY"); !set {
		cfg.DrainDelay = 0
	}
	return func() { fake.Close(); ts.Close() }, nil
}

func printDemo(w io.Writer, proxyAddr, adminAddr string) {
	base := "http://" + proxyAddr
	fmt.Fprintf(w, `
composio-guard demo: the proxy at %[1]s stands in front of a built-in fake Composio.
Try (any x-api-key works against the fake):

  # 1. a first link for user alice: forwarded, 201
  curl -s -XPOST %[1]s/api/v3/connected_accounts/link -H 'x-api-key: demo' \
       -d '{"user_id":"alice","auth_config_id":"ac_demo"}'
  # 2. the same again while the first is pending: the first answer replayed (X-Composio-Guard: replayed)
  curl -si -XPOST %[1]s/api/v3/connected_accounts/link -H 'x-api-key: demo' \
       -d '{"user_id":"alice","auth_config_id":"ac_demo"}'
  # 3. let alice finish OAuth in the fake (its control API is reached through the proxy here),
  #    then link again: 409 ConnectedAccount_MultipleConnectedAccounts, x-should-retry: false
  id=$(curl -s %[1]s/_fake/accounts | sed -E 's/.*"id":"(ca_[^"]+)".*/\1/')
  curl -s -XPOST %[1]s/_fake/accounts/$id/status -d '{"status":"ACTIVE"}'
  curl -si -XPOST %[1]s/api/v3/connected_accounts/link -H 'x-api-key: demo' \
       -d '{"user_id":"alice","auth_config_id":"ac_demo"}'
  # 4. opt in to a second account
  curl -s -XPOST %[1]s/api/v3/connected_accounts/link -H 'x-api-key: demo' \
       -H 'X-Composio-Allow-Multiple: true' -d '{"user_id":"alice","auth_config_id":"ac_demo"}'

Metrics: http://%[2]s/metrics   Ready: http://%[2]s/readyz   Stop: Ctrl-C
`, base, adminAddr)
}

// errNotReady is returned by healthcheck's probe for a non-200 answer.
var errNotReady = errors.New("not ready")

// healthcheck asks the admin listener of a running proxy for /readyz; for
// images without a shell (Docker HEALTHCHECK).
func healthcheck(ctx context.Context, stderr io.Writer) int {
	addr := os.Getenv("GUARD_ADMIN_ADDR")
	if addr == "" {
		addr = ":9090"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		fmt.Fprintf(stderr, "healthcheck: GUARD_ADMIN_ADDR %q: %v\n", addr, err)
		return 1
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	u := url.URL{Scheme: "http", Host: net.JoinHostPort(host, port), Path: "/readyz"}
	if err := probe(ctx, u.String()); err != nil {
		fmt.Fprintf(stderr, "healthcheck: %v\n", err)
		return 1
	}
	return 0
}
