package upstream

import (
	"bytes"
	"testing"
	"time"
)

// Allocation budget of reading one list page, as the guard's lookup does:
// the id it keeps (status, user id and auth config id are the query's own
// strings) and the limit on the body; the read buffer is pooled, and
// created_at is read from the answer's bytes without allocating. Measured
// with go1.26 on linux/amd64; `make test` asserts it without -race.
const listPageBudget = 2

var benchPage = []byte(`{"items":[{"id":"ca_1","status":"ACTIVE","user_id":"user_1","auth_config":{"id":"ac_1"},` +
	`"toolkit":{"slug":"github"},"created_at":"2026-01-01T00:00:00Z"}],"next_cursor":null,"total_pages":1}`)

func TestListPageAllocBudget(t *testing.T) {
	known := []string{StatusActive, StatusInitiated, "user_1", "ac_1"}
	res := ListResult{Items: make([]Account, 0, 4)}
	if _, err := decodePage(bytes.NewReader(benchPage), &res, false, known...); err != nil || len(res.Items) != 1 || res.Items[0].ID != "ca_1" ||
		!res.Items[0].CreatedAt.Equal(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("decoded %+v, %v", res.Items, err)
	}
	if raceDetector {
		t.Skip("allocation counts differ under -race; the plain `go test` run asserts them")
	}
	r := bytes.NewReader(benchPage)
	n := testing.AllocsPerRun(500, func() {
		r.Reset(benchPage)
		res.Items = res.Items[:0]
		_, _ = decodePage(r, &res, false, known...)
	})
	t.Logf("list page: %.0f allocations (budget %d)", n, listPageBudget)
	if n > listPageBudget {
		t.Errorf("list page: %.0f allocations, budget %d", n, listPageBudget)
	}
}

func BenchmarkDecodePage(b *testing.B) {
	known := []string{StatusActive, StatusInitiated, "user_1", "ac_1"}
	res := ListResult{Items: make([]Account, 0, 4)}
	r := bytes.NewReader(benchPage)
	b.SetBytes(int64(len(benchPage)))
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(benchPage)
		res.Items = res.Items[:0]
		if _, err := decodePage(r, &res, false, known...); err != nil {
			b.Fatal(err)
		}
	}
}
