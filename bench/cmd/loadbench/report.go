package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"
)

// verdict is one performance target (or a sanity check) and its outcome.
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

// paired is the median over rounds of f(guard's sample, bare's sample) in
// workload wl: each pair was measured back to back, so drift on a shared
// machine cancels out.
func (b *bench) paired(wl string, f func(g, bare sample) float64) (float64, bool) {
	return b.pairedWith(wl, targetBare, f)
}

// pairedWith is paired against the reference target ref.
func (b *bench) pairedWith(wl, ref string, f func(g, ref sample) float64) (float64, bool) {
	g, r := b.get(wl, targetGuard), b.get(wl, ref)
	if g == nil || r == nil || len(g.samples) == 0 || len(g.samples) != len(r.samples) {
		return 0, false
	}
	v := make([]sample, len(g.samples))
	for i := range g.samples {
		v[i] = sample{cpuUS: f(g.samples[i], r.samples[i])}
	}
	return median(v, func(s sample) float64 { return s.cpuUS }), true
}

func cpuRatio(g, ref sample) float64 { return g.cpuUS / ref.cpuUS }
func rpsRatio(g, ref sample) float64 { return g.rps / ref.rps }

// costVerdicts are the cost targets, per scenario: what composio-guard
// spends in CPU per request against what the simplest program doing the same
// job spends, measured in the same rounds. Pass-through is held to the bare
// proxy; a guarded link (allowed or refused) to the naive guard, which makes
// the same list call with encoding/json and nothing else.
func (b *bench) costVerdicts() []costRow {
	var vs []costRow
	for _, c := range []struct {
		name, wl, ref, refName string
		limit                  float64
	}{
		{"pass-through GET", "get", targetBare, "bare proxy", 1.10},
		{"pass-through POST", "post", targetBare, "bare proxy", 1.10},
		{"guarded link, allowed (201)", "link_allowed", targetNaive, "naive guard", 1.00},
		{"guarded link, refused (409)", "link_409", targetNaive, "naive guard", 1.00},
	} {
		r, ok := b.pairedWith(c.wl, c.ref, cpuRatio)
		if !ok {
			continue
		}
		vs = append(vs, costRow{
			scenario: c.name, refName: c.refName,
			guardUS: b.get(c.wl, targetGuard).cpuUS, refUS: b.get(c.wl, c.ref).cpuUS,
			ratio: r, limit: c.limit,
		})
	}
	return vs
}

// costRow is one scenario of costVerdicts.
type costRow struct {
	scenario, refName string
	guardUS, refUS    float64 // medians over the rounds
	ratio, limit      float64 // ratio: the median of the per-round ratios
}

func (c costRow) verdict() verdict {
	return verdict{
		name:     "cost per request: " + c.scenario + " vs " + c.refName,
		measured: fmt.Sprintf("%.2fx", c.ratio),
		limit:    fmt.Sprintf("<= %.2fx", c.limit),
		pass:     c.ratio <= c.limit,
	}
}

// verdicts computes the targets from what was measured; a target
// whose workloads did not run is left out.
func (b *bench) verdicts() []verdict {
	var vs []verdict
	ratio := func(name, wl string, limit float64, f func(g, bare sample) float64, atLeast bool) {
		r, ok := b.paired(wl, f)
		if !ok {
			return
		}
		pass, op := r <= limit, "<="
		if atLeast {
			pass, op = r >= limit, ">="
		}
		g, bare := b.get(wl, targetGuard), b.get(wl, targetBare)
		what := fmt.Sprintf("%.2fx (%.1f vs %.1f µs)", r, g.cpuUS, bare.cpuUS)
		if atLeast {
			what = fmt.Sprintf("%.2fx (%.0f vs %.0f req/s)", r, g.rps, bare.rps)
		}
		vs = append(vs, verdict{name: name, measured: what, limit: fmt.Sprintf("%s %.2fx", op, limit), pass: pass})
	}
	ratio("pass-through GET: CPU/req vs bare GET", "get", 1.10, cpuRatio, false)
	ratio("pass-through GET: req/s vs bare GET", "get", 0.90, rpsRatio, true)
	ratio("pass-through POST: CPU/req vs bare POST", "post", 1.10, cpuRatio, false)
	ratio("pass-through POST: req/s vs bare POST", "post", 0.90, rpsRatio, true)
	ratio("guarded link allowed: CPU/req vs bare POST", "link_allowed", 1.5, cpuRatio, false)
	ratio("guarded link 409: CPU/req vs bare GET", "link_409", 1.2, cpuRatio, false)
	if d, ok := b.paired("latency_c1", func(g, bare sample) float64 { return g.p50 - bare.p50 }); ok {
		g, bare := b.get("latency_c1", targetGuard), b.get("latency_c1", targetBare)
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
	}
	return vs
}

func (b *bench) allPassed() bool {
	for _, v := range slices.Concat(b.verdicts(), b.checks) {
		if !v.pass {
			return false
		}
	}
	for _, c := range b.costVerdicts() {
		if !c.verdict().pass {
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
		"%s per run (warm-up %s), %d round(s) with the targets back to back; medians, ratios are medians of per-round ratios. composio-guard at GUARD_LOG_LEVEL=info, metrics on, GUARD_MODE=enforce, memory lock backend.\n\n",
		machine(), b.o.proxyCPU, b.o.loadCPU, b.o.duration, b.o.warmup, b.o.rounds)
	s.WriteString("| workload | target | req/s | p50 | p99 | CPU µs/req | peak RSS | CPU vs bare | req/s vs bare | CPU vs naive | req/s vs naive |\n")
	s.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, wl := range b.order {
		for _, tn := range []string{targetDirect, targetBare, targetNaive, targetGuard} {
			r := b.get(wl, tn)
			if r == nil {
				continue
			}
			label := tn
			if bw := b.bareWhat[wl]; tn == targetBare && bw != "" {
				label = "bare (" + bw + ")"
			}
			if tn == targetNaive {
				label = "naive guard"
			}
			cpuR, rpsR, cpuN, rpsN := "", "", "", ""
			if tn == targetGuard {
				if v, ok := b.paired(wl, cpuRatio); ok {
					cpuR = fmt.Sprintf("%.2fx", v)
				}
				if v, ok := b.paired(wl, rpsRatio); ok && b.bareWhat[wl] == "" {
					rpsR = fmt.Sprintf("%.2fx", v)
				}
				if v, ok := b.pairedWith(wl, targetNaive, cpuRatio); ok {
					cpuN = fmt.Sprintf("%.2fx", v)
				}
				if v, ok := b.pairedWith(wl, targetNaive, rpsRatio); ok {
					rpsN = fmt.Sprintf("%.2fx", v)
				}
			}
			fmt.Fprintf(&s, "| %s | %s | %.0f | %s | %s | %.1f | %s | %s | %s | %s | %s |\n",
				wl, label, r.rps, usec(r.p50), usec(r.p99), r.cpuUS, mib(r.rssKiB), cpuR, rpsR, cpuN, rpsN)
		}
	}
	s.WriteString("\nWorkloads:\n")
	for _, wl := range b.order {
		fmt.Fprintf(&s, "- `%s`: %s", wl, b.whats[wl])
		if bw := b.bareWhat[wl]; bw != "" {
			fmt.Fprintf(&s, "; the bare proxy forwards a pass-through %s in the same rounds", bw)
		}
		for _, tn := range []string{targetDirect, targetBare, targetNaive, targetGuard} {
			if r := b.get(wl, tn); r != nil && r.note != "" {
				fmt.Fprintf(&s, "; %s: %s", tn, r.note)
			}
		}
		s.WriteString(".\n")
	}
	if l := b.longRes; l != nil {
		fmt.Fprintf(&s, "- `long`: %s of GET (96 connections) + guarded links (32, users cycling over 10,000 ids, so 10,000 pending-link leases are held); "+
			"%d requests, %.1f CPU µs/req, %d errors; peak RSS %s; RSS (MiB) each minute:%s. The 32 MiB bound is the connections' (`rss_128`); the leases are state, "+
			"kept by design and bounded by the lease store's cap.\n",
			b.o.longDuration, l.reqs, l.cpuUS, l.linkErr, mib(l.hwmKiB), l)
	}
	s.WriteString("\n| target | measured | limit | result |\n|---|---|---|---|\n")
	for _, v := range b.verdicts() {
		fmt.Fprintf(&s, "| %s | %s | %s | %s |\n", v.name, v.measured, v.limit, passFail(v.pass))
	}
	if cv := b.costVerdicts(); len(cv) > 0 {
		s.WriteString("\n| scenario | guard CPU µs/req | compared with | its CPU µs/req | ratio | limit | result |\n" +
			"|---|---:|---|---:|---:|---|---|\n")
		for _, c := range cv {
			fmt.Fprintf(&s, "| %s | %.1f | %s | %.1f | %.2fx | <= %.2fx | %s |\n",
				c.scenario, c.guardUS, c.refName, c.refUS, c.ratio, c.limit, passFail(c.verdict().pass))
		}
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
