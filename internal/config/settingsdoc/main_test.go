package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/composio-guard/composio-guard/internal/config"
)

// TestReferenceUpToDate fails when docs/settings.md and the settings structs
// drift apart: a variable added, renamed, re-defaulted or re-documented
// without regenerating the reference.
func TestReferenceUpToDate(t *testing.T) {
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	want, err := render(root)
	if err != nil {
		t.Fatalf("rendering the reference: %v", err)
	}
	got, err := os.ReadFile(filepath.Join(root, "docs", "settings.md"))
	if err != nil {
		t.Fatalf("%v (run: go generate ./internal/config)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("docs/settings.md is stale: run `go generate ./internal/config` and commit it\n%s", firstDiff(string(got), string(want)))
	}
}

// TestEverySettingListed checks the reference against the variables the
// proxy reads, independently of the renderer: each appears exactly once.
func TestEverySettingListed(t *testing.T) {
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := render(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range config.Settings() {
		if n := strings.Count(string(b), "| `"+s.Name+"` |"); n != 1 {
			t.Errorf("%s appears %d times as a row, want 1", s.Name, n)
		}
	}
	if n := len(config.Settings()); n < 30 {
		t.Errorf("only %d settings walked; the walker lost some", n)
	}
}

func firstDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := range max(len(g), len(w)) {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return "line " + strconv.Itoa(i+1) + ":\n  file:      " + gl + "\n  generated: " + wl
		}
	}
	return ""
}
