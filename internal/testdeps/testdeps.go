// Package testdeps owns the check every test makes before it uses a program
// from outside Go (redis-server, node and the pinned SDKs, promtool,
// kustomize, docker-compose): a missing one fails the test at once, never
// skips it, with one line naming what is missing and the make target that
// installs it. Test code only (it imports testing); `make test-fast` leaves
// out every package whose tests import it (scripts/fast-packages.sh).
package testdeps

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Install is the make target that installs every dependency (scripts/deps.sh).
const Install = "make deps"

// Command returns the path of the program name, found on PATH or else in
// one of dirs; neededBy says which tests need it. A missing program fails
// the test at once.
func Command(t testing.TB, name, neededBy string, dirs ...string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	where := "on PATH"
	if len(dirs) > 0 {
		where += " nor in " + strings.Join(dirs, ", ")
	}
	t.Fatalf("missing dependency for %s: %s, not found %s: run `%s`", neededBy, name, where, Install)
	return ""
}

// File fails the test at once when path does not exist; what names the
// dependency it belongs to (e.g. "the pinned SDKs").
func File(t testing.TB, path, what, neededBy string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("missing dependency for %s: %s, not found at %s: run `%s`", neededBy, what, path, Install)
	}
}
