package upstream

import (
	"errors"
	"strings"
	"testing"
)

// FuzzDecodePage: whatever the list answer holds, decoding never panics,
// and either fails with ErrBadAnswer or returns only complete items.
func FuzzDecodePage(f *testing.F) {
	for _, s := range []string{
		`{"items":[],"next_cursor":null}`,
		`{"items":[{"id":"ca_1","status":"ACTIVE","user_id":"u","auth_config":{"id":"ac"}}],"next_cursor":"c1","total_pages":2}`,
		`{"items":[{"id":"ca_1","status":"ACTIVE","user_id":"u"}]}`,
		`{"items":null}`,
		`{"items":[1]}`,
		`<html></html>`,
		`{"items":[]}{"items":[]}`,
		`{"items":[{"id":"\u0063a","status":"ACTIVE","user_id":"u","auth_config":{"id":"ac"},"id":"ca_2"}]}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		var res ListResult
		next, err := decodePage(strings.NewReader(body), &res)
		if err != nil {
			if !errors.Is(err, ErrBadAnswer) {
				t.Fatalf("error %v is not ErrBadAnswer", err)
			}
			if len(res.Items) != 0 || next != "" {
				t.Fatalf("failed decode left items %v, cursor %q", res.Items, next)
			}
			return
		}
		for _, a := range res.Items {
			if a.ID == "" || a.Status == "" || a.UserID == "" || a.AuthConfigID == "" {
				t.Fatalf("incomplete item %+v", a)
			}
		}
	})
}
