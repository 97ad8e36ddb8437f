package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestParsePage(t *testing.T) {
	var got []Item
	pg, err := parsePage([]byte(`{"items":[{"id":"ca_1","status":"ACTIVE","user_id":"u\u0031","auth_config":{"id":"ac_1","x":[1,{}]},
		"toolkit":{"slug":"github"},"account_type":"SHARED","created_at":"2026-01-02T03:04:05.123Z","extra":null},
		{"id":"ca_2","status":"INITIATED","user_id":null,"auth_config":null,"created_at":12}],
		"next_cursor":"c2","total_items":1500,"total_pages":2}`), func(it *Item) error {
		got = append(got, *it)
		return nil
	})
	if err != nil || pg.items != 2 || pg.next != "c2" || pg.total != 1500 || !pg.hasTotal {
		t.Fatalf("page %+v err %v", pg, err)
	}
	a, b := got[0], got[1]
	if a.ID != "ca_1" || a.UserID != "u1" || a.AuthConfigID != "ac_1" || a.Toolkit != "github" || a.AccountType != "SHARED" ||
		a.CreatedAt.Format("2006-01-02T15:04:05.000Z07:00") != "2026-01-02T03:04:05.123Z" {
		t.Errorf("item 1: %+v", a)
	}
	if b.ID != "ca_2" || b.Status != "INITIATED" || b.UserID != "" || b.AuthConfigID != "" || !b.CreatedAt.IsZero() {
		t.Errorf("item 2: %+v", b)
	}
	for _, bad := range []string{``, `[]`, `{"items":[]`, `{"items":[]} x`, `{"items":{}}`, `{"next_cursor":null,"total_items":1}`,
		`{"items":[],"items":[]}`, `{"items":[{"id":1}]}`, `{"items":[],"next_cursor":5}`} {
		if _, err := parsePage([]byte(bad), func(*Item) error { return nil }); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	// total_items that is not a whole number is not a count.
	if pg, err := parsePage([]byte(`{"items":[],"total_items":"12"}`), func(*Item) error { return nil }); err != nil || pg.hasTotal {
		t.Errorf("string total: %+v %v", pg, err)
	}
}

// FuzzParsePage: whatever Composio sends, the page reader never panics,
// and it accepts only what encoding/json also reads as JSON, reporting as
// many items as the document's "items" array holds.
func FuzzParsePage(f *testing.F) {
	for _, s := range []string{
		`{"items":[{"id":"ca_1","status":"ACTIVE","user_id":"u","auth_config":{"id":"ac"},"created_at":"2026-01-02T03:04:05Z"}],"next_cursor":null,"total_items":1}`,
		`{"items":[],"next_cursor":"c","total_items":0}`, `{"items":null}`, `{"Items":[1]}`, `{"items":[{"id":"\ud800"}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n := 0
		pg, err := parsePage(b, func(*Item) error { n++; return nil })
		if err != nil {
			return
		}
		if !json.Valid(b) {
			t.Fatalf("accepted invalid JSON %q", b)
		}
		if pg.items != n {
			t.Fatalf("items %d, callbacks %d", pg.items, n)
		}
		var doc map[string]json.RawMessage
		if json.Unmarshal(b, &doc) != nil {
			t.Fatalf("accepted a non-object %q", b)
		}
		var items []json.RawMessage
		if raw, ok := doc["items"]; ok && json.Unmarshal(raw, &items) == nil && len(items) != n {
			// encoding/json folds case and keeps the last of repeated
			// names: compare only when "items" is spelled exactly once.
			if exactOnce(b) {
				t.Fatalf("read %d items, encoding/json %d: %q", n, len(items), b)
			}
		}
	})
}

// exactOnce reports whether the top-level object has one member whose name
// folds to "items", spelled exactly so.
func exactOnce(b []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return false
	}
	count, exact := 0, false
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		k, _ := tok.(string)
		if strings.EqualFold(k, "items") {
			count++
			exact = k == "items"
		}
		var skip json.RawMessage
		if dec.Decode(&skip) != nil {
			return false
		}
	}
	return count == 1 && exact
}

// TestReason: every failure maps to one reason of the closed set
// (metrics.AuditErrorReasons).
func TestReason(t *testing.T) {
	for want, err := range map[string]error{
		"rate_limited": fmt.Errorf("page 3: %w", &errStatus{code: 429}),
		"upstream":     &errStatus{code: 503},
		"refused":      &errStatus{code: 401},
		"partial":      fmt.Errorf("%w: short", ErrPartial),
		"bad_answer":   fmt.Errorf("page 1: %w: x", ErrBadAnswer),
		"timeout":      fmt.Errorf("page 2: %w", context.DeadlineExceeded),
	} {
		if got := Reason(err); got != want {
			t.Errorf("Reason(%v) = %s, want %s", err, got, want)
		}
	}
	if got := Reason(errors.New("dial tcp: connection refused")); got != "upstream" {
		t.Errorf("network: %s", got)
	}
}
