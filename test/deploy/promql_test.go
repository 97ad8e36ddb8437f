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

// metricNames returns the metric names a PromQL expression selects.
func metricNames(expr string) ([]string, error) {
	sels, err := selectors(expr)
	if err != nil {
		return nil, err
	}
	found := map[string]bool{}
	for _, sel := range sels {
		found[sel.name] = true
	}
	return slices.Sorted(maps.Keys(found)), nil
}

// matcher is one label matcher of a selector: label op "value".
type matcher struct{ label, op, value string }

// selector is a metric name with the label matchers written after it.
type selector struct {
	name     string
	matchers []matcher
}

// selectors returns the selectors of a PromQL expression, in order. It is a
// small scanner, not a parser (the Prometheus parser is no dependency):
// strings, ranges, Grafana variables, numbers, durations, functions and
// label lists are skipped, every other identifier is a metric name, and the
// braces right after one are its matchers. Selecting by __name__ is
// refused, since such a name could not be checked.
func selectors(expr string) ([]selector, error) {
	var found []selector
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
				sel := selector{name: word}
				if k < len(s) && s[k] == '{' {
					n, err := skipGroup(k, '{', '}')
					if err != nil {
						return nil, err
					}
					if sel.matchers, err = parseMatchers(s[k+1 : n-1]); err != nil {
						return nil, fmt.Errorf("matchers of %s: %w", word, err)
					}
					j = n
				}
				found = append(found, sel)
			}
			i = j
		default:
			i++
		}
	}
	return found, nil
}

// parseMatchers reads `label op "value", ...` (the inside of the braces).
func parseMatchers(in string) ([]matcher, error) {
	var out []matcher
	i := 0
	space := func() {
		for i < len(in) && strings.ContainsRune(" \t\r\n", rune(in[i])) {
			i++
		}
	}
	for {
		space()
		if i == len(in) {
			return out, nil
		}
		j := i
		for j < len(in) && (in[j] == '_' || in[j] >= 'a' && in[j] <= 'z' || in[j] >= 'A' && in[j] <= 'Z' || j > i && in[j] >= '0' && in[j] <= '9') {
			j++
		}
		if j == i {
			return nil, fmt.Errorf("label name expected at %q", in[i:])
		}
		m := matcher{label: in[i:j]}
		i = j
		space()
		for _, op := range []string{"=~", "!~", "!=", "="} {
			if strings.HasPrefix(in[i:], op) {
				m.op = op
				i += len(op)
				break
			}
		}
		if m.op == "" {
			return nil, fmt.Errorf("operator expected after %s", m.label)
		}
		space()
		if i == len(in) || !strings.ContainsRune("\"'`", rune(in[i])) {
			return nil, fmt.Errorf("quoted value expected after %s%s", m.label, m.op)
		}
		q := in[i]
		var b strings.Builder
		for i++; ; i++ {
			if i == len(in) {
				return nil, fmt.Errorf("unterminated value of %s", m.label)
			}
			c := in[i]
			if c == q {
				i++
				break
			}
			if c == '\\' && q != '`' && i+1 < len(in) {
				i++
				c = in[i]
			}
			b.WriteByte(c)
		}
		m.value = b.String()
		out = append(out, m)
		space()
		if i < len(in) {
			if in[i] != ',' {
				return nil, fmt.Errorf("comma expected at %q", in[i:])
			}
			i++
		}
	}
}

func TestSelectors(t *testing.T) {
	got, err := selectors(`sum(rate(a_total{job=~"$job", decision="failed_open", x!='y\'z'}[5m])) / b{ l = "v" ,}`)
	if err != nil {
		t.Fatal(err)
	}
	want := []selector{
		{"a_total", []matcher{{"job", "=~", "$job"}, {"decision", "=", "failed_open"}, {"x", "!=", "y'z"}}},
		{"b", []matcher{{"l", "=", "v"}}},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("selectors = %v, want %v", got, want)
	}
	for _, bad := range []string{`a{b}`, `a{b="c" d="e"}`, `a{="c"}`, `a{b=c}`} {
		if _, err := selectors(bad); err == nil {
			t.Errorf("selectors(%q) accepted it", bad)
		}
	}
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
