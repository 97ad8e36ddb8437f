package deploy

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/composio-guard/composio-guard/internal/composiotest/fakeserver"
	"github.com/composio-guard/composio-guard/internal/metrics"
	"github.com/composio-guard/composio-guard/internal/testproc"
)

// targetLabels are labels Prometheus adds to every series of a target; an
// exposition never carries them.
var targetLabels = map[string]bool{"job": true, "instance": true, "namespace": true, "pod": true, "container": true, "service": true, "endpoint": true}

// TestFirstScrapeHasEverySeriesUsed starts the binary, scrapes /metrics
// once with no traffic at all, and finds every metric the dashboard and
// the alert rules use, with every label value a panel or a rule selects
// (`{decision="failed_open"}`, `{result=~"error|timeout"}`): a fresh
// deployment shows zeros, not "No data". The families whose label values
// are open (metrics.CreatedOnFirstUse: the HTTP request families, by status
// code) are the exception: they must appear with the first request.
// Both lock backends are run; the dashboard and the rules select no backend
// value, and each process exposes the series of its own backend only (see
// docs/monitoring.md, "Series at the first scrape").
func TestFirstScrapeHasEverySeriesUsed(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	exprs := dashboardExprs(t, loadDashboard(t))
	for _, a := range loadSource(t).Alerts {
		exprs["alert "+a.Alert] = a.Expr
	}
	redis := miniredis.RunT(t)
	for _, setup := range []struct {
		name string
		env  []string
	}{
		{"memory backend", nil},
		{"redis backend", []string{"GUARD_LOCK_BACKEND=redis", "GUARD_REDIS_URL=redis://" + redis.Addr()}},
	} {
		t.Run(setup.name, func(t *testing.T) {
			_, upstream := fakeserver.New(t)
			p := testproc.StartProxy(t, upstream.URL, setup.env...)
			fams := scrapeFamilies(t, p.AdminURL+"/metrics")
			firstUse := map[string]bool{}
			for _, where := range slices.Sorted(maps.Keys(exprs)) {
				sels, err := selectors(exprs[where])
				if err != nil {
					t.Fatalf("%s: %v", where, err)
				}
				for _, sel := range sels {
					if synthetic[sel.name] {
						continue
					}
					fam := family(fams, sel.name)
					if fam == nil {
						if slices.Contains(metrics.CreatedOnFirstUse(), baseName(sel.name)) {
							firstUse[sel.name] = true
							continue
						}
						t.Errorf("%s: %s is absent from the first scrape", where, sel.name)
						continue
					}
					checkMatchers(t, where, sel, fam)
				}
			}
			if len(firstUse) == 0 {
				return
			}
			// One request, and the families left to their first use exist.
			res, err := http.Get(p.URL + "/api/v3/toolkits")
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			fams = scrapeFamilies(t, p.AdminURL+"/metrics")
			for _, name := range slices.Sorted(maps.Keys(firstUse)) {
				if family(fams, name) == nil {
					t.Errorf("%s is absent after the first request", name)
				}
			}
		})
	}
}

// baseName strips a histogram's or summary's series suffix.
func baseName(name string) string {
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if b, ok := strings.CutSuffix(name, suf); ok {
			return b
		}
	}
	return name
}

// family finds the family a series name belongs to, with at least one
// series: name itself, or the histogram or summary it is a suffix of.
func family(fams map[string]*dto.MetricFamily, name string) *dto.MetricFamily {
	if f := fams[name]; f != nil && len(f.GetMetric()) > 0 {
		return f
	}
	if f := fams[baseName(name)]; f != nil && len(f.GetMetric()) > 0 &&
		(f.GetType() == dto.MetricType_HISTOGRAM || f.GetType() == dto.MetricType_SUMMARY) {
		if strings.HasSuffix(name, "_bucket") && f.GetType() != dto.MetricType_HISTOGRAM {
			return nil
		}
		return f
	}
	return nil
}

var literalAlternation = regexp.MustCompile(`^[A-Za-z0-9_]+(\|[A-Za-z0-9_]+)*$`)

// checkMatchers fails for a label value the selector asks for that no
// series of fam carries: `=` wants a series with that value; `=~` with a
// list of values (a|b) wants each, any other regexp one matching series.
// Negative matchers, Grafana variables and target labels are not checked.
func checkMatchers(t testing.TB, where string, sel selector, fam *dto.MetricFamily) {
	t.Helper()
	values := map[string]map[string]bool{}
	for _, m := range fam.GetMetric() {
		for _, l := range m.GetLabel() {
			if values[l.GetName()] == nil {
				values[l.GetName()] = map[string]bool{}
			}
			values[l.GetName()][l.GetValue()] = true
		}
	}
	for _, m := range sel.matchers {
		if m.op == "!=" || m.op == "!~" || strings.Contains(m.value, "$") {
			continue
		}
		have, ok := values[m.label]
		if !ok {
			if !targetLabels[m.label] && m.label != "le" {
				t.Errorf("%s: %s selects on %s, which is no label of %s", where, sel.name, m.label, fam.GetName())
			}
			continue
		}
		switch {
		case m.op == "=":
			if !have[m.value] {
				t.Errorf("%s: no series %s{%s=%q} at the first scrape (values: %v)", where, sel.name, m.label, m.value, slices.Sorted(maps.Keys(have)))
			}
		case literalAlternation.MatchString(m.value):
			for _, v := range strings.Split(m.value, "|") {
				if !have[v] {
					t.Errorf("%s: no series %s{%s=%q} at the first scrape (values: %v)", where, sel.name, m.label, v, slices.Sorted(maps.Keys(have)))
				}
			}
		default:
			re, err := regexp.Compile("^(?:" + m.value + ")$")
			if err != nil {
				t.Errorf("%s: %s{%s=~%q}: %v", where, sel.name, m.label, m.value, err)
				continue
			}
			if !slices.ContainsFunc(slices.Collect(maps.Keys(have)), re.MatchString) {
				t.Errorf("%s: no series of %s has %s matching %q at the first scrape", where, sel.name, m.label, m.value)
			}
		}
	}
}

// scrapeFamilies reads an exposition into its families.
func scrapeFamilies(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: status %d", url, res.StatusCode)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(res.Body)
	if err != nil {
		t.Fatalf("parse the exposition of %s: %v", url, err)
	}
	return fams
}

// recorder keeps the errors checkMatchers reports.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, a ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, a...))
}

func TestCheckMatchers(t *testing.T) {
	str := func(s string) *string { return &s }
	fam := &dto.MetricFamily{Name: str("d_total"), Type: dto.MetricType_COUNTER.Enum()}
	for _, v := range []string{"failed_open", "rejected_duplicate", "rejected_pending"} {
		fam.Metric = append(fam.Metric, &dto.Metric{Label: []*dto.LabelPair{{Name: str("decision"), Value: str(v)}, {Name: str("mode"), Value: str("enforce")}}})
	}
	for expr, bad := range map[string]int{
		`d_total{job=~"$job", namespace="x", decision="failed_open"}`:     0,
		`d_total{decision=~"rejected_duplicate|rejected_pending"}`:        0,
		`d_total{decision=~"rejected_.*", mode!="shadow", decision!~"x"}`: 0,
		`d_total{decision="refused"}`:                                     1,
		`d_total{decision=~"failed_open|failed_closed", mode="shadow"}`:   2,
		`d_total{decision=~"lookup_.*"}`:                                  1,
		`d_total{decison="failed_open"}`:                                  1,
	} {
		sels, err := selectors(expr)
		if err != nil {
			t.Fatal(err)
		}
		r := &recorder{TB: t}
		checkMatchers(r, "test", sels[0], fam)
		if len(r.errs) != bad {
			t.Errorf("%s: %d errors %q, want %d", expr, len(r.errs), r.errs, bad)
		}
	}
}
