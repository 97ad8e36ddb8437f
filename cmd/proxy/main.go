// Command proxy is composio-guard: a reverse proxy in front of the Composio
// API that refuses a second connected account for the same user and auth
// config unless the caller opts in, and polices Tool Router sandbox tiers.
//
// Usage:
//
//	composio-guard                 serve (configured from GUARD_* variables)
//	composio-guard -check-config   validate the configuration and exit
//	composio-guard -demo           serve in front of a built-in fake Composio
//	composio-guard -version        print the version and exit
//	composio-guard healthcheck     exit 0 when the running proxy is ready
//	composio-guard audit [flags]   report the duplicate connected accounts of a project (see -h)
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/composio-guard/composio-guard/internal/audit"
)

// Stamped at build time: -ldflags "-X main.version=... -X main.revision=...".
var (
	version  = "dev"
	revision = "unknown"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := realMain(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// realMain is the one exit path: every mode returns its exit code here.
func realMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "healthcheck" {
		return healthcheck(ctx, stderr)
	}
	if len(args) > 0 && args[0] == "audit" {
		return audit.Main(ctx, audit.Invocation{
			Args: args[1:], Stdout: stdout, Stderr: stderr, Version: version, Terminal: isTerminal(stderr),
		})
	}
	fs := flag.NewFlagSet("composio-guard", flag.ContinueOnError)
	fs.SetOutput(stderr)
	checkConfig := fs.Bool("check-config", false, "validate the configuration from the environment and exit")
	demo := fs.Bool("demo", false, "serve in front of a built-in fake Composio and print what to try")
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage:\n  composio-guard [flags]          serve, configured from GUARD_* variables\n"+
			"  composio-guard healthcheck      exit 0 when the running proxy is ready\n"+
			"  composio-guard audit [flags]    report existing duplicate connected accounts (audit -h for its flags and exit codes)\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *showVersion {
		fmt.Fprintf(stdout, "composio-guard %s (%s)\n", version, revision)
		return 0
	}
	if err := run(ctx, options{checkConfig: *checkConfig, demo: *demo, stdout: stdout, stderr: stderr}); err != nil {
		fmt.Fprintf(stderr, "composio-guard: %v\n", err)
		return 1
	}
	return 0
}

// isTerminal reports whether w is a terminal (a character device), where
// the audit shows its live progress line.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
