package deploy

import (
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/composio-guard/composio-guard/internal/metrics"
	"github.com/composio-guard/composio-guard/internal/testdeps"
	"github.com/composio-guard/composio-guard/internal/testproc"
)

// root is the module root; artefact paths below are relative to it.
func root(t testing.TB) string { return testproc.RepoRoot(t) }

func read(t testing.TB, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root(t), rel))
	if err != nil {
		t.Fatalf("read %s: %v", rel, err)
	}
	return b
}

// toolsDir is where deploy/tools.sh installs the tools CI builds itself.
func toolsDir() string {
	if d := os.Getenv("COMPOSIO_GUARD_TOOLS"); d != "" {
		return d
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "composio-guard-tools", "bin")
}

// tool finds a command on PATH or in toolsDir. A missing tool fails the
// test at once: the check it stands for would silently not run otherwise.
func tool(t testing.TB, name string) string {
	t.Helper()
	return testdeps.Command(t, name, "the deploy checks test/deploy", toolsDir())
}

// run runs a command in the module root and returns its standard output.
func run(t testing.TB, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = root(t)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr.String())
	}
	return out
}

// synthetic are series Prometheus makes itself for every scrape target.
var synthetic = map[string]bool{"up": true}

var fqNameRE = regexp.MustCompile(`fqName: "([^"]+)"`)

// exposedNames lists every series name the binary can expose, suffixes of
// histograms and summaries included: the families a fresh registry gathers
// (Go and process collectors, plain gauges, build info) plus every labelled
// collector of metrics.Metrics, which gathers nothing until first used.
func exposedNames(t testing.TB) map[string]bool {
	t.Helper()
	m := metrics.New(metrics.Build{Version: "test", Revision: "test"})
	names := map[string]bool{}
	add := func(name string, typ dto.MetricType) {
		names[name] = true
		switch typ {
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			names[name+"_bucket"], names[name+"_sum"], names[name+"_count"] = true, true, true
		case dto.MetricType_SUMMARY:
			names[name+"_sum"], names[name+"_count"] = true, true
		}
	}
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		add(mf.GetName(), mf.GetType())
	}
	v := reflect.ValueOf(m).Elem()
	for i := range v.NumField() {
		if !v.Type().Field(i).IsExported() {
			continue
		}
		c, ok := v.Field(i).Interface().(prometheus.Collector)
		if !ok {
			continue
		}
		typ := dto.MetricType_UNTYPED
		switch c.(type) {
		case *prometheus.HistogramVec, prometheus.Histogram:
			typ = dto.MetricType_HISTOGRAM
		case *prometheus.GaugeVec, prometheus.Gauge: // before Counter: a Gauge is a Counter too
			typ = dto.MetricType_GAUGE
		case *prometheus.CounterVec, prometheus.Counter:
			typ = dto.MetricType_COUNTER
		}
		ch := make(chan *prometheus.Desc, 8)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			mm := fqNameRE.FindStringSubmatch(d.String())
			if mm == nil {
				t.Fatalf("cannot read the name of %s", d)
			}
			add(mm[1], typ)
		}
	}
	if !names["composio_guard_decisions_total"] || !names["process_resident_memory_bytes"] || !names["go_goroutines"] {
		t.Fatalf("exposed names look incomplete: %v", slices.Sorted(maps.Keys(names)))
	}
	return names
}
