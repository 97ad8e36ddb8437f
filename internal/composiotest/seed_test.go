package composiotest_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/composio-guard/composio-guard/internal/composiotest"
	"github.com/composio-guard/composio-guard/internal/composiotest/fakeserver"
)

func TestSeedBulkOverControlAPI(t *testing.T) {
	fake, srv := fakeserver.New(t, composiotest.WithToolkit("ac_b", "slack"))
	a := call(t, srv.URL, "POST", "/_fake/accounts/bulk",
		`{"credential":"k1","count":7,"users":3,"auth_configs":["ac_a","ac_b"],"status":"INITIATED","account_type":"SHARED","created_at":"2026-01-02T03:04:05Z","step":1000000000}`)
	if a.status != http.StatusCreated || a.json["added"] != float64(7) {
		t.Fatalf("bulk: %d %s", a.status, a.raw)
	}
	accs := fake.Accounts("k1")
	if len(accs) != 7 {
		t.Fatalf("accounts: %d, want 7", len(accs))
	}
	// Account i: user i mod 3, auth config (i div 3) mod 2; the 7th (i=6)
	// lands on user_0 / ac_a again: the one duplicate pair.
	want := []struct{ user, cfg string }{{"user_0", "ac_a"}, {"user_1", "ac_a"}, {"user_2", "ac_a"},
		{"user_0", "ac_b"}, {"user_1", "ac_b"}, {"user_2", "ac_b"}, {"user_0", "ac_a"}}
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ids := map[string]bool{}
	for i, acc := range accs {
		if acc.UserID != want[i].user || acc.AuthConfigID != want[i].cfg || acc.Status != "INITIATED" ||
			acc.AccountType != "SHARED" || !acc.CreatedAt.Equal(base.Add(time.Duration(i)*time.Second)) {
			t.Errorf("account %d: %+v, want %v", i, acc, want[i])
		}
		ids[acc.ID] = true
	}
	if len(ids) != 7 {
		t.Errorf("ids not unique: %v", ids)
	}
	if accs[3].Toolkit != "slack" || accs[0].Toolkit != "github" {
		t.Errorf("toolkits: %q %q", accs[3].Toolkit, accs[0].Toolkit)
	}
	// The seeded accounts are listed like any other.
	l := call(t, srv.URL, "GET", "/api/v3.1/connected_accounts?account_type=ALL&limit=1000", "", "x-api-key", "k1")
	if len(l.ids()) != 7 || l.json["total_items"] != float64(7) {
		t.Errorf("list: %s", l.raw)
	}

	for _, body := range []string{
		`{"count":3}`, `{"credential":"k","count":0}`, `{"credential":"k","count":3,"status":"DONE"}`,
		`{"credential":"k","count":3,"account_type":"ALL"}`, `{"credential":"k","count":3,"users":-1}`, `[`,
		fmt.Sprintf(`{"credential":"k","count":%d}`, composiotest.MaxSeed+1),
	} {
		if a := call(t, srv.URL, "POST", "/_fake/accounts/bulk", body); a.status != http.StatusBadRequest {
			t.Errorf("bulk %s: %d, want 400", body, a.status)
		}
	}
}

func TestSeedHundredThousand(t *testing.T) {
	fake := composiotest.New()
	n, err := fake.Seed(composiotest.Seed{Credential: "k", Count: 100_000, Users: 99_000})
	if err != nil || n != 100_000 {
		t.Fatalf("seed: %d %v", n, err)
	}
	if got := fake.CountActive("k", "user_0", "ac_seed"); got != 2 {
		t.Errorf("user_0 on ac_seed: %d ACTIVE, want 2 (the 99,001st account repeats it)", got)
	}
}

func TestCursorNullAfterFault(t *testing.T) {
	fake, srv := fakeserver.New(t)
	if _, err := fake.Seed(composiotest.Seed{Credential: "k", Count: 25}); err != nil {
		t.Fatal(err)
	}
	if err := fake.SetFault(composiotest.RouteList, composiotest.Fault{CursorNullAfter: 20}); err != nil {
		t.Fatal(err)
	}
	p1 := call(t, srv.URL, "GET", "/api/v3/connected_accounts?limit=10", "", "x-api-key", "k")
	next, _ := p1.json["next_cursor"].(string)
	if len(p1.ids()) != 10 || next == "" {
		t.Fatalf("page 1: %s", p1.raw)
	}
	// The second page reaches 20 items: no next cursor, though 25 match.
	p2 := call(t, srv.URL, "GET", "/api/v3/connected_accounts?limit=10&cursor="+next, "", "x-api-key", "k")
	if len(p2.ids()) != 10 || p2.json["next_cursor"] != nil || p2.json["total_items"] != float64(25) {
		t.Fatalf("page 2: %s", p2.raw)
	}
	// Over the control API too; and a negative value is refused.
	if a := call(t, srv.URL, "PUT", "/_fake/faults/list", `{"cursor_null_after":-1}`); a.status != http.StatusBadRequest {
		t.Errorf("negative cursor_null_after: %d", a.status)
	}
	if a := call(t, srv.URL, "PUT", "/_fake/faults/list", `{"cursor_null_after":5}`); a.status != http.StatusNoContent {
		t.Errorf("cursor_null_after: %d %s", a.status, a.raw)
	}
	p := call(t, srv.URL, "GET", "/api/v3/connected_accounts?limit=10", "", "x-api-key", "k")
	if len(p.ids()) != 10 || p.json["next_cursor"] != nil {
		t.Errorf("with cursor_null_after 5: %s", p.raw)
	}
}

// BenchmarkSeed100k is the bulk seed's speed: 100,000 accounts a call.
func BenchmarkSeed100k(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		fake := composiotest.New()
		if _, err := fake.Seed(composiotest.Seed{Credential: "k", Count: 100_000, Users: 90_000}); err != nil {
			b.Fatal(err)
		}
	}
}

// TestListAfterRemovals: the list skips deleted and replaced accounts, in
// both orders, before and after the fake compacts its list order.
func TestListAfterRemovals(t *testing.T) {
	fake, srv := fakeserver.New(t)
	if _, err := fake.Seed(composiotest.Seed{Credential: "k", Count: 3000}); err != nil {
		t.Fatal(err)
	}
	// Delete every account but each 10th (2,700 removals: the order compacts).
	all := fake.Accounts("k")
	want := map[string]bool{}
	for i, a := range all {
		if i%10 == 0 {
			want[a.ID] = true
			continue
		}
		if !fake.DeleteAccount(a.ID) {
			t.Fatalf("delete %s", a.ID)
		}
	}
	// Replace one kept account: it moves to the newest place, listed once.
	replaced := fake.AddAccount(composiotest.Account{ID: all[0].ID, Credential: "k", UserID: "moved", AuthConfigID: "ac_seed"})
	for _, dir := range []string{"", "&order_direction=asc"} {
		seen := map[string]bool{}
		var order []string
		cursor := ""
		for {
			a := call(t, srv.URL, "GET", "/api/v3/connected_accounts?limit=70"+dir+cursor, "", "x-api-key", "k")
			if a.json["total_items"] != float64(300) {
				t.Fatalf("total_items %v", a.json["total_items"])
			}
			for _, id := range a.ids() {
				if seen[id] || !want[id] {
					t.Fatalf("%s: id %s listed twice or deleted", dir, id)
				}
				seen[id] = true
				order = append(order, id)
			}
			next, _ := a.json["next_cursor"].(string)
			if next == "" {
				break
			}
			cursor = "&cursor=" + next
		}
		if len(seen) != 300 {
			t.Errorf("%s: listed %d, want 300", dir, len(seen))
		}
		newest := order[0]
		if dir != "" {
			newest = order[len(order)-1]
		}
		if newest != replaced.ID {
			t.Errorf("%s: the replaced account is not the newest", dir)
		}
	}
}
