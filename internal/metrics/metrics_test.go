package metrics

import (
	"bytes"
	"flag"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// Run `go test ./internal/metrics -run Golden -update` after a deliberate
// change to a metric, then review the diff of testdata/metrics.golden.
var update = flag.Bool("update", false, "rewrite testdata/metrics.golden")

const golden = "testdata/metrics.golden"

// touch gives every labelled collector one child with representative labels
// (a vec with no child is absent from the exposition) and every plain one a
// value, so the golden file pins all of them. Keyed by the Metrics field.
var touch = map[string]func(m *Metrics){
	"HTTPRequests": func(m *Metrics) { m.HTTPRequests.WithLabelValues("link", "POST", "201").Inc() },
	"HTTPDuration": func(m *Metrics) { m.HTTPDuration.WithLabelValues("link", "POST", "201").Observe(0.2) },
	"Overhead":     func(m *Metrics) { m.Overhead.WithLabelValues("link").Observe(0.0003) },
	"InFlight":     func(m *Metrics) { m.InFlight.Set(2) },
	"Decisions":    func(m *Metrics) { m.Decisions.WithLabelValues("link", "rejected_duplicate", "enforce").Inc() },
	"Lookup":       func(m *Metrics) { m.Lookup.WithLabelValues("ok").Observe(0.15) },
	"UpstreamErrs": func(m *Metrics) { m.UpstreamErrs.WithLabelValues("lookup", "timeout").Inc() },
	"RateLimitLeft": func(m *Metrics) {
		m.RateLimitLeft.Set(1999)
	},
	"LockWait":     func(m *Metrics) { m.LockWait.WithLabelValues("memory").Observe(0.0002) },
	"LockErrors":   func(m *Metrics) { m.LockErrors.WithLabelValues("redis", "unavailable").Inc() },
	"Leases":       func(m *Metrics) { m.Leases.WithLabelValues("hit").Inc() },
	"BackendUp":    func(m *Metrics) { m.BackendUp.WithLabelValues("redis").Set(1) },
	"Sandbox":      func(m *Metrics) { m.Sandbox.WithLabelValues("session_create", "large", "allowed").Inc() },
	"BreakerState": func(m *Metrics) { m.BreakerState.WithLabelValues("lookup").Set(0) },
	"Draining":     func(m *Metrics) { m.Draining.Set(0) },
	// The audit's series exist from the start (neutral while it is off).
	"AuditInterval":        func(m *Metrics) { m.AuditInterval.Set(3600) },
	"AuditDuplicateGroups": func(m *Metrics) { m.AuditDuplicateGroups.Set(3) },
	"AuditNewGroups":       func(m *Metrics) { m.AuditNewGroups.Set(1) },
	"AuditScanned":         func(m *Metrics) { m.AuditScanned.Set(1500) },
	"AuditLastSuccess":     func(m *Metrics) { m.AuditLastSuccess.Set(1.7e9) },
	"AuditErrors":          func(m *Metrics) { m.AuditErrors.WithLabelValues("partial").Inc() },

	"LockUnreplicated": func(m *Metrics) { m.LockUnreplicated.WithLabelValues("lock").Inc() },
}

// exposition renders every composio_guard_* family in the text format, with
// the Go version (which changes with the toolchain) replaced by a marker.
func exposition(t *testing.T, m *Metrics) string {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	var b bytes.Buffer
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), namespace+"_") {
			continue
		}
		if _, err := expfmt.MetricFamilyToText(&b, mf); err != nil {
			t.Fatalf("encode %s: %v", mf.GetName(), err)
		}
	}
	return strings.ReplaceAll(b.String(), `goversion="`+runtime.Version()+`"`, `goversion="GOVERSION"`)
}

func TestGoldenExposition(t *testing.T) {
	m := New(Build{Version: "v1.2.3", Revision: "0123abc"})

	// A new collector field must get an entry in touch, or it would escape
	// the golden file.
	collector := reflect.TypeFor[prometheus.Collector]()
	v := reflect.ValueOf(m).Elem()
	for i := range v.NumField() {
		f := v.Type().Field(i)
		if !f.IsExported() || !f.Type.Implements(collector) {
			continue
		}
		fn, ok := touch[f.Name]
		if !ok {
			t.Errorf("field Metrics.%s has no entry in touch: add representative labels", f.Name)
			continue
		}
		fn(m)
	}
	if len(touch) != countCollectors(m) {
		t.Errorf("touch has %d entries for %d collector fields: remove stale entries", len(touch), countCollectors(m))
	}

	got := exposition(t, m)
	if *update {
		if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("read golden (run with -update to create it): %v", err)
	}
	if got != string(want) {
		t.Errorf("exposition differs from %s (rerun with -update if the change is deliberate)\n%s", golden, lineDiff(string(want), got))
	}
}

func countCollectors(m *Metrics) int {
	collector := reflect.TypeFor[prometheus.Collector]()
	n := 0
	t := reflect.TypeOf(m).Elem()
	for i := range t.NumField() {
		if f := t.Field(i); f.IsExported() && f.Type.Implements(collector) {
			n++
		}
	}
	return n
}

// lineDiff lists the lines only in want (-) and only in got (+).
func lineDiff(want, got string) string {
	in := func(s string) map[string]bool {
		set := map[string]bool{}
		for _, l := range strings.Split(s, "\n") {
			set[l] = true
		}
		return set
	}
	w, g := in(want), in(got)
	var b strings.Builder
	for _, l := range strings.Split(want, "\n") {
		if !g[l] {
			b.WriteString("- " + l + "\n")
		}
	}
	for _, l := range strings.Split(got, "\n") {
		if !w[l] {
			b.WriteString("+ " + l + "\n")
		}
	}
	return b.String()
}

func TestBuildInfoAndRuntimeCollectors(t *testing.T) {
	m := New(Build{Version: "v9.9.9", Revision: "deadbee"})
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	for _, want := range []string{
		`composio_guard_build_info{goversion="` + runtime.Version() + `",revision="deadbee",version="v9.9.9"} 1`,
		"# TYPE go_goroutines gauge",
		"# TYPE go_memstats_heap_inuse_bytes gauge",
		"# TYPE process_resident_memory_bytes gauge",
		// Plain gauges are exposed before anything sets them; the
		// rate-limit headroom at NaN, so that no rule reads it as none left.
		"composio_guard_http_requests_in_flight 0",
		"composio_guard_upstream_rate_limit_remaining NaN",
		"composio_guard_draining 0",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
}
