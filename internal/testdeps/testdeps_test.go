package testdeps_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/composio-guard/composio-guard/internal/testdeps"
)

// recorder is a testing.TB that records a Fatalf instead of stopping.
type recorder struct {
	testing.TB
	fatal []string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.fatal = append(r.fatal, strings.TrimSpace(fmt.Sprintf(format, args...)))
}

func wantOneLine(t *testing.T, r *recorder, names ...string) {
	t.Helper()
	if len(r.fatal) != 1 {
		t.Fatalf("%d failures, want 1: %q", len(r.fatal), r.fatal)
	}
	msg := r.fatal[0]
	if strings.Contains(msg, "\n") {
		t.Errorf("failure is not one line: %q", msg)
	}
	for _, n := range append(names, "`make deps`") {
		if !strings.Contains(msg, n) {
			t.Errorf("failure %q does not name %q", msg, n)
		}
	}
}

func TestCommand(t *testing.T) {
	if got := testdeps.Command(t, "go", "this test"); got == "" {
		t.Fatal("go not found on PATH")
	}

	r := &recorder{TB: t}
	if got := testdeps.Command(r, "composio-guard-no-such-program", "the X suite"); got != "" {
		t.Errorf("missing program: got path %q", got)
	}
	wantOneLine(t, r, "composio-guard-no-such-program", "the X suite")

	// A tool installed outside PATH (deploy/tools.sh's cache) is found
	// there, only when executable.
	dir := t.TempDir()
	exe := filepath.Join(dir, "cg-tool")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got := testdeps.Command(t, "cg-tool", "x", t.TempDir(), dir); got != exe {
		t.Errorf("tool in a dir: %q, want %q", got, exe)
	}
	if err := os.WriteFile(filepath.Join(dir, "cg-data"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r = &recorder{TB: t}
	testdeps.Command(r, "cg-data", "x", dir)
	wantOneLine(t, r, "cg-data")
}

func TestFile(t *testing.T) {
	testdeps.File(t, t.TempDir(), "a folder", "x")
	r := &recorder{TB: t}
	testdeps.File(r, filepath.Join(t.TempDir(), "nope"), "the pinned SDKs", "the SDK suite")
	wantOneLine(t, r, "the pinned SDKs", "the SDK suite")
}

// The fast lane holds the unit tests and test/e2e, and none of the suites
// that need a program beyond Go.
func TestFastPackages(t *testing.T) {
	root := filepath.Join("..", "..")
	cmd := exec.Command("bash", filepath.Join(root, "scripts", "fast-packages.sh"))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("scripts/fast-packages.sh: %v", err)
	}
	const mod = "github.com/composio-guard/composio-guard/"
	got := map[string]bool{}
	for _, p := range strings.Fields(string(out)) {
		got[strings.TrimPrefix(p, mod)] = true
	}
	for _, p := range []string{"test/e2e", "internal/intercept", "internal/upstream", "internal/server", "cmd/proxy", "internal/composiotest", "internal/testdeps", "internal/lock", "internal/lock/locktest"} {
		if !got[p] {
			t.Errorf("fast lane lacks %s: %s", p, out)
		}
	}
	for _, p := range []string{"test/sdk", "test/replicas", "test/deploy", "internal/lock/redisserver", "test/soak", "test/faults", "test/hostile"} {
		if got[p] {
			t.Errorf("fast lane holds %s, which needs more than Go or minutes", p)
		}
	}
}
