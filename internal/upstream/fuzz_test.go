package upstream

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/composio-guard/composio-guard/internal/jsonread"
)

// FuzzDecodePage: whatever the list answer holds, decoding never panics,
// and either fails with ErrBadAnswer (not the expected JSON) or
// ErrUnknownItem (an item without id or status), never both, or returns only
// items with an id and a status.
func FuzzDecodePage(f *testing.F) {
	for _, s := range []string{
		`{"items":[],"next_cursor":null}`,
		`{"items":[{"id":"ca_1","status":"ACTIVE","user_id":"u","auth_config":{"id":"ac"}}],"next_cursor":"c1","total_pages":2}`,
		`{"items":[{"id":"ca_1","status":"ACTIVE","user_id":"u"}]}`,
		`{"items":[{"id":"ca_1","user_id":"u","auth_config":{"id":"ac"}}]}`,
		`{"items":[{"id":"ca_1","status":"ACTIVE","created_at":"2026-12-04T10:00:00.000Z"}]}`,
		`{"items":null}`,
		`{"items":[1]}`,
		`{"items":[null]}`,
		`<html></html>`,
		`{"items":[]}{"items":[]}`,
		`{"items":[{"id":"\u0063a","status":"ACTIVE","user_id":"u","auth_config":{"id":"ac"},"id":"ca_2"}]}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		var res ListResult
		next, err := decodePage(strings.NewReader(body), &res, false)
		if err != nil {
			if errors.Is(err, ErrBadAnswer) == errors.Is(err, ErrUnknownItem) {
				t.Fatalf("error %v is not exactly one of ErrBadAnswer and ErrUnknownItem", err)
			}
			if len(res.Items) != 0 || next != "" {
				t.Fatalf("failed decode left items %v, cursor %q", res.Items, next)
			}
			return
		}
		for _, a := range res.Items {
			if a.ID == "" || a.Status == "" {
				t.Fatalf("incomplete item %+v", a)
			}
		}
	})
}

// FuzzListParserMatches holds the hand-written list parser to encoding/json:
// on every input both accept or both refuse, for the same reason (not the
// expected JSON, or an item without id or status), and they read the same
// items, created_at included, and cursor. Inputs where the parser is stricter
// on purpose (see listjson.go: case-folded member names, bad UTF-8, deep
// nesting) are left out.
func FuzzListParserMatches(f *testing.F) {
	for _, s := range []string{
		`{"items":[],"next_cursor":null}`,
		`{"items":[{"id":"ca_1","status":"ACTIVE","user_id":"u","auth_config":{"id":"ac","x":[1,2.5e3,-0.1]},"toolkit":{"slug":"github"}}],"next_cursor":"c1","total_pages":2}`,
		` { "next_cursor" : "c\u00e9" , "items" : [ { "id" : "ca_\"1\"" , "status":"INITIATED","user_id":"u\/1","auth_config":{"id":"ac"}} ] } `,
		`{"items":[{"id":"a","status":"ACTIVE","user_id":"u","auth_config":{"id":"ac"}}],"items":[]}`,
		`{"items":[{"id":"a","status":"ACTIVE","user_id":"u","auth_config":null}]}`,
		`{"items":[{"id":"a","status":"ACTIVE"}]}`,
		`{"items":[{"id":"a","status":"ACTIVE","user_id":5}]}`,
		`{"items":[{"id":"a","status":"ACTIVE","auth_config":"ac"}]}`,
		`{"items":[{"id":"a"}],"next_cursor":5}`,
		`{"items":[{"status":"ACTIVE"},{"id":"b","status":"ACTIVE","user_id":[]}]}`,
		`{"items":[null]}`,
		`{"items":[{"id":1}]}`,
		`{"items":[{"id":"a","status":"ACTIVE","created_at":"2026-12-04T10:00:00.000Z"}]}`,
		`{"items":[{"id":"a","status":"ACTIVE","created_at":"2026-12-04T12:00:00.123+02:00","created_at":"2026-12-04T10:00:00Z"}]}`,
		`{"items":[{"id":"a","status":"ACTIVE","created_at":"2026-12-04T10:00:00Z","created_at":5}]}`,
		`{"items":[{"id":"a","status":"ACTIVE","created_at":"2026\u002d12-04T10:00:00Z"}]}`,
		`{"items":[{"id":"a","status":"ACTIVE","created_at":"2026-12-04T1:00:00Z"}]}`,
		`{"items":[{"id":"a","status":"ACTIVE","created_at":"2026-12-04T10:00:00+24:00"}]}`,
		`{"items":[{"id":"a","status":"ACTIVE","created_at":null}]}`,
		`{"items":[{"id":"a","status":"ACTIVE","created_at":{"x":"2026-12-04T10:00:00Z"}}]}`,
		`{"items":[],"next_cursor":5}`,
		`{"items":[],"next_cursor":""}`,
		`{"items":[],"n\u0065xt_cursor":"c"}`,
		`{"items":[],"x":[true,false,null,{"a":{}},"\ud83d\ude00"]}`,
		`{"items":[],"x":01}`,
		`{"items":[],"x":"\x01"}`,
		`{"items":[],}`,
		`{"items":[] "x":1}`,
		`{"items":[]}x`,
		`null`,
		`[]`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		if !utf8.ValidString(body) || strings.Count(body, "[")+strings.Count(body, "{") > jsonread.MaxDepth {
			return
		}
		want, wantNext, wantErr := referenceListPage(body)
		if wantErr == errCaseFolded {
			return
		}
		var res ListResult
		next, err := decodePage(strings.NewReader(body), &res, false, StatusActive, StatusInitiated, "u", "ac")
		if (err != nil) != (wantErr != nil) || errors.Is(err, ErrUnknownItem) != (wantErr == errRefUnknownItem) {
			t.Fatalf("parser error %v, encoding/json error %v", err, wantErr)
		}
		if err != nil {
			return
		}
		if next != wantNext || !slices.Equal(res.Items, want) {
			t.Fatalf("parser read %v %q, encoding/json %v %q", res.Items, next, want, wantNext)
		}
	})
}

var (
	errCaseFolded     = errors.New("a member name differs from a read one only in case")
	errRefUnknownItem = errors.New("an item lacks id or status")
)

// referenceListPage reads a list answer with encoding/json, by the rules of
// decodePage, with exact member names: every member it reads must have its
// type (not the expected JSON otherwise), then every item needs an id and a
// status (errRefUnknownItem otherwise). created_at is read as encoding/json
// reads a time.Time, and is the zero time when that fails.
func referenceListPage(body string) ([]Account, string, error) {
	var doc any
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		return nil, "", err
	}
	top, ok := doc.(map[string]any)
	if !ok {
		return nil, "", errors.New("not an object")
	}
	read := []string{"items", "next_cursor", "id", "status", "user_id", "auth_config", "created_at"}
	var folded func(v any) bool
	folded = func(v any) bool {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				for _, name := range read {
					if k != name && strings.EqualFold(k, name) {
						return true
					}
				}
				if folded(e) {
					return true
				}
			}
		case []any:
			return slices.ContainsFunc(v, folded)
		}
		return false
	}
	if folded(doc) {
		return nil, "", errCaseFolded
	}
	str := func(m map[string]any, k string) (string, bool) {
		switch v := m[k].(type) {
		case nil:
			return "", true
		case string:
			return v, true
		}
		return "", false
	}
	arr, ok := top["items"].([]any)
	if !ok {
		return nil, "", errors.New("no items array")
	}
	createdAt, err := referenceCreatedAt(body)
	if err != nil {
		return nil, "", err
	}
	var items []Account
	for i, e := range arr {
		var a Account
		if e != nil { // a null item is an empty one
			m, ok := e.(map[string]any)
			if !ok {
				return nil, "", errors.New("item is not an object")
			}
			var oks [4]bool
			a.ID, oks[0] = str(m, "id")
			a.Status, oks[1] = str(m, "status")
			a.UserID, oks[2] = str(m, "user_id")
			oks[3] = true
			switch ac := m["auth_config"].(type) {
			case nil:
			case map[string]any:
				a.AuthConfigID, oks[3] = str(ac, "id")
			default:
				oks[3] = false
			}
			if oks != [4]bool{true, true, true, true} {
				return nil, "", errors.New("a member has the wrong type")
			}
			a.CreatedAt = createdAt[i]
		}
		items = append(items, a)
	}
	next, ok := str(top, "next_cursor")
	if !ok {
		return nil, "", errors.New("next_cursor is not a string")
	}
	for _, a := range items {
		if a.ID == "" || a.Status == "" {
			return nil, "", errRefUnknownItem
		}
	}
	return items, next, nil
}

// referenceCreatedAt reads each item's created_at as encoding/json reads a
// time.Time member (Time.UnmarshalJSON: strict RFC 3339, escapes not
// decoded), in UTC; zero where that fails. Raw messages keep the bytes the
// time is read from.
func referenceCreatedAt(body string) ([]time.Time, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal([]byte(body), &top); err != nil {
		return nil, err
	}
	var items []map[string]json.RawMessage
	if err := json.Unmarshal(top["items"], &items); err != nil {
		return nil, err
	}
	out := make([]time.Time, len(items))
	for i, m := range items {
		raw, ok := m["created_at"]
		if !ok {
			continue
		}
		var t time.Time
		if json.Unmarshal(raw, &t) != nil {
			t = time.Time{}
		}
		out[i] = t.UTC()
	}
	return out, nil
}
