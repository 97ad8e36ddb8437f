package intercept

import (
	"testing"

	"github.com/composio-guard/composio-guard/internal/reqscope"
)

// Allocation budgets of the body parser, per request body. The link body
// costs its two ids and the account type; a body carrying allow_multiple also
// costs the copy without it; an escaped id costs its decoding. Measured with go1.26 on linux/amd64 (the
// end-to-end budgets of the guarded paths are in bench/path_bench_test.go).
var parseBudgets = []struct {
	name   string
	route  string
	body   string
	strip  bool // also strip the opt-in member, as the guard does before forwarding
	budget float64
}{
	{"link", reqscope.RouteLink, string(benchBody), false, 4},
	{"link with allow_multiple", reqscope.RouteLink,
		`{"auth_config_id":"ac_abc123","allow_multiple":true,"user_id":"user_123","callback_url":"https://app.example/cb"}`, true, 5},
	{"link with escapes", reqscope.RouteLink, `{"auth_config_id":"ac_\u0061bc","user_id":"user_\u0031"}`, false, 8},
	{"legacy create", reqscope.RouteCreate,
		`{"auth_config":{"id":"ac_abc123"},"connection":{"user_id":"user_123","callback_url":"https://app.example/cb"}}`, false, 4},
}

func TestParseAllocBudgets(t *testing.T) {
	for _, tc := range parseBudgets {
		t.Run(tc.name, func(t *testing.T) {
			b := []byte(tc.body)
			g, br := parseBody(tc.route, b)
			if br != nil {
				t.Fatalf("refused: %s", br.message)
			}
			if g.UserID == "" || g.AuthConfigID == "" || tc.strip != g.flagFound {
				t.Fatalf("parsed %+v", g)
			}
			if raceDetector {
				t.Skip("allocation counts differ under -race; the plain `go test` run asserts them")
			}
			n := testing.AllocsPerRun(500, func() {
				g, _ := parseBody(tc.route, b)
				if tc.strip {
					_ = stripFlag(b, g.flag)
				}
			})
			t.Logf("%s: %.0f allocations (budget %.0f)", tc.name, n, tc.budget)
			if n > tc.budget {
				t.Errorf("%s: %.0f allocations, budget %.0f", tc.name, n, tc.budget)
			}
		})
	}
}

func BenchmarkParse(b *testing.B) {
	for _, tc := range parseBudgets {
		b.Run(tc.name, func(b *testing.B) {
			body := []byte(tc.body)
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				g, br := parseBody(tc.route, body)
				if br != nil {
					b.Fatal(br.message)
				}
				if tc.strip {
					_ = stripFlag(body, g.flag)
				}
			}
		})
	}
}
