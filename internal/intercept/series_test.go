package intercept_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/composio-guard/composio-guard/internal/intercept"
	"github.com/composio-guard/composio-guard/internal/lock"
	"github.com/composio-guard/composio-guard/internal/metrics"
	"github.com/composio-guard/composio-guard/internal/reqscope"
)

// checkSeriesClosed fails for every series the guard counted (above 0) in m outside
// the closed sets the assembly creates at start (intercept.DecisionSeries,
// SandboxSeries, LeaseResults, LockErrorReasons and the backend's own).
// Every test built on newEnv runs it when it ends.
func checkSeriesClosed(t *testing.T, m *metrics.Metrics, backend string) {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	join := func(v ...string) string { return strings.Join(v, "|") }
	allowed := map[string]map[string]bool{
		"composio_guard_decisions_total":         {},
		"composio_guard_sandbox_requests_total":  {},
		"composio_guard_pending_leases_total":    {join(metrics.LeaseEvicted): true},
		"composio_guard_lock_errors_total":       {},
		"composio_guard_lock_wait_seconds":       {join(backend): true},
		"composio_guard_proxy_overhead_seconds":  nil, // not the guard's
		"composio_guard_lookup_duration_seconds": nil,
	}
	for _, s := range intercept.DecisionSeries() {
		allowed["composio_guard_decisions_total"][join(s[0], s[1], s[2])] = true
	}
	for _, s := range intercept.SandboxSeries() {
		allowed["composio_guard_sandbox_requests_total"][join(s[0], s[1], s[2])] = true
	}
	for _, r := range intercept.LeaseResults() {
		allowed["composio_guard_pending_leases_total"][join(r)] = true
	}
	for _, r := range append(intercept.LockErrorReasons(), lock.ErrorReasons(lock.Backend(backend))...) {
		allowed["composio_guard_lock_errors_total"][join(backend, r)] = true
	}
	// Label order of each family, as metrics declares it.
	order := map[string][]string{
		"composio_guard_decisions_total":        {"route", "decision", "mode"},
		"composio_guard_sandbox_requests_total": {"route", "size", "decision"},
		"composio_guard_pending_leases_total":   {"result"},
		"composio_guard_lock_errors_total":      {"backend", "reason"},
		"composio_guard_lock_wait_seconds":      {"backend"},
	}
	for _, mf := range mfs {
		set := allowed[mf.GetName()]
		if set == nil {
			continue
		}
		for _, s := range mf.GetMetric() {
			// A test reading a counter through WithLabelValues creates its
			// series at 0: only what was counted matters.
			if s.GetCounter().GetValue() == 0 && s.GetHistogram().GetSampleCount() == 0 {
				continue
			}
			labels := map[string]string{}
			for _, l := range s.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			var vals []string
			for _, n := range order[mf.GetName()] {
				vals = append(vals, labels[n])
			}
			if !set[join(vals...)] {
				t.Errorf("the guard counted %s%v, outside the series created at start (intercept/series.go)", mf.GetName(), labels)
			}
		}
	}
}

// Every decision the package names is in DecisionSeries, on some route, and
// every route of reqscope has series.
func TestEveryDecisionConstantHasSeries(t *testing.T) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "decision.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var decisions []string
	ast.Inspect(f, func(n ast.Node) bool {
		vs, ok := n.(*ast.ValueSpec)
		if !ok {
			return true
		}
		for i, name := range vs.Names {
			if strings.HasPrefix(name.Name, "Decision") && i < len(vs.Values) {
				if lit, ok := vs.Values[i].(*ast.BasicLit); ok {
					v, _ := strconv.Unquote(lit.Value)
					decisions = append(decisions, v)
				}
			}
		}
		return true
	})
	if len(decisions) < 15 {
		t.Fatalf("found %d Decision constants in decision.go", len(decisions))
	}
	seen, routes := map[string]bool{}, map[string]bool{}
	for _, s := range intercept.DecisionSeries() {
		seen[s[1]], routes[s[0]] = true, true
	}
	for _, d := range decisions {
		if !seen[d] {
			t.Errorf("decision %q has no series in intercept.DecisionSeries", d)
		}
	}
	for _, r := range reqscope.Routes() {
		if !routes[r] {
			t.Errorf("route %q has no decision series", r)
		}
	}
	for _, s := range intercept.SandboxSeries() {
		if !seen[s[2]] {
			t.Errorf("sandbox series %v: unknown decision", s)
		}
	}
	if !slices.Equal(intercept.Modes(), []intercept.Mode{intercept.ModeEnforce, intercept.ModeShadow, intercept.ModeOff}) {
		t.Errorf("Modes() = %v", intercept.Modes())
	}
}
