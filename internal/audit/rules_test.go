package audit_test

import (
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/composio-guard/composio-guard/internal/audit"
	"github.com/composio-guard/composio-guard/internal/composiotest"
)

// TestDuplicateRules seeds each case into a fresh fake and reads the
// command's JSON output: which accounts form a duplicate group, and the
// exit code a CI job would see.
func TestDuplicateRules(t *testing.T) {
	const (
		young = time.Minute      // a live pending link (TTL 15m)
		old   = 20 * time.Minute // an expired one
	)
	type seeded = []composiotest.Account
	for _, tc := range []struct {
		name string
		args []string
		seed func(f *composiotest.Fake) seeded
		// want: for each duplicate group, the indexes of its seeded
		// accounts, oldest first.
		want [][]int
	}{
		{"two ACTIVE", nil, func(f *composiotest.Fake) seeded {
			return seeded{acct(f, "u1", "ac_1", "ACTIVE", 2*time.Hour), acct(f, "u1", "ac_1", "ACTIVE", time.Hour)}
		}, [][]int{{0, 1}}},
		{"three ACTIVE, oldest first", nil, func(f *composiotest.Fake) seeded {
			return seeded{acct(f, "u1", "ac_1", "ACTIVE", time.Hour), acct(f, "u1", "ac_1", "ACTIVE", 3*time.Hour),
				acct(f, "u1", "ac_1", "ACTIVE", 2*time.Hour)}
		}, [][]int{{1, 2, 0}}},
		{"one ACTIVE each", nil, func(f *composiotest.Fake) seeded {
			return seeded{acct(f, "u1", "ac_1", "ACTIVE", time.Hour), acct(f, "u2", "ac_1", "ACTIVE", time.Hour)}
		}, nil},
		{"ACTIVE and INITIATED", []string{"--include-initiated"}, func(f *composiotest.Fake) seeded {
			return seeded{acct(f, "u1", "ac_1", "ACTIVE", time.Hour), acct(f, "u1", "ac_1", "INITIATED", young)}
		}, [][]int{{0, 1}}},
		// Without --include-initiated only ACTIVE accounts are listed.
		{"ACTIVE and INITIATED, ACTIVE only", nil, func(f *composiotest.Fake) seeded {
			return seeded{acct(f, "u1", "ac_1", "ACTIVE", time.Hour), acct(f, "u1", "ac_1", "INITIATED", young)}
		}, nil},
		{"two young INITIATED", []string{"--include-initiated"}, func(f *composiotest.Fake) seeded {
			return seeded{acct(f, "u1", "ac_1", "INITIATED", 2*time.Minute), acct(f, "u1", "ac_1", "INITIATED", young)}
		}, [][]int{{0, 1}}},
		{"old INITIATED and young INITIATED", []string{"--include-initiated"}, func(f *composiotest.Fake) seeded {
			return seeded{acct(f, "u1", "ac_1", "INITIATED", old), acct(f, "u1", "ac_1", "INITIATED", young)}
		}, nil},
		{"old INITIATED beside ACTIVE", []string{"--include-initiated"}, func(f *composiotest.Fake) seeded {
			return seeded{acct(f, "u1", "ac_1", "ACTIVE", time.Hour), acct(f, "u1", "ac_1", "INITIATED", old)}
		}, nil},
		{"old INITIATED not shown in a duplicate group", []string{"--include-initiated"}, func(f *composiotest.Fake) seeded {
			return seeded{acct(f, "u1", "ac_1", "ACTIVE", 3*time.Hour), acct(f, "u1", "ac_1", "INITIATED", old),
				acct(f, "u1", "ac_1", "ACTIVE", time.Hour)}
		}, [][]int{{0, 2}}},
		{"a longer pending TTL keeps it live", []string{"--include-initiated", "--pending-ttl", "30m"}, func(f *composiotest.Fake) seeded {
			return seeded{acct(f, "u1", "ac_1", "ACTIVE", time.Hour), acct(f, "u1", "ac_1", "INITIATED", old)}
		}, [][]int{{0, 1}}},
		{"other statuses never count", []string{"--include-initiated"}, func(f *composiotest.Fake) seeded {
			out := seeded{acct(f, "u1", "ac_1", "ACTIVE", time.Hour)}
			for _, st := range []string{"FAILED", "EXPIRED", "INACTIVE", "INITIALIZING", "REVOKED"} {
				out = append(out, acct(f, "u1", "ac_1", st, time.Minute))
			}
			return out
		}, nil},
		{"account types apart", nil, func(f *composiotest.Fake) seeded {
			return seeded{acct(f, "u1", "ac_1", "ACTIVE", time.Hour), acct(f, "u1", "ac_1", "ACTIVE", time.Hour, shared)}
		}, nil},
		{"two SHARED", nil, func(f *composiotest.Fake) seeded {
			return seeded{acct(f, "u1", "ac_1", "ACTIVE", 2*time.Hour, shared), acct(f, "u1", "ac_1", "ACTIVE", time.Hour, shared)}
		}, [][]int{{0, 1}}},
		{"auth configs apart", nil, func(f *composiotest.Fake) seeded {
			return seeded{acct(f, "u1", "ac_1", "ACTIVE", time.Hour), acct(f, "u1", "ac_2", "ACTIVE", time.Hour)}
		}, nil},
		{"users apart", nil, func(f *composiotest.Fake) seeded {
			return seeded{acct(f, "u1", "ac_1", "ACTIVE", time.Hour), acct(f, "u1x", "ac_1", "ACTIVE", time.Hour)}
		}, nil},
		// The guard's lock key folds case and surrounding white space: so does the audit.
		{"id spellings folded", nil, func(f *composiotest.Fake) seeded {
			return seeded{acct(f, "User_1", "ac_AB", "ACTIVE", 3*time.Hour), acct(f, " user_1 ", "AC_ab", "ACTIVE", 2*time.Hour),
				acct(f, "USER_1", "ac_ab ", "ACTIVE", time.Hour)}
		}, [][]int{{0, 1, 2}}},
		{"two groups", nil, func(f *composiotest.Fake) seeded {
			return seeded{acct(f, "u1", "ac_1", "ACTIVE", 2*time.Hour), acct(f, "u1", "ac_1", "ACTIVE", time.Hour),
				acct(f, "u2", "ac_1", "ACTIVE", 2*time.Hour), acct(f, "u2", "ac_1", "ACTIVE", time.Hour), acct(f, "u3", "ac_1", "ACTIVE", time.Hour)}
		}, [][]int{{0, 1}, {2, 3}}},
		{"--since keeps groups with a new account", []string{"--since", "90m"}, func(f *composiotest.Fake) seeded {
			return seeded{acct(f, "u1", "ac_1", "ACTIVE", 5*time.Hour), acct(f, "u1", "ac_1", "ACTIVE", time.Hour),
				acct(f, "u2", "ac_1", "ACTIVE", 5*time.Hour), acct(f, "u2", "ac_1", "ACTIVE", 4*time.Hour)}
		}, [][]int{{0, 1}}},
		{"--auth-config narrows", []string{"--auth-config", "ac_2"}, func(f *composiotest.Fake) seeded {
			return seeded{acct(f, "u1", "ac_1", "ACTIVE", 2*time.Hour), acct(f, "u1", "ac_1", "ACTIVE", time.Hour),
				acct(f, "u1", "ac_2", "ACTIVE", 2*time.Hour), acct(f, "u1", "ac_2", "ACTIVE", time.Hour)}
		}, [][]int{{2, 3}}},
		{"--user narrows", []string{"--user", "u2,u3"}, func(f *composiotest.Fake) seeded {
			return seeded{acct(f, "u1", "ac_1", "ACTIVE", 2*time.Hour), acct(f, "u1", "ac_1", "ACTIVE", time.Hour),
				acct(f, "u2", "ac_1", "ACTIVE", 2*time.Hour), acct(f, "u2", "ac_1", "ACTIVE", time.Hour)}
		}, [][]int{{2, 3}}},
		{"--toolkit narrows", []string{"--toolkit", "slack"}, func(f *composiotest.Fake) seeded {
			return seeded{acct(f, "u1", "ac_1", "ACTIVE", 2*time.Hour), acct(f, "u1", "ac_1", "ACTIVE", time.Hour),
				acct(f, "u1", "ac_slack", "ACTIVE", 2*time.Hour), acct(f, "u1", "ac_slack", "ACTIVE", time.Hour)}
		}, [][]int{{2, 3}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, srv := newFake(t, composiotest.WithToolkit("ac_slack", "slack"))
			seeded := tc.seed(f)
			r := run(t, srv, append([]string{"--format", "json"}, tc.args...)...)
			out := parseJSON(t, r)
			wantCode := audit.ExitClean
			if len(tc.want) > 0 {
				wantCode = audit.ExitDuplicates
			}
			if r.code != wantCode || !out.Summary.Complete {
				t.Fatalf("exit %d (want %d), complete %v\nstdout: %s\nstderr: %s", r.code, wantCode, out.Summary.Complete, r.stdout, r.stderr)
			}
			var got, want [][]string
			for _, g := range out.Groups {
				got = append(got, ids(g))
				if g.Count != len(g.Accounts) {
					t.Errorf("group count %d, %d accounts", g.Count, len(g.Accounts))
				}
			}
			for _, idx := range tc.want {
				var w []string
				for _, i := range idx {
					w = append(w, seeded[i].ID)
				}
				want = append(want, w)
			}
			if !slices.EqualFunc(got, want, slices.Equal) {
				t.Errorf("groups %v, want %v\n%s", got, want, r.stdout)
			}
			if out.Summary.DuplicateGroups != len(tc.want) {
				t.Errorf("summary duplicate_groups %d, want %d", out.Summary.DuplicateGroups, len(tc.want))
			}
			beyond := 0
			for _, w := range tc.want {
				beyond += len(w) - 1
			}
			if out.Summary.AccountsBeyond != beyond {
				t.Errorf("accounts beyond the first %d, want %d", out.Summary.AccountsBeyond, beyond)
			}
		})
	}
}

// TestQueryOnTheWire checks what reached Composio: the list route with the
// largest page, the filters as the SDKs encode them, the credential header
// and nothing but GETs.
func TestQueryOnTheWire(t *testing.T) {
	f, srv := newFake(t)
	acct(f, "u1", "ac_1", "ACTIVE", time.Hour)
	r := run(t, srv, "--include-initiated", "--auth-config", "ac_1,ac_2", "--user", "u 1", "--user", "u2", "--toolkit", "github")
	if r.code != audit.ExitClean {
		t.Fatalf("exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
	reqs := f.Requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	q := reqs[0]
	if q.Method != "GET" || q.Path != "/api/v3.1/connected_accounts" || q.Header.Get("X-Api-Key") != secretKey {
		t.Errorf("request %s %s key %q", q.Method, q.Path, q.Header.Get("X-Api-Key"))
	}
	want := "account_type=ALL&auth_config_ids=ac_1%2Cac_2&limit=1000&statuses=ACTIVE%2CINITIATED&toolkit_slugs=github&user_ids=u%201%2Cu2"
	if q.RawQuery != want {
		t.Errorf("query\n got %s\nwant %s", q.RawQuery, want)
	}
	// v3: no account_type (v3 knows PRIVATE only), ACTIVE only by default.
	f.Reset()
	run(t, srv, "--api-prefix", "/api/v3")
	if reqs := f.Requests(); len(reqs) != 1 || reqs[0].Path != "/api/v3/connected_accounts" ||
		reqs[0].RawQuery != "limit=1000&statuses=ACTIVE" {
		t.Errorf("v3 request: %+v", reqs)
	}
	// Read only: every request the scans made was a GET.
	if n := len(f.RequestsFor("GET", composiotest.RouteList)); n != 1 {
		t.Errorf("%d list GETs", n)
	}
	if len(f.Accounts(secretKey)) != 1 {
		t.Error("the account changed")
	}
}

// TestPagesEverything: many pages, every account read, count matches.
func TestPagesEverything(t *testing.T) {
	f, srv := newFake(t)
	if _, err := f.Seed(composiotest.Seed{Credential: secretKey, Count: 2600, Users: 2500}); err != nil {
		t.Fatal(err)
	}
	r := run(t, srv, "--format", "json")
	out := parseJSON(t, r)
	if r.code != audit.ExitDuplicates || out.Summary.AccountsScanned != 2600 || out.Summary.TotalItems != 2600 ||
		out.Summary.Pages != 3 || out.Summary.DuplicateGroups != 100 || out.Summary.AccountsBeyond != 100 || out.Summary.Groups != 2500 {
		t.Fatalf("exit %d summary %+v", r.code, out.Summary)
	}
	reqs := f.RequestsFor("GET", composiotest.RouteList)
	for i, q := range reqs {
		v, _ := url.ParseQuery(q.RawQuery)
		if (i == 0) != (v.Get("cursor") == "") {
			t.Errorf("request %d cursor %q", i, v.Get("cursor"))
		}
	}
	// --page-size asks smaller pages.
	f.Reset()
	r = run(t, srv, "--format", "json", "--page-size", "500")
	if out := parseJSON(t, r); out.Summary.Pages != 6 || out.Summary.AccountsScanned != 2600 {
		t.Errorf("page size 500: %+v", out.Summary)
	}
	if !strings.Contains(f.RequestsFor("GET", composiotest.RouteList)[0].RawQuery, "limit=500") {
		t.Error("limit=500 not sent")
	}
}
