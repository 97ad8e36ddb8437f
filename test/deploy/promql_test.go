package deploy

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
)

// promqlKeywords are identifiers that are never metric names.
var promqlKeywords = map[string]bool{
	"and": true, "or": true, "unless": true, "bool": true, "offset": true,
	"by": true, "without": true, "on": true, "ignoring": true,
	"group_left": true, "group_right": true, "inf": true, "nan": true,
	"start": true, "end": true, "atan2": true,
}

// aggregations may put their by/without clause before the parenthesis.
var aggregations = map[string]bool{
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true,
	"stdvar": true, "count": true, "count_values": true, "bottomk": true, "topk": true,
	"quantile": true, "limitk": true, "limit_ratio": true,
}

// labelLists are keywords followed by a parenthesised list of label names.
var labelLists = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true,
	"group_left": true, "group_right": true,
}

// metricNames returns the metric names a PromQL expression selects. It is a
// small scanner, not a parser: strings, label matchers, ranges, Grafana
// variables, numbers, durations, functions and label lists are skipped, and
// every other identifier is a metric name. Selecting by __name__ is refused,
// since such a name could not be checked.
func metricNames(expr string) ([]string, error) {
	found := map[string]bool{}
	s := expr
	i := 0
	skipString := func(j int) (int, error) {
		q := s[j]
		for k := j + 1; k < len(s); k++ {
			if s[k] == '\\' && q != '`' {
				k++
				continue
			}
			if s[k] == q {
				return k + 1, nil
			}
		}
		return 0, fmt.Errorf("unterminated string at %d", j)
	}
	// skipGroup skips from an opening bracket to its match, strings aware.
	skipGroup := func(j int, open, close byte) (int, error) {
		depth := 0
		for k := j; k < len(s); {
			switch c := s[k]; {
			case c == '"' || c == '\'' || c == '`':
				n, err := skipString(k)
				if err != nil {
					return 0, err
				}
				k = n
				continue
			case c == open:
				depth++
			case c == close:
				depth--
				if depth == 0 {
					return k + 1, nil
				}
			}
			k++
		}
		return 0, fmt.Errorf("unbalanced %c at %d", open, j)
	}
	isIdentStart := func(c byte) bool { return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
	isIdent := func(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }
	nextNonSpace := func(j int) int {
		for j < len(s) && strings.ContainsRune(" \t\r\n", rune(s[j])) {
			j++
		}
		return j
	}
	if strings.Count(expr, "(") != strings.Count(expr, ")") {
		return nil, fmt.Errorf("unbalanced parentheses")
	}
	if strings.Contains(expr, "__name__") {
		return nil, fmt.Errorf("selects by __name__: use the metric name itself")
	}
	for i < len(s) {
		c := s[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			n, err := skipString(i)
			if err != nil {
				return nil, err
			}
			i = n
		case c == '{':
			n, err := skipGroup(i, '{', '}')
			if err != nil {
				return nil, err
			}
			i = n
		case c == '[':
			n, err := skipGroup(i, '[', ']')
			if err != nil {
				return nil, err
			}
			i = n
		case c == '$':
			// Grafana variable: $name or ${name...}.
			i++
			if i < len(s) && s[i] == '{' {
				n, err := skipGroup(i, '{', '}')
				if err != nil {
					return nil, err
				}
				i = n
			} else {
				for i < len(s) && isIdent(s[i]) {
					i++
				}
			}
		case c >= '0' && c <= '9' || c == '.' && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9':
			// Numbers and durations (0.99, 1e3, 5m, 1h30m) are one token.
			for i < len(s) && (isIdent(s[i]) || s[i] == '.') {
				i++
			}
		case isIdentStart(c):
			j := i
			for j < len(s) && isIdent(s[j]) {
				j++
			}
			word := s[i:j]
			k := nextNonSpace(j)
			switch {
			case labelLists[strings.ToLower(word)] && k < len(s) && s[k] == '(':
				n, err := skipGroup(k, '(', ')')
				if err != nil {
					return nil, err
				}
				j = n
			case promqlKeywords[strings.ToLower(word)], aggregations[strings.ToLower(word)]:
			case k < len(s) && s[k] == '(':
				// A function or an aggregation.
			default:
				found[word] = true
			}
			i = j
		default:
			i++
		}
	}
	return slices.Sorted(maps.Keys(found)), nil
}

func TestMetricNames(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want []string
		err  bool
	}{
		{expr: `up{job=~".*composio-guard.*"} == 0`, want: []string{"up"}},
		{
			expr: `sum by (namespace, job) (rate(composio_guard_decisions_total{decision="failed_open"}[5m])) > 0`,
			want: []string{"composio_guard_decisions_total"},
		},
		{
			expr: `histogram_quantile(0.99, sum by (le) (rate(a_bucket{x=~"$job", y="}"}[$__rate_interval])))`,
			want: []string{"a_bucket"},
		},
		{
			expr: "min by (j) (g) < 200 and on (j) sum by (j) (rate(c_total[5m] offset 1h)) > 1e3",
			want: []string{"c_total", "g"},
		},
		{expr: `sum(rate(x[5m])) without (pod) / ignoring(code) group_left(route) y`, want: []string{"x", "y"}},
		{expr: `max by (instance) (d{namespace=~"${namespace:regex}"})`, want: []string{"d"}},
		{expr: `rate(a[1h30m]) * on() group_left() b{l='x\'y}'}`, want: []string{"a", "b"}},
		{expr: `a{l="open}`, err: true},
		{expr: `{__name__=~"composio_.*"}`, err: true},
		{expr: `sum(rate(a{x="1"}[5m])`, err: true},
	} {
		got, err := metricNames(tc.expr)
		if (err != nil) != tc.err {
			t.Errorf("metricNames(%q) error = %v, want error %v", tc.expr, err, tc.err)
			continue
		}
		if !tc.err && !slices.Equal(got, tc.want) {
			t.Errorf("metricNames(%q) = %v, want %v", tc.expr, got, tc.want)
		}
	}
}

// checkNames fails for every name in exprs (keyed by where they come from)
// that the binary does not expose, and returns the names used.
func checkNames(t *testing.T, exprs map[string]string) map[string]bool {
	t.Helper()
	exposed := exposedNames(t)
	used := map[string]bool{}
	for _, where := range slices.Sorted(maps.Keys(exprs)) {
		names, err := metricNames(exprs[where])
		if err != nil {
			t.Errorf("%s: %v\n%s", where, err, exprs[where])
			continue
		}
		if len(names) == 0 {
			t.Errorf("%s: expression names no metric: %s", where, exprs[where])
		}
		for _, n := range names {
			used[n] = true
			if !exposed[n] && !synthetic[n] {
				t.Errorf("%s: metric %q is not exposed by the binary", where, n)
			}
		}
	}
	return used
}
