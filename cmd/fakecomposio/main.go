// Command fakecomposio runs the fake Composio API (internal/composiotest) as a
// process, for end-to-end, SDK, replica and soak tests and for users' CI. It
// prints {"msg":"listening","addr":"HOST:PORT"} on stdout once it accepts
// connections, is driven through its /_fake/ control API, and exits 0 on
// SIGTERM or SIGINT.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/composio-guard/composio-guard/internal/composiotest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "fakecomposio:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("fakecomposio", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	rate := fs.Int("rate-limit", composiotest.DefaultRateLimit, "requests per credential per minute (X-RateLimit)")
	enforce := fs.Bool("enforce-rate-limit", false, "answer 429 once a credential's window is spent")
	pageSize := fs.Int("page-size", composiotest.DefaultPageSize, "list page size when the request sets no limit")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("flags: %w", err)
	}
	opts := []composiotest.Option{composiotest.WithRateLimit(*rate), composiotest.WithPageSize(*pageSize)}
	if *enforce {
		opts = append(opts, composiotest.WithRateLimitEnforced())
	}
	fake := composiotest.New(opts...)

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: fake, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	line, _ := json.Marshal(map[string]string{"msg": "listening", "addr": ln.Addr().String()})
	fmt.Println(string(line))

	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	fake.Close() // release hung requests so that Shutdown can finish
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}
