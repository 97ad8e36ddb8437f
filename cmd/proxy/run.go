package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"

	"go.uber.org/zap"

	"github.com/composio-guard/composio-guard/internal/app"
	"github.com/composio-guard/composio-guard/internal/composiotest"
	"github.com/composio-guard/composio-guard/internal/config"
	"github.com/composio-guard/composio-guard/internal/lock"
	"github.com/composio-guard/composio-guard/internal/logging"
)

type options struct {
	checkConfig bool
	demo        bool
	stdout      io.Writer
	stderr      io.Writer
}

// run loads the configuration, builds the proxy once (internal/app) and
// serves until ctx ends.
func run(ctx context.Context, o options) error {
	cfg, err := config.Load()
	if err != nil {
		return fmt.Errorf("invalid configuration:\n%w", err)
	}
	if o.checkConfig {
		fmt.Fprintf(o.stdout, "configuration ok: %s\n", cfg)
		if cfg.Lock.Backend == lock.BackendRedis {
			// What GUARD_REDIS_URL names, with no credential.
			fmt.Fprintf(o.stdout, "redis: %s, min replicas %d\n", lock.Describe(cfg.Lock.RedisURL), cfg.Lock.RedisMinReplicas)
		}
		for _, n := range cfg.Notes() {
			fmt.Fprintf(o.stdout, "note: %s\n", n)
		}
		for _, w := range cfg.Warnings() {
			fmt.Fprintf(o.stdout, "warning: %s\n", w)
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
	log, err := logging.New(string(cfg.Server.LogLevel), o.stderr)
	if err != nil {
		return fmt.Errorf("logger: %w", err)
	}
	defer func() { _ = log.Sync() }()
	start := []zap.Field{zap.String("version", version), zap.String("revision", revision), zap.Stringer("config", cfg)}
	if notes := cfg.Notes(); len(notes) > 0 {
		// A default moved to fit a setting given: said in the start line too.
		start = append(start, zap.Strings("notes", notes))
	}
	log.Info("starting", start...)
	for _, n := range cfg.Notes() {
		log.Info("setting adjusted", zap.String("note", n))
	}
	for _, w := range cfg.Warnings() {
		log.Warn("setting without effect", zap.String("warning", w))
	}
	if unknown := config.UnknownKeys(os.Environ()); len(unknown) > 0 {
		log.Warn("unknown GUARD_ settings ignored", zap.Strings("names", unknown))
	}

	p, err := app.New(cfg, app.Options{Version: version, Revision: revision, Logger: log})
	if err != nil {
		return err
	}
	if o.demo {
		go func() {
			select {
			case <-p.Server.Bound():
				printDemo(o.stderr, p.Server.ProxyAddr(), p.Server.AdminAddr())
			case <-ctx.Done():
			}
		}()
	}
	return p.Run(ctx)
}

// startDemoUpstream serves the fake Composio on loopback and points cfg at it.
// The demo also listens on loopback only unless the addresses were set. The
// fake is served by a plain http.Server: the binary links no test helpers.
func startDemoUpstream(cfg *config.Config) (func(), error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("demo upstream: %w", err)
	}
	fake := composiotest.New()
	srv := &http.Server{Handler: fake, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }() // ErrServerClosed once stopped
	cfg.Transport.URL = "http://" + l.Addr().String()
	if !config.IsSet(nil, "GUARD_LISTEN_ADDR") {
		cfg.Server.ListenAddr = loopback(cfg.Server.ListenAddr)
	}
	if !config.IsSet(nil, "GUARD_ADMIN_ADDR") {
		cfg.Server.AdminAddr = loopback(cfg.Server.AdminAddr)
	}
	if !config.IsSet(nil, "GUARD_DRAIN_DELAY") {
		cfg.Server.DrainDelay = 0
	}
	return func() {
		fake.Close() // release hung requests first, so that Shutdown can finish
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if srv.Shutdown(ctx) != nil {
			_ = srv.Close()
		}
	}, nil
}

// loopback is addr (a default, or one derived from the other listener's
// setting) on 127.0.0.1.
func loopback(addr string) string {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return net.JoinHostPort("127.0.0.1", port)
}

func printDemo(w io.Writer, proxyAddr, adminAddr string) {
	base := "http://" + proxyAddr
	fmt.Fprintf(w, `
composio-guard demo: the proxy at %[1]s stands in front of a built-in fake Composio.
Try (any x-api-key works against the fake):

  # 1. a first link for user alice: forwarded, 201
  curl -s -XPOST %[1]s/api/v3/connected_accounts/link -H 'x-api-key: demo' -H 'content-type: application/json' \
       -d '{"user_id":"alice","auth_config_id":"ac_demo"}'
  # 2. the same again while the first is pending: the first answer replayed (X-Composio-Guard: replayed)
  curl -si -XPOST %[1]s/api/v3/connected_accounts/link -H 'x-api-key: demo' -H 'content-type: application/json' \
       -d '{"user_id":"alice","auth_config_id":"ac_demo"}'
  # 3. let alice finish OAuth in the fake (its control API is reached through the proxy here),
  #    then link again: 409 ConnectedAccount_MultipleConnectedAccounts, x-should-retry: false
  id=$(curl -s %[1]s/_fake/accounts | sed -E 's/.*"id":"(ca_[^"]+)".*/\1/')
  curl -s -XPOST %[1]s/_fake/accounts/$id/status -d '{"status":"ACTIVE"}'
  curl -si -XPOST %[1]s/api/v3/connected_accounts/link -H 'x-api-key: demo' -H 'content-type: application/json' \
       -d '{"user_id":"alice","auth_config_id":"ac_demo"}'
  # 4. opt in to a second account
  curl -s -XPOST %[1]s/api/v3/connected_accounts/link -H 'x-api-key: demo' -H 'content-type: application/json' \
       -H 'X-Composio-Allow-Multiple: true' -d '{"user_id":"alice","auth_config_id":"ac_demo"}'

  # Tool Router: session.authorize("github") for user bob, twice: one account, the first link replayed
  sid=$(curl -s -XPOST %[1]s/api/v3.1/tool_router/session -H 'x-api-key: demo' -H 'content-type: application/json' \
       -d '{"user_id":"bob"}' | sed -E 's/.*"session_id":"([^"]+)".*/\1/')
  curl -s  -XPOST %[1]s/api/v3.1/tool_router/session/$sid/link -H 'x-api-key: demo' -H 'content-type: application/json' -d '{"toolkit":"github"}'
  curl -si -XPOST %[1]s/api/v3.1/tool_router/session/$sid/link -H 'x-api-key: demo' -H 'content-type: application/json' -d '{"toolkit":"github"}'

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
		// The admin address the proxy derives from its settings: a
		// GUARD_LISTEN_ADDR on the admin's default port moves it.
		addr = ":9090"
		if cfg, err := config.Load(); err == nil {
			addr = cfg.Server.AdminAddr
		}
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
