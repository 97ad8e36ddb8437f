package audit_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/composio-guard/composio-guard/internal/audit"
)

// TestGrouperListedTwice: an account listed on two pages (the list shifted
// under the scan) is one account, not a duplicate.
func TestGrouperListedTwice(t *testing.T) {
	g := audit.NewGrouper(0)
	it := audit.Item{ID: "ca_1", Status: "ACTIVE", UserID: "u", AuthConfigID: "ac"}
	g.Add(&it)
	g.Add(&it)
	if groups, tot := g.Duplicates(audit.Rules{PendingTTL: time.Minute, Now: time.Now()}); len(groups) != 0 || tot.Groups != 1 {
		t.Errorf("groups %+v totals %+v", groups, tot)
	}
}

// TestGrouperUnknownCreatedAt: an INITIATED account without created_at
// counts (as the guard counts it: the side that cannot hide a duplicate),
// and is listed last.
func TestGrouperUnknownCreatedAt(t *testing.T) {
	g := audit.NewGrouper(0)
	now := time.Now()
	g.Add(&audit.Item{ID: "ca_2", Status: "INITIATED", UserID: "u", AuthConfigID: "ac"})
	g.Add(&audit.Item{ID: "ca_1", Status: "ACTIVE", UserID: "u", AuthConfigID: "ac", CreatedAt: now.Add(-time.Hour)})
	groups, _ := g.Duplicates(audit.Rules{PendingTTL: time.Minute, Now: now})
	if len(groups) != 1 || groups[0].Accounts[0].ID != "ca_1" || groups[0].Accounts[1].ID != "ca_2" {
		t.Errorf("groups %+v", groups)
	}
}

// BenchmarkGroup100k: grouping 100,000 accounts (5,000 duplicate pairs)
// and applying the rules, the audit's work beside the HTTP calls.
func BenchmarkGroup100k(b *testing.B) {
	const n, users = 100_000, 95_000
	items := make([]audit.Item, n)
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range items {
		items[i] = audit.Item{ID: "ca_" + strconv.Itoa(i), Status: "ACTIVE", UserID: "user_" + strconv.Itoa(i%users),
			AuthConfigID: "ac_github", Toolkit: "github", AccountType: "PRIVATE", CreatedAt: base.Add(time.Duration(i) * time.Second)}
	}
	b.ReportAllocs()
	for b.Loop() {
		g := audit.NewGrouper(0)
		for i := range items {
			g.Add(&items[i])
		}
		groups, tot := g.Duplicates(audit.Rules{PendingTTL: 15 * time.Minute, Now: base})
		if len(groups) != n-users || tot.Groups != users {
			b.Fatalf("%d groups, %d duplicate", tot.Groups, len(groups))
		}
	}
}
