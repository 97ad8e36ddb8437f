package deploy

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/composio-guard/composio-guard/deploy/prometheus/alertgen"
)

const (
	alertSource    = "deploy/prometheus/alerts.src.yaml"
	rulesFile      = "deploy/prometheus/rules.yaml"
	rulesTests     = "deploy/prometheus/rules_test.yaml"
	prometheusRule = "deploy/kubernetes/base/prometheusrule.yaml"
	runbook        = "docs/runbook.md"
)

// The alerts the issue asks for, by what they watch.
var requiredAlerts = map[string]string{
	"ComposioGuardFailingOpen":     "the guard failing open",
	"ComposioGuardLookupFailing":   "the lookup failing",
	"ComposioGuardLookupSlow":      "the lookup slow",
	"ComposioGuardUpstream5xxHigh": "upstream 5xx ratio",
	"ComposioGuardRateLimitLow":    "rate-limit headroom low",
	"ComposioGuardDown":            "the proxy down",
	"ComposioGuardHighOverhead":    "high overhead",
	"ComposioGuardRejectionSpike":  "a spike of rejections",
}

func loadSource(t *testing.T) *alertgen.Source {
	t.Helper()
	src, err := alertgen.Parse(read(t, alertSource))
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func TestGeneratedRulesInSync(t *testing.T) {
	src := loadSource(t)
	for path, want := range map[string][]byte{
		rulesFile:      src.RulesFile(),
		prometheusRule: src.PrometheusRule(),
	} {
		if got := read(t, path); !bytes.Equal(got, want) {
			t.Errorf("%s is out of date with %s: run go generate ./deploy/prometheus/alertgen", path, alertSource)
		}
	}
}

func TestAlertSourceRefusesBadInput(t *testing.T) {
	for name, src := range map[string]string{
		"unknown key":     "group: g\nrunbook_base: https://x/r.md\nalerts:\n- {alert: A, expr: up, for: 1m, severity: warning, summary: s, description: d, colour: red}\n",
		"no for":          "group: g\nrunbook_base: https://x/r.md\nalerts:\n- {alert: A, expr: up, severity: warning, summary: s, description: d}\n",
		"bad severity":    "group: g\nrunbook_base: https://x/r.md\nalerts:\n- {alert: A, expr: up, for: 1m, severity: page, summary: s, description: d}\n",
		"duplicate alert": "group: g\nrunbook_base: https://x/r.md\nalerts:\n- {alert: A, expr: up, for: 1m, severity: info, summary: s, description: d}\n- {alert: A, expr: up, for: 1m, severity: info, summary: s, description: d}\n",
		"no description":  "group: g\nrunbook_base: https://x/r.md\nalerts:\n- {alert: A, expr: up, for: 1m, severity: info, summary: s}\n",
		"anchor in base":  "group: g\nrunbook_base: https://x/r.md#a\nalerts:\n- {alert: A, expr: up, for: 1m, severity: info, summary: s, description: d}\n",
	} {
		if _, err := alertgen.Parse([]byte(src)); err == nil {
			t.Errorf("%s: Parse accepted it", name)
		}
	}
}

// The unit-test file's shape, as far as the completeness check needs it.
type promtoolTests struct {
	RuleFiles []string `json:"rule_files"`
	Tests     []struct {
		Name          string `json:"name"`
		AlertRuleTest []struct {
			AlertName string           `json:"alertname"`
			ExpAlerts []map[string]any `json:"exp_alerts"`
		} `json:"alert_rule_test"`
	} `json:"tests"`
}

var headingRE = regexp.MustCompile(`(?m)^## (\S+)\s*$`)

func TestEveryAlertHasRunbookAndUnitTest(t *testing.T) {
	src := loadSource(t)
	names := map[string]bool{}
	for _, a := range src.Alerts {
		names[a.Alert] = true
	}
	for name, what := range requiredAlerts {
		if !names[name] {
			t.Errorf("no alert %s (%s)", name, what)
		}
	}

	sections := map[string]bool{}
	for _, m := range headingRE.FindAllStringSubmatch(string(read(t, runbook)), -1) {
		sections[m[1]] = true
		if !names[m[1]] {
			t.Errorf("%s has a section %q for no alert", runbook, m[1])
		}
	}

	var tests promtoolTests
	if err := yaml.Unmarshal(read(t, rulesTests), &tests); err != nil {
		t.Fatalf("parse %s: %v", rulesTests, err)
	}
	if !slices.Equal(tests.RuleFiles, []string{filepath.Base(rulesFile)}) {
		t.Errorf("%s loads %v, want [%s]", rulesTests, tests.RuleFiles, filepath.Base(rulesFile))
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range tests.Tests {
		for _, at := range tc.AlertRuleTest {
			if len(at.ExpAlerts) > 0 {
				fires[at.AlertName] = true
			} else {
				quiet[at.AlertName] = true
			}
		}
	}

	for _, a := range src.Alerts {
		if !sections[a.Alert] {
			t.Errorf("alert %s has no section \"## %s\" in %s", a.Alert, a.Alert, runbook)
		}
		if want := "https://github.com/composio-guard/composio-guard/blob/main/" + runbook + "#" + strings.ToLower(a.Alert); src.RunbookURL(a) != want {
			t.Errorf("alert %s: runbook_url %s, want %s", a.Alert, src.RunbookURL(a), want)
		}
		if !fires[a.Alert] || !quiet[a.Alert] {
			t.Errorf("alert %s needs a unit test in %s where it fires and one where it does not", a.Alert, rulesTests)
		}
	}
}

func TestAlertsNameExposedMetrics(t *testing.T) {
	exprs := map[string]string{}
	for _, a := range loadSource(t).Alerts {
		exprs["alert "+a.Alert] = a.Expr
	}
	checkNames(t, exprs)
}

// TestPromtool runs promtool's own checks: rule syntax and PromQL of both
// generated forms, and the unit tests of every alert.
func TestPromtool(t *testing.T) {
	promtool := tool(t, "promtool")

	out := run(t, promtool, "check", "rules", rulesFile)
	t.Logf("promtool check rules:\n%s", out)

	// The PrometheusRule's spec is a rules file too: check it as one.
	var pr struct {
		Spec json.RawMessage `json:"spec"`
	}
	if err := yaml.Unmarshal(read(t, prometheusRule), &pr); err != nil {
		t.Fatalf("parse %s: %v", prometheusRule, err)
	}
	spec, err := yaml.JSONToYAML(pr.Spec)
	if err != nil {
		t.Fatal(err)
	}
	specFile := filepath.Join(t.TempDir(), "prometheusrule-spec.yaml")
	if err := os.WriteFile(specFile, spec, 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, promtool, "check", "rules", specFile)

	out = run(t, promtool, "test", "rules", rulesTests)
	if !strings.Contains(string(out), "SUCCESS") {
		t.Errorf("promtool test rules did not report SUCCESS:\n%s", out)
	}
}
