package upstream

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
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

// FuzzListParserMatches holds the hand-written list parser to encoding/json:
// on every input both accept or both refuse, and they read the same items
// and cursor. Inputs where the parser is stricter on purpose (see
// listjson.go: case-folded member names, bad UTF-8, deep nesting) are left out.
func FuzzListParserMatches(f *testing.F) {
	for _, s := range []string{
		`{"items":[],"next_cursor":null}`,
		`{"items":[{"id":"ca_1","status":"ACTIVE","user_id":"u","auth_config":{"id":"ac","x":[1,2.5e3,-0.1]},"toolkit":{"slug":"github"}}],"next_cursor":"c1","total_pages":2}`,
		` { "next_cursor" : "c\u00e9" , "items" : [ { "id" : "ca_\"1\"" , "status":"INITIATED","user_id":"u\/1","auth_config":{"id":"ac"}} ] } `,
		`{"items":[{"id":"a","status":"ACTIVE","user_id":"u","auth_config":{"id":"ac"}}],"items":[]}`,
		`{"items":[{"id":"a","status":"ACTIVE","user_id":"u","auth_config":null}]}`,
		`{"items":[null]}`,
		`{"items":[{"id":1}]}`,
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
		if !utf8.ValidString(body) || strings.Count(body, "[")+strings.Count(body, "{") > maxDepth {
			return
		}
		want, wantNext, wantErr := referenceListPage(body)
		if wantErr == errCaseFolded {
			return
		}
		var res ListResult
		next, err := decodePage(strings.NewReader(body), &res, StatusActive, StatusInitiated, "u", "ac")
		if (err != nil) != (wantErr != nil) {
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

var errCaseFolded = errors.New("a member name differs from a read one only in case")

// referenceListPage reads a list answer with encoding/json, by the rules of
// decodePage, with exact member names.
func referenceListPage(body string) ([]Account, string, error) {
	var doc any
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		return nil, "", err
	}
	top, ok := doc.(map[string]any)
	if !ok {
		return nil, "", errors.New("not an object")
	}
	read := []string{"items", "next_cursor", "id", "status", "user_id", "auth_config"}
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
	var items []Account
	for _, e := range arr {
		m, ok := e.(map[string]any)
		if !ok {
			return nil, "", errors.New("item is not an object")
		}
		var a Account
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
		if oks != [4]bool{true, true, true, true} || a.ID == "" || a.Status == "" || a.UserID == "" || a.AuthConfigID == "" {
			return nil, "", errors.New("incomplete item")
		}
		items = append(items, a)
	}
	next, ok := str(top, "next_cursor")
	if !ok {
		return nil, "", errors.New("next_cursor is not a string")
	}
	return items, next, nil
}
