package upstream_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/composio-guard/composio-guard/internal/upstream"
)

// constants returns the string constants of file whose name starts with
// prefix, by name.
func constants(t *testing.T, f *ast.File, prefix string) map[string]string {
	t.Helper()
	out := map[string]string{}
	ast.Inspect(f, func(n ast.Node) bool {
		vs, ok := n.(*ast.ValueSpec)
		if !ok {
			return true
		}
		for i, name := range vs.Names {
			if !strings.HasPrefix(name.Name, prefix) || i >= len(vs.Values) {
				continue
			}
			if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
				out[name.Name], _ = strconv.Unquote(lit.Value)
			}
		}
		return true
	})
	return out
}

// returned lists what the function fn of f returns as its result number i:
// identifiers by name, string literals quoted.
func returned(t *testing.T, f *ast.File, fn string, i int) []string {
	t.Helper()
	var out []string
	for _, d := range f.Decls {
		fd, ok := d.(*ast.FuncDecl)
		if !ok || fd.Name.Name != fn {
			continue
		}
		ast.Inspect(fd.Body, func(n ast.Node) bool {
			if _, lit := n.(*ast.FuncLit); lit {
				return false
			}
			rs, ok := n.(*ast.ReturnStmt)
			if !ok || len(rs.Results) <= i {
				return true
			}
			switch e := rs.Results[i].(type) {
			case *ast.Ident:
				out = append(out, e.Name)
			case *ast.BasicLit:
				out = append(out, e.Value)
			default:
				t.Errorf("%s returns %T as result %d: want a named constant", fn, e, i)
			}
			return true
		})
	}
	if len(out) == 0 {
		t.Fatalf("no return of %s found", fn)
	}
	return out
}

func parse(t *testing.T, file string) *ast.File {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// The label lists the assembly creates at start are the package's constants,
// all of them, and the functions that pick a label return nothing else.
func TestLabelListsMatchTheCode(t *testing.T) {
	sorted := func(m map[string]string) []string { return slices.Sorted(maps.Values(m)) }
	status := parse(t, "status.go")
	reasons := constants(t, status, "Reason")
	if got, want := slices.Sorted(slices.Values(upstream.ErrorReasons())), sorted(reasons); !slices.Equal(got, want) {
		t.Errorf("ErrorReasons() = %v, the Reason constants of status.go are %v", got, want)
	}
	for _, r := range returned(t, status, "StatusFor", 1) {
		if _, ok := reasons[r]; !ok && r != `""` {
			t.Errorf("StatusFor returns reason %s, not one of the Reason constants", r)
		}
	}

	list := parse(t, "list.go")
	results := constants(t, list, "Lookup")
	if got, want := slices.Sorted(slices.Values(upstream.LookupResults())), sorted(results); !slices.Equal(got, want) {
		t.Errorf("LookupResults() = %v, the Lookup constants of list.go are %v", got, want)
	}
	for _, r := range returned(t, list, "classify", 0) {
		if _, ok := results[r]; !ok {
			t.Errorf("classify returns result %s, not one of the Lookup constants", r)
		}
	}

	ops := constants(t, parse(t, "instrument.go"), "Op")
	series := map[string]bool{}
	for _, s := range upstream.ErrorSeries() {
		series[s[0]+"|"+s[1]] = true
	}
	for _, op := range ops {
		for _, r := range upstream.ErrorReasons() {
			if !series[op+"|"+r] && !(op == upstream.OpLookup && r == upstream.ReasonBodyTooLarge) {
				t.Errorf("no upstream_errors_total series {op=%s, reason=%s}", op, r)
			}
		}
	}
	if len(series) != len(ops)*len(upstream.ErrorReasons())-1 {
		t.Errorf("%d upstream error series for %d ops and %d reasons", len(series), len(ops), len(upstream.ErrorReasons()))
	}
}
