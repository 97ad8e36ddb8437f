package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// verdict is one target of issue 7 (or a sanity check) and its outcome.
type verdict struct {
	name, measured, limit string
	pass                  bool
}

func (b *bench) get(workload, target string) *row {
	if m := b.results[workload]; m != nil {
		return m[target]
	}
	return nil
}

// verdicts computes the targets from what was measured; a target
// whose workloads did not run is left out.
func (b *bench) verdicts() []verdict {
	var vs []verdict
	ratio := func(name, wl, base string, limit float64, field func(*row) float64, atLeast bool) {
		g, bare := b.get(wl, targetGuard), b.get(base, targetBare)
		if g == nil || bare == nil || field(bare) == 0 {
			return
		}
		r := field(g) / field(bare)
		pass := r <= limit
		op := "<="
		if atLeast {
			pass, op = r >= limit, ">="
		}
		vs = append(vs, verdict{name: name, measured: fmt.Sprintf("%.2fx (%.1f vs %.1f)", r, field(g), field(bare)),
			limit: fmt.Sprintf("%s %.2fx", op, limit), pass: pass})
	}
	cpu := func(r *row) float64 { return r.cpuUS }
	rps := func(r *row) float64 { return r.rps }
	ratio("pass-through GET: CPU/req vs bare GET", "get", "get", 1.10, cpu, false)
	ratio("pass-through GET: req/s vs bare GET", "get", "get", 0.90, rps, true)
	ratio("pass-through POST: CPU/req vs bare POST", "post", "post", 1.10, cpu, false)
	ratio("pass-through POST: req/s vs bare POST", "post", "post", 0.90, rps, true)
	ratio("guarded link allowed: CPU/req vs bare POST", "link_allowed", "post", 1.5, cpu, false)
	ratio("guarded link 409: CPU/req vs bare GET", "link_409", "get", 1.2, cpu, false)
	if g, bare := b.get("latency_c1", targetGuard), b.get("latency_c1", targetBare); g != nil && bare != nil {
		d := g.p50 - bare.p50
		vs = append(vs, verdict{name: "added latency at concurrency 1 (p50)", measured: fmt.Sprintf("%+.0f µs (%.0f vs %.0f)", d, g.p50, bare.p50),
			limit: "<= 20 µs", pass: d <= 20})
	}
	if g := b.get("rss_128", targetGuard); g != nil {
		vs = append(vs, verdict{name: "peak RSS at 128 keep-alive connections", measured: mib(g.rssKiB),
			limit: "<= 32 MiB", pass: g.rssKiB <= 32<<10})
	}
	for _, kind := range []string{"download", "upload"} {
		if g := b.get("stream_"+kind, targetGuard); g != nil {
			vs = append(vs, verdict{name: "10 MiB " + kind + ": RSS growth, 4 streams at once", measured: "+" + mib(g.growth),
				limit: "< 5 MiB (half of one body)", pass: g.growth < 5<<10})
		}
	}
	if l := b.longRes; l != nil {
		early, late, ok := l.flat()
		vs = append(vs, verdict{name: fmt.Sprintf("RSS flat over %s (max of middle vs last third)", b.o.longDuration),
			measured: fmt.Sprintf("%s -> %s", mib(early), mib(late)), limit: "+2 MiB or +5%", pass: ok})
		vs = append(vs, verdict{name: fmt.Sprintf("peak RSS over %s at 128 connections", b.o.longDuration), measured: mib(l.hwmKiB),
			limit: "<= 32 MiB", pass: l.hwmKiB <= 32<<10})
	}
	return vs
}

func (b *bench) allPassed() bool {
	for _, v := range append(b.verdicts(), b.checks...) {
		if !v.pass {
			return false
		}
	}
	return true
}

func (b *bench) report() string {
	var s strings.Builder
	mode := "full"
	if b.o.short {
		mode = "short"
	}
	fmt.Fprintf(&s, "\n## composio-guard load benchmark (%s, %s)\n\n", mode, time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&s, "%s. Proxies pinned to CPU %s; wrk (1 thread), the tiny upstream and this tool to CPU %s. "+
		"%s per run (warm-up %s), %d round(s), medians. composio-guard at GUARD_LOG_LEVEL=info, metrics on, GUARD_MODE=enforce, memory lock backend.\n\n",
		machine(), b.o.proxyCPU, b.o.loadCPU, b.o.duration, b.o.warmup, b.o.rounds)
	s.WriteString("| workload | target | req/s | p50 | p99 | CPU µs/req | peak RSS | CPU vs bare | req/s vs bare |\n")
	s.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, wl := range b.order {
		base := b.get(wl, targetBare)
		// The guarded links compare with the bare proxy's POST (allowed) and GET (409).
		switch wl {
		case "link_allowed":
			base = b.get("post", targetBare)
		case "link_409":
			base = b.get("get", targetBare)
		}
		for _, tn := range []string{targetDirect, targetBare, targetGuard} {
			r := b.get(wl, tn)
			if r == nil {
				continue
			}
			cpuRatio, rpsRatio := "", ""
			if base != nil && tn == targetGuard && base.cpuUS > 0 {
				cpuRatio = fmt.Sprintf("%.2fx", r.cpuUS/base.cpuUS)
				if !strings.HasPrefix(wl, "link_") {
					rpsRatio = fmt.Sprintf("%.2fx", r.rps/base.rps)
				}
			}
			fmt.Fprintf(&s, "| %s | %s | %.0f | %s | %s | %.1f | %s | %s | %s |\n",
				wl, tn, r.rps, usec(r.p50), usec(r.p99), r.cpuUS, mib(r.rssKiB), cpuRatio, rpsRatio)
		}
	}
	s.WriteString("\nWorkloads:\n")
	for _, wl := range b.order {
		fmt.Fprintf(&s, "- `%s`: %s", wl, b.whats[wl])
		for _, tn := range []string{targetDirect, targetBare, targetGuard} {
			if r := b.get(wl, tn); r != nil && r.note != "" {
				fmt.Fprintf(&s, "; %s: %s", tn, r.note)
			}
		}
		s.WriteString(".\n")
	}
	if l := b.longRes; l != nil {
		fmt.Fprintf(&s, "- `long`: %s of GET (96 connections) + guarded links (32); %d requests, %.1f CPU µs/req, %d errors; RSS (MiB) each minute:%s.\n",
			b.o.longDuration, l.reqs, l.cpuUS, l.linkErr, l)
	}
	s.WriteString("\n| target (issue 7) | measured | limit | result |\n|---|---|---|---|\n")
	for _, v := range b.verdicts() {
		fmt.Fprintf(&s, "| %s | %s | %s | %s |\n", v.name, v.measured, v.limit, passFail(v.pass))
	}
	if len(b.checks) > 0 {
		s.WriteString("\n| sanity check | measured | expected | result |\n|---|---|---|---|\n")
		for _, v := range b.checks {
			fmt.Fprintf(&s, "| %s | %s | %s | %s |\n", v.name, v.measured, v.limit, passFail(v.pass))
		}
	}
	s.WriteString("\n")
	return s.String()
}

func passFail(ok bool) string {
	if ok {
		return "met"
	}
	return "**MISSED**"
}

func usec(v float64) string {
	if v >= 10000 {
		return fmt.Sprintf("%.1f ms", v/1000)
	}
	return fmt.Sprintf("%.0f µs", v)
}

func mib(kib int64) string { return fmt.Sprintf("%.1f MiB", float64(kib)/1024) }

// machine describes the host for the report's header.
func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	kernel := ""
	if out, err := exec.Command("uname", "-r").Output(); err == nil {
		kernel = ", Linux " + strings.TrimSpace(string(out))
	}
	return fmt.Sprintf("%d × %s%s, %s", hostCPUs(), model, kernel, runtime.Version())
}
