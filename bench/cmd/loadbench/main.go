// Command loadbench measures composio-guard side by side with a bare
// httputil.ReverseProxy (bench/cmd/bareproxy), a naive guard for the guarded
// links (bench/cmd/naiveguard) and the tiny upstream itself
// (bench/cmd/upstream), over loopback: the proxies pinned to one CPU, the
// load generator (wrk), the upstream and this program to the other. It
// prints a table per workload (req/s, p50, p99, CPU µs per request from
// /proc/<pid>/stat, peak RSS from VmHWM), the ratios against the bare proxy
// with the performance targets, the cost per scenario against the bare proxy
// (pass-through) and the naive guard (links) with their cost targets,
// and exits 1 when a target is missed (2 when the benchmark itself could not
// run). bench/run.sh builds and runs it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

type options struct {
	short, long  bool
	guardBin     string
	bareBin      string
	naiveBin     string
	upstreamBin  string
	wrk          string
	scriptDir    string
	proxyCPU     string
	loadCPU      string
	duration     time.Duration
	warmup       time.Duration
	rounds       int
	longDuration time.Duration
	out          string
	profileDir   string
	barePool     bool
	only         string
	guardEnv     string
}

func main() {
	var o options
	fs := flag.NewFlagSet("loadbench", flag.ExitOnError)
	fs.BoolVar(&o.short, "short", false, "a few seconds per workload, two rounds (the CI report)")
	fs.BoolVar(&o.long, "long", false, "also run the flat-memory soak (see -long-duration)")
	fs.StringVar(&o.guardBin, "guard", "", "composio-guard binary (go build ./cmd/proxy)")
	fs.StringVar(&o.bareBin, "bare", "", "bare proxy binary (go build ./bench/cmd/bareproxy)")
	fs.StringVar(&o.naiveBin, "naive", "", "naive guard binary (go build ./bench/cmd/naiveguard)")
	fs.StringVar(&o.upstreamBin, "upstream", "", "tiny upstream binary (go build ./bench/cmd/upstream)")
	fs.StringVar(&o.wrk, "wrk", "wrk", "wrk executable")
	fs.StringVar(&o.scriptDir, "scripts", "bench/wrk", "folder of the wrk Lua scripts")
	fs.StringVar(&o.proxyCPU, "proxy-cpu", "0", "CPU the proxies under test are pinned to")
	fs.StringVar(&o.loadCPU, "load-cpu", "1", "CPU of the load generator and the upstream")
	fs.DurationVar(&o.duration, "duration", 0, "measured time per run (default 5s, 2s with -short)")
	fs.DurationVar(&o.warmup, "warmup", 0, "unmeasured warm-up per process (default 2s, 1s with -short)")
	fs.IntVar(&o.rounds, "rounds", 0, "measured runs per target, targets back to back, order alternating; medians are reported (default 5, 2 with -short)")
	fs.DurationVar(&o.longDuration, "long-duration", 10*time.Minute, "length of the -long soak")
	fs.StringVar(&o.out, "out", "", "also write the report (markdown) to this file")
	fs.StringVar(&o.profileDir, "profile", "", "save a CPU profile of every measured guard run here (GUARD_PPROF=true; profiling skews the ratios)")
	fs.BoolVar(&o.barePool, "bare-buffer-pool", false, "give the bare proxy a copy-buffer pool as well")
	fs.StringVar(&o.only, "only", "", "comma-separated workloads to run (default all)")
	fs.StringVar(&o.guardEnv, "guard-env", "", "extra environment of composio-guard, comma-separated KEY=VALUE (e.g. GOGC=100)")
	_ = fs.Parse(os.Args[1:])
	defaults(&o)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, &o)
	stop()
	stopAll()
	os.Exit(code)
}

func defaults(o *options) {
	pick := func(d *time.Duration, full, short time.Duration) {
		if *d == 0 {
			*d = full
			if o.short {
				*d = short
			}
		}
	}
	pick(&o.duration, 5*time.Second, 2*time.Second)
	pick(&o.warmup, 2*time.Second, time.Second)
	if o.rounds == 0 {
		o.rounds = 5
		if o.short {
			o.rounds = 2
		}
	}
}

func run(ctx context.Context, o *options) int {
	if err := preflight(o); err != nil {
		fmt.Fprintln(os.Stderr, "loadbench:", err)
		return 2
	}
	b := &bench{o: o, results: map[string]map[string]*row{}}
	err := b.runAll(ctx)
	report := b.report()
	fmt.Print(report)
	if o.out != "" {
		if werr := os.WriteFile(o.out, []byte(report), 0o644); werr != nil {
			fmt.Fprintln(os.Stderr, "loadbench:", werr)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadbench:", err)
		return 2
	}
	if !b.allPassed() {
		return 1
	}
	return 0
}

func preflight(o *options) error {
	var missing []string
	for _, p := range []struct{ flag, path string }{{"-guard", o.guardBin}, {"-bare", o.bareBin}, {"-naive", o.naiveBin}, {"-upstream", o.upstreamBin}} {
		if p.path == "" {
			missing = append(missing, p.flag)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s required (bench/run.sh builds and passes them)", strings.Join(missing, ", "))
	}
	if _, err := exec.LookPath("taskset"); err != nil {
		return errors.New("missing dependency: taskset (util-linux) is not installed: run `make deps`")
	}
	w, err := exec.LookPath(o.wrk)
	if err != nil {
		return fmt.Errorf("missing dependency: %s is not installed: run `make deps`", o.wrk)
	}
	o.wrk = w
	if o.scriptDir, err = filepath.Abs(o.scriptDir); err != nil {
		return fmt.Errorf("scripts: %w", err)
	}
	if _, err := os.Stat(filepath.Join(o.scriptDir, "report.lua")); err != nil {
		return fmt.Errorf("wrk scripts: %w", err)
	}
	if n := hostCPUs(); n < 2 && o.proxyCPU != o.loadCPU {
		return fmt.Errorf("this machine has %d CPU; pinning needs two (or pass -proxy-cpu 0 -load-cpu 0 for an unpinned, less telling run)", n)
	}
	if o.profileDir != "" {
		if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
			return fmt.Errorf("profile dir: %w", err)
		}
	}
	return nil
}

// closeQuietly is for bodies whose close error says nothing new.
func closeQuietly(c io.Closer) { _ = c.Close() }

// hostCPUs counts the machine's CPUs; runtime.NumCPU would count only the
// one this program is pinned to.
func hostCPUs() int {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	n := 0
	for line := range strings.Lines(string(b)) {
		if k, _, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "processor" {
			n++
		}
	}
	return n
}
