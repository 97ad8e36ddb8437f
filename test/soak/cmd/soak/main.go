// Command soak runs the soak driver (package soak) against a proxy and a
// fake Composio that are already running on loopback, prints the report and
// exits 1 when a check failed:
//
//	go build -o /tmp/fake ./cmd/fakecomposio && /tmp/fake -addr 127.0.0.1:9900 &
//	GUARD_UPSTREAM_URL=http://127.0.0.1:9900 GUARD_LISTEN_ADDR=127.0.0.1:8080 \
//	  GUARD_ADMIN_ADDR=127.0.0.1:9090 GUARD_LOG_LEVEL=warn go run ./cmd/proxy &
//	go run ./test/soak/cmd/soak -duration 1h
//
// The proxy settings that make the fault windows end within the driver's
// grace period are listed in docs/hardening.md.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/composio-guard/composio-guard/test/soak"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c soak.Config
	fs.StringVar(&c.ProxyURL, "proxy", "http://127.0.0.1:8080", "proxy listener (loopback only)")
	fs.StringVar(&c.AdminURL, "admin", "http://127.0.0.1:9090", "proxy admin listener (loopback only)")
	fs.StringVar(&c.FakeURL, "fake", "http://127.0.0.1:9900", "fake Composio (loopback only)")
	fs.DurationVar(&c.Duration, "duration", time.Minute, "load phase")
	fs.Int64Var(&c.MaxRequests, "max-requests", 0, "request count bound (0: rps x duration x 2)")
	fs.IntVar(&c.RPS, "rps", 200, "request rate cap")
	fs.IntVar(&c.Workers, "workers", 8, "concurrent clients")
	fs.BoolVar(&c.NoFaults, "no-faults", false, "play no fault windows")
	asJSON := fs.Bool("json", false, "print the report as JSON instead of text")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	c.Logf = func(format string, a ...any) { fmt.Fprintf(stderr, format+"\n", a...) }
	rep, err := soak.Run(ctx, c)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
	} else {
		fmt.Fprint(stdout, rep.Summary())
	}
	for _, p := range rep.Problems {
		fmt.Fprintln(stdout, "FAIL:", p)
	}
	if len(rep.Problems) > 0 {
		return 1
	}
	fmt.Fprintln(stdout, "PASS")
	return 0
}
