package composiotest_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

type answer struct {
	status int
	header http.Header
	raw    []byte
	json   map[string]any
}

// call sends one request; hdr holds header pairs ("x-api-key", "k1", ...).
func call(t *testing.T, base, method, path, body string, hdr ...string) answer {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: read: %v", method, path, err)
	}
	a := answer{status: res.StatusCode, header: res.Header, raw: raw}
	_ = json.Unmarshal(raw, &a.json)
	return a
}

// errSlug returns error.slug of an envelope ("" if the body is not one).
func (a answer) errSlug() string {
	e, _ := a.json["error"].(map[string]any)
	s, _ := e["slug"].(string)
	return s
}

func (a answer) str(key string) string {
	s, _ := a.json[key].(string)
	return s
}

// ids returns the ids of a list answer's items, in order.
func (a answer) ids() []string {
	items, _ := a.json["items"].([]any)
	out := []string{}
	for _, it := range items {
		m, _ := it.(map[string]any)
		id, _ := m["id"].(string)
		out = append(out, id)
	}
	return out
}
