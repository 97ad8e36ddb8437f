package upstream_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/composio-guard/composio-guard/internal/upstream"
)

func TestAccountMatches(t *testing.T) {
	q := upstream.ListQuery{UserID: "u", AuthConfigID: "ac", Statuses: []string{upstream.StatusActive, upstream.StatusInitiated}}
	tests := []struct {
		name string
		a    upstream.Account
		q    upstream.ListQuery
		want bool
	}{
		{"all fields agree", upstream.Account{ID: "ca", Status: "ACTIVE", UserID: "u", AuthConfigID: "ac"}, q, true},
		{"initiated", upstream.Account{ID: "ca", Status: "INITIATED", UserID: "u", AuthConfigID: "ac"}, q, true},
		{"no user id", upstream.Account{ID: "ca", Status: "ACTIVE", AuthConfigID: "ac"}, q, true},
		// A present, different user id contradicts the query; another
		// spelling of the same one does not.
		{"other user id", upstream.Account{ID: "ca", Status: "ACTIVE", UserID: "someone", AuthConfigID: "ac"}, q, false},
		{"user id in other case", upstream.Account{ID: "ca", Status: "ACTIVE", UserID: " U", AuthConfigID: "ac"}, q, true},
		{"auth config in other case", upstream.Account{ID: "ca", Status: "ACTIVE", UserID: "u", AuthConfigID: "AC"}, q, true},
		{"no auth config", upstream.Account{ID: "ca", Status: "ACTIVE", UserID: "u"}, q, true},
		{"nothing but id and status", upstream.Account{ID: "ca", Status: "ACTIVE"}, q, true},
		{"other auth config", upstream.Account{ID: "ca", Status: "ACTIVE", UserID: "u", AuthConfigID: "ac_2"}, q, false},
		{"status not asked", upstream.Account{ID: "ca", Status: "EXPIRED", UserID: "u", AuthConfigID: "ac"}, q, false},
		{"status case differs", upstream.Account{ID: "ca", Status: "active", UserID: "u", AuthConfigID: "ac"}, q, false},
		{"no statuses asked: any", upstream.Account{ID: "ca", Status: "FAILED", AuthConfigID: "ac"},
			upstream.ListQuery{UserID: "u", AuthConfigID: "ac"}, true},
	}
	for _, tc := range tests {
		if got := tc.a.Matches(tc.q); got != tc.want {
			t.Errorf("%s: %+v.Matches = %v, want %v", tc.name, tc.a, got, tc.want)
		}
	}
}

// user_id (deprecated) and auth_config.id are optional: an item without
// them counts, with "" in their place. So is created_at.
func TestListOptionalItemMembers(t *testing.T) {
	body := `{"items":[` +
		`{"id":"ca_1","status":"ACTIVE","auth_config":{"id":"ac"}},` +
		`{"id":"ca_2","status":"INITIATED","user_id":"u"},` +
		`{"id":"ca_3","status":"ACTIVE","user_id":null,"auth_config":null,"created_at":null},` +
		`{"id":"ca_4","status":"ACTIVE","auth_config":{"id":null}}` +
		`],"next_cursor":null}`
	e := newListEnv(t, serve(body), upstream.LookupSettings{})
	res, err := e.c.List(context.Background(), query("/api/v3", "u", "ac", "", nil))
	if err != nil {
		t.Fatal(err)
	}
	want := []upstream.Account{
		{ID: "ca_1", Status: "ACTIVE", AuthConfigID: "ac"},
		{ID: "ca_2", Status: "INITIATED", UserID: "u"},
		{ID: "ca_3", Status: "ACTIVE"},
		{ID: "ca_4", Status: "ACTIVE"},
	}
	if !slices.Equal(res.Items, want) {
		t.Errorf("items %+v, want %+v", res.Items, want)
	}
}

// created_at is read as RFC 3339, as Composio sends it; anything else is a
// zero time, never an error.
func TestListCreatedAt(t *testing.T) {
	tests := []struct {
		raw  string // the JSON value
		want time.Time
	}{
		{`"2026-12-04T10:00:00.000Z"`, time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)},
		{`"2026-12-04T10:00:00Z"`, time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)},
		{`"2026-12-04T10:00:00.123456789Z"`, time.Date(2026, 12, 4, 10, 0, 0, 123456789, time.UTC)},
		{`"2026-12-04T12:30:00+02:30"`, time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)},
		{`"2026-12-04T10:00:00.5-01:00"`, time.Date(2026, 12, 4, 11, 0, 0, 500_000_000, time.UTC)},
		{`null`, time.Time{}},
		{`""`, time.Time{}},
		{`"yesterday"`, time.Time{}},
		{`"2026-12-04"`, time.Time{}},
		{`"2026-12-04 10:00:00Z"`, time.Time{}},
		// Go's RFC 3339 reading (encoding/json's for a time.Time) takes a
		// one-digit hour; the differential fuzz target holds the parser to it.
		{`"2026-12-04T1:00:00Z"`, time.Date(2026, 12, 4, 1, 0, 0, 0, time.UTC)},
		{`"2026-13-04T10:00:00Z"`, time.Time{}},
		{`"2026\u002d12-04T10:00:00Z"`, time.Time{}}, // as encoding/json reads a time.Time: escapes are not decoded
		{`1764842400`, time.Time{}},
		{`{"seconds":1}`, time.Time{}},
		{`["2026-12-04T10:00:00Z"]`, time.Time{}},
	}
	for _, tc := range tests {
		t.Run(tc.raw, func(t *testing.T) {
			body := `{"items":[{"id":"ca","status":"ACTIVE","created_at":` + tc.raw + `}],"next_cursor":null}`
			e := newListEnv(t, serve(body), upstream.LookupSettings{})
			res, err := e.c.List(context.Background(), query("/api/v3", "u", "ac", "", nil))
			if err != nil {
				t.Fatal(err)
			}
			got := res.Items[0].CreatedAt
			if got != tc.want || got.Location() != time.UTC {
				t.Errorf("created_at %s read as %v (%v), want %v", tc.raw, got, got.Location(), tc.want)
			}
		})
	}
}

// With StopAtActive, a matching ACTIVE account ends the lookup: the pages
// behind it are not read, so a user with many accounts still gets an answer.
func TestListStopAtActive(t *testing.T) {
	var n atomic.Int32
	// 31 pages: page 1 holds the ACTIVE account, 30 more follow.
	h := func(w http.ResponseWriter, r *http.Request) {
		i := n.Add(1)
		next := ""
		if i < 31 {
			next = fmt.Sprintf("c%d", i)
		}
		status := "INITIATED"
		if i == 1 {
			status = "ACTIVE"
		}
		serve(page(next, item(fmt.Sprintf("ca_%d", i), status, "u", "ac")))(w, r)
	}
	e := newListEnv(t, h, upstream.LookupSettings{MaxPages: 10})
	q := query("/api/v3", "u", "ac", "", nil)
	q.StopAtActive = true
	res, err := e.c.List(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(e.rec.all()); got != 1 {
		t.Errorf("%d calls, want 1", got)
	}
	if !res.Partial || len(res.Items) != 1 || res.Items[0].ID != "ca_1" || res.Items[0].Status != upstream.StatusActive {
		t.Errorf("result %+v, want the ACTIVE account, partial", res)
	}
	if lookups(e.m, upstream.LookupOK) != 1 {
		t.Errorf("lookup{ok} = %v", lookups(e.m, upstream.LookupOK))
	}

	// Without StopAtActive the same user is more pages than the lookup reads.
	n.Store(0)
	q.StopAtActive = false
	if _, err := e.c.List(context.Background(), q); !errors.Is(err, upstream.ErrTooManyPages) {
		t.Errorf("without StopAtActive: err %v, want ErrTooManyPages", err)
	}
}

// Only an ACTIVE account that Matches stops the paging; one on another auth
// config (the filter is Composio's, the decision is ours) does not, and a
// last page is no partial answer.
func TestListStopAtActiveOnlyOnMatch(t *testing.T) {
	pages := map[string]string{
		"":   page("c1", item("ca_1", "ACTIVE", "u", "ac_other"), item("ca_2", "INITIATED", "u", "ac")),
		"c1": page("c2", item("ca_3", "ACTIVE", "", "ac")),
		"c2": page("", item("ca_4", "INITIATED", "u", "ac")),
	}
	e := newListEnv(t, func(w http.ResponseWriter, r *http.Request) {
		serve(pages[r.URL.Query().Get("cursor")])(w, r)
	}, upstream.LookupSettings{MaxPages: 3})
	q := query("/api/v3", "u", "ac", "", nil)
	q.StopAtActive = true
	res, err := e.c.List(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(e.rec.all()); got != 2 {
		t.Errorf("%d calls, want 2 (the match is on page 2)", got)
	}
	if !res.Partial || len(res.Items) != 3 {
		t.Errorf("result %+v", res)
	}

	// The ACTIVE match on the last page: the answer is whole.
	e2 := newListEnv(t, serve(page("", item("ca", "ACTIVE", "u", "ac"))), upstream.LookupSettings{})
	res, err = e2.c.List(context.Background(), q)
	if err != nil || res.Partial || len(res.Items) != 1 {
		t.Errorf("one page: %+v, %v", res, err)
	}
}

// A query by toolkit reads toolkit.slug, and an item of another toolkit
// contradicts it; a query by auth config does not pay for the slug.
func TestListByToolkit(t *testing.T) {
	body := `{"items":[` +
		`{"id":"ca_1","status":"ACTIVE","user_id":"u","auth_config":{"id":"ac_gh"},"toolkit":{"slug":"github"}},` +
		`{"id":"ca_2","status":"ACTIVE","user_id":"u","auth_config":{"id":"ac_gm"},"toolkit":{"slug":"gmail"}}` +
		`],"next_cursor":null}`
	var raw string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw = r.URL.RawQuery
		_, _ = io.WriteString(w, body)
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	c := upstream.NewListClient(u, http.DefaultTransport, upstream.LookupSettings{}, upstream.ListOptions{})
	q := upstream.ListQuery{APIPrefix: "/api/v3.1", UserID: "u", ToolkitSlug: "github", Statuses: []string{"ACTIVE"}}
	res, err := c.List(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	if raw != "statuses=ACTIVE&toolkit_slugs=github&user_ids=u" {
		t.Fatalf("query %q", raw)
	}
	var matched []string
	for _, a := range res.Items {
		if a.Matches(q) {
			matched = append(matched, a.ID)
		}
	}
	if fmt.Sprint(matched) != "[ca_1]" || res.Items[0].Toolkit != "github" {
		t.Fatalf("items %+v, matched %v", res.Items, matched)
	}
}
