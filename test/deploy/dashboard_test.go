package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
)

const dashboardPath = "deploy/grafana/composio-guard.json"

// The parts of Grafana's dashboard model the checks need; other members are
// allowed (the model is large and versioned by Grafana).
type dashboard struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []variable `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int             `json:"id"`
	Type       string          `json:"type"`
	Title      string          `json:"title"`
	Datasource *datasourceRef  `json:"datasource"`
	Targets    []target        `json:"targets"`
	Panels     []panel         `json:"panels"` // collapsed rows
	GridPos    json.RawMessage `json:"gridPos"`
}

type target struct {
	RefID      string         `json:"refId"`
	Expr       string         `json:"expr"`
	Datasource *datasourceRef `json:"datasource"`
}

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type variable struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Query      json.RawMessage `json:"query"`
	Definition string          `json:"definition"`
	Datasource *datasourceRef  `json:"datasource"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	var d dashboard
	dec := json.NewDecoder(bytes.NewReader(read(t, dashboardPath)))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("parse %s: %v", dashboardPath, err)
	}
	return d
}

func allPanels(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

var labelValuesRE = regexp.MustCompile(`^label_values\((.+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$`)

// dashboardExprs returns every PromQL expression of the dashboard, panels'
// targets and variables' queries, keyed by where it is.
func dashboardExprs(t *testing.T, d dashboard) map[string]string {
	t.Helper()
	exprs := map[string]string{}
	for _, p := range allPanels(d.Panels) {
		for _, tg := range p.Targets {
			exprs[fmt.Sprintf("panel %q target %s", p.Title, tg.RefID)] = tg.Expr
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q := v.Definition
		var obj struct {
			Query string `json:"query"`
		}
		if json.Unmarshal(v.Query, &obj) == nil && obj.Query != "" {
			q = obj.Query
		}
		if m := labelValuesRE.FindStringSubmatch(q); m != nil {
			q = m[1]
		}
		exprs[fmt.Sprintf("variable %q", v.Name)] = q
	}
	return exprs
}

func TestDashboardShape(t *testing.T) {
	d := loadDashboard(t)
	if d.UID != "composio-guard" {
		t.Errorf("uid = %q, want the fixed uid composio-guard (links and provisioning rely on it)", d.UID)
	}
	if d.Title == "" || d.SchemaVersion < 36 {
		t.Errorf("title %q, schemaVersion %d: want a title and schemaVersion >= 36", d.Title, d.SchemaVersion)
	}
	vars := map[string]variable{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v
	}
	if v, ok := vars["datasource"]; !ok || v.Type != "datasource" || !strings.Contains(string(v.Query), "prometheus") {
		t.Errorf("want a datasource variable of type prometheus, got %+v", v)
	}
	for _, name := range []string{"namespace", "job"} {
		if v, ok := vars[name]; !ok || v.Type != "query" {
			t.Errorf("want a query variable %q", name)
		}
	}

	ids := map[int]bool{}
	var exprs []string
	for _, p := range allPanels(d.Panels) {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if len(p.GridPos) == 0 {
			t.Errorf("panel %q has no gridPos", p.Title)
		}
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q does not use the datasource variable", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
			if tg.Datasource != nil && tg.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q target %s pins a datasource", p.Title, tg.RefID)
			}
			// Every query follows the job and namespace the user picked.
			if !strings.Contains(tg.Expr, `job=~"$job"`) || !strings.Contains(tg.Expr, `namespace=~"$namespace"`) {
				t.Errorf("panel %q target %s ignores $job or $namespace: %s", p.Title, tg.RefID, tg.Expr)
			}
		}
	}

	// The panels the issue asks for, each recognised by what it queries.
	all := strings.Join(exprs, "\n")
	for what, needle := range map[string]string{
		"traffic":                 "rate(composio_guard_http_requests_total",
		"latency percentiles":     "composio_guard_http_request_duration_seconds_bucket",
		"proxy overhead":          "composio_guard_proxy_overhead_seconds_bucket",
		"decisions":               "composio_guard_decisions_total",
		"rejections and replays":  `decision=~"rejected_duplicate|rejected_pending|replayed_pending"`,
		"fail-open":               "failed_open",
		"shadow would-reject":     `mode="shadow"`,
		"lookup health":           "composio_guard_lookup_duration_seconds_count",
		"upstream errors":         "composio_guard_upstream_errors_total",
		"rate-limit headroom":     "composio_guard_upstream_rate_limit_remaining",
		"in-flight":               "composio_guard_http_requests_in_flight",
		"memory":                  "process_resident_memory_bytes",
		"build info":              "composio_guard_build_info",
		"lock backend":            "composio_guard_lock_backend_up",
		"circuit breaker":         "composio_guard_circuit_breaker_state",
		"percentile of latencies": "histogram_quantile(0.99",
	} {
		if !strings.Contains(all, needle) {
			t.Errorf("no panel for %s (no query contains %q)", what, needle)
		}
	}
}

func TestDashboardNamesExposedMetrics(t *testing.T) {
	checkNames(t, dashboardExprs(t, loadDashboard(t)))
}
