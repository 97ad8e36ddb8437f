package main

import (
	"errors"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/composio-guard/composio-guard/internal/testproc"
)

// The binaries link no test code. -demo serves the fake Composio
// (internal/composiotest), and so does cmd/fakecomposio: the fake must not
// pull in testing or net/http/httptest, whose helpers live apart in
// internal/composiotest/fakeserver, for tests only. (testing would also add
// its code and its -test.* flags to the release binary.)
func TestBinariesLinkNoTestCode(t *testing.T) {
	root := testproc.RepoRoot(t)
	for _, pkg := range []string{"./cmd/proxy", "./cmd/fakecomposio"} {
		cmd := exec.Command("go", "list", "-deps", pkg)
		cmd.Dir = root
		out, err := cmd.Output()
		if err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				t.Fatalf("go list -deps %s: %v\n%s", pkg, err, ee.Stderr)
			}
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		deps := strings.Fields(string(out))
		if !slices.Contains(deps, "net/http") {
			t.Fatalf("go list -deps %s does not list net/http; output: %q", pkg, out)
		}
		for _, d := range deps {
			if d == "testing" || d == "net/http/httptest" {
				t.Errorf("%s depends on %s; find the importer with: go list -f '{{.ImportPath}}: {{.Imports}}' -deps %s | grep -w %s",
					pkg, d, pkg, d)
			}
		}
	}
}
