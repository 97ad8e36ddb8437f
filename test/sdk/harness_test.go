package sdk_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/composio-guard/composio-guard/internal/apierror"
	"github.com/composio-guard/composio-guard/internal/composiotest"
	"github.com/composio-guard/composio-guard/internal/testdeps"
	"github.com/composio-guard/composio-guard/internal/testproc"
)

// versions are the pinned SDKs in package.json: 0.8.0 has no client-side
// guard on link(), 0.8.1 is the first with it, 0.21.0 speaks /api/v3.1.
var versions = []string{"0.8.0", "0.8.1", "0.21.0"}

// sdkGuards says whether the version's link() lists ACTIVE accounts itself
// and refuses before any POST.
func sdkGuards(version string) bool { return version != "0.8.0" }

// apiPrefix is the path prefix the version calls.
func apiPrefix(version string) string {
	if version == "0.21.0" {
		return "/api/v3.1"
	}
	return "/api/v3"
}

// stack is one fake Composio with one proxy in front of it.
type stack struct {
	fake  *testproc.Fake
	proxy *testproc.Proxy
}

// sdkDir is this folder: the Node project with sdk.mjs and node_modules.
func sdkDir(t *testing.T) string {
	t.Helper()
	return filepath.Join(testproc.RepoRoot(t), "test", "sdk")
}

// requireNode fails at once (never skips: CI must run this suite) when node
// or the pinned SDKs are missing.
func requireNode(t *testing.T) {
	t.Helper()
	testdeps.Command(t, "node", "the SDK suite test/sdk")
	for _, pkg := range []string{"core080", "core081", "core0210"} {
		testdeps.File(t, filepath.Join(sdkDir(t), "node_modules", pkg, "package.json"),
			"the pinned SDKs (npm ci)", "the SDK suite test/sdk")
	}
}

// startStack builds and starts the fake and the proxy; proxyEnv adds GUARD_*
// settings. Both processes die when the test ends.
func startStack(t *testing.T, proxyEnv ...string) *stack {
	t.Helper()
	fake := testproc.StartFake(t)
	return &stack{fake: fake, proxy: testproc.StartProxy(t, fake.URL, proxyEnv...)}
}

// call is one SDK call for sdk.mjs (see its header comment).
type call struct {
	Call          string `json:"call"`
	UserID        string `json:"user_id,omitempty"`
	AuthConfigID  string `json:"auth_config_id,omitempty"`
	ID            string `json:"id,omitempty"`
	OptIn         bool   `json:"opt_in,omitempty"`
	AllowMultiple bool   `json:"allow_multiple,omitempty"`
	// Session calls: the tier asked for (nil: no workbench config at all),
	// and clear for a PATCH with workbench: null.
	SandboxSize *string `json:"sandbox_size,omitempty"`
	Clear       bool    `json:"clear,omitempty"`
	// session_create: the session's multi-account setting (nil: none sent).
	MultiAccount *multiAccount `json:"multi_account,omitempty"`
	// session_authorize: the toolkit; ID is the session (empty: the one the
	// last session_create of the same run made, as that call returned it, or
	// read again with composio.use(its id) when Reopen is set).
	Toolkit string `json:"toolkit,omitempty"`
	Reopen  bool   `json:"reopen,omitempty"`
	// Pause: sdk.mjs waits for a line on stdin after printing this call's
	// line (set by runSteps, for a step with a then).
	Pause bool `json:"pause,omitempty"`
}

// multiAccount is the SDK's multiAccount option, in the wire's names.
type multiAccount struct {
	Enable bool `json:"enable"`
	Max    int  `json:"max_accounts_per_toolkit,omitempty"`
}

// result is one line sdk.mjs printed: what the caller of the SDK could read.
type result struct {
	Call               string            `json:"call"`
	OK                 bool              `json:"ok"`
	ConnectedAccountID string            `json:"connected_account_id"`
	RedirectURL        string            `json:"redirect_url"`
	ErrorName          string            `json:"error_name"`
	CauseName          string            `json:"cause_name"`
	Message            string            `json:"message"`
	Status             int               `json:"status"`
	Body               json.RawMessage   `json:"body"`
	Headers            map[string]string `json:"headers"`
	Items              []listedAccount   `json:"items"`
	Account            *listedAccount    `json:"account"`
	Sent               []string          `json:"sent"`
	SentBodies         []*string         `json:"sent_bodies"`
	GuardHeaders       []*string         `json:"guard_headers"` // X-Composio-Guard of each answer, parallel to Sent
	SessionID          string            `json:"session_id"`
	SandboxSize        string            `json:"sandbox_size"`
	BlockedEgress      []string          `json:"blocked_egress"`

	line string // as printed, for the test log
}

type listedAccount struct {
	ID           string `json:"id"`
	Status       string `json:"status"`
	AuthConfigID string `json:"auth_config_id"`
}

// envelope decodes the error body the caller holds; it fails the test when
// the body is not Composio's envelope.
func (r result) envelope(t *testing.T) apierror.Error {
	t.Helper()
	var env struct {
		Error *apierror.Error `json:"error"`
	}
	if err := json.Unmarshal(r.Body, &env); err != nil || env.Error == nil {
		t.Fatalf("%s: error body is not Composio's envelope (%v): %s", r.Call, err, r.Body)
	}
	return *env.Error
}

// posts counts the POSTs the SDK sent for this call whose path ends in suffix.
func (r result) posts(suffix string) int {
	n := 0
	for _, s := range r.Sent {
		if strings.HasPrefix(s, "POST ") && strings.HasSuffix(s, suffix) {
			n++
		}
	}
	return n
}

// runSDK runs sdk.mjs for one version with key as its API key and returns one
// result per call. No request may have been aimed off the machine.
func runSDK(t *testing.T, s *stack, version, key string, calls ...call) []result {
	t.Helper()
	steps := make([]step, len(calls))
	for i, c := range calls {
		steps[i] = step{call: c}
	}
	return runSteps(t, s, version, key, steps...)
}

// step is one call of a run; when then is set, sdk.mjs waits after printing
// the call's line until then has run (e.g. to change what the fake holds
// between two calls of the same SDK process: one node start per case keeps
// the suite fast).
type step struct {
	call call
	then func(r result)
}

// runSteps is runSDK with steps: each line is read as it is printed, and a
// step's then runs before the next call is made.
func runSteps(t *testing.T, s *stack, version, key string, steps ...step) []result {
	t.Helper()
	calls := make([]call, len(steps))
	for i, st := range steps {
		calls[i] = st.call
		calls[i].Pause = st.then != nil
	}
	arg, err := json.Marshal(calls)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "sdk.mjs", version, string(arg))
	cmd.Dir = sdkDir(t)
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + t.TempDir(), // the SDK reads ~/.composio: start empty
		"TELEMETRY_DISABLED=true",
		"SDK_BASE_URL=" + s.proxy.URL,
		"SDK_API_KEY=" + key,
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("node sdk.mjs %s: %v", version, err)
	}
	waited := false
	defer func() { // on a failure in a then: the process ends with the test
		if !waited {
			cancel()
			_ = cmd.Wait()
		}
	}()
	var printed strings.Builder
	var out []result
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for sc.Scan() {
		printed.WriteString(sc.Text() + "\n")
		r := result{line: sc.Text()}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("sdk.mjs printed a line that is not JSON: %q", sc.Text())
		}
		i := len(out)
		out = append(out, r)
		if i < len(steps) {
			t.Log(r.line)
			if steps[i].then != nil {
				steps[i].then(r)
				if _, err := io.WriteString(stdin, "next\n"); err != nil {
					t.Fatalf("node sdk.mjs %s: resuming after call %d: %v\nstderr:\n%s", version, i, err, stderr.String())
				}
			}
		}
	}
	_ = stdin.Close()
	err = cmd.Wait()
	waited = true
	if err != nil {
		t.Fatalf("node sdk.mjs %s: %v\nstdout:\n%s\nstderr:\n%s", version, err, printed.String(), stderr.String())
	}
	if len(out) != len(calls)+1 || out[len(out)-1].Call != "done" {
		t.Fatalf("sdk.mjs printed %d lines for %d calls:\n%s\nstderr:\n%s", len(out), len(calls), printed.String(), stderr.String())
	}
	if b := out[len(out)-1].BlockedEgress; len(b) > 0 {
		t.Errorf("the SDK tried to reach the network off this machine: %v", b)
	}
	return out[:len(calls)]
}

// seed stores an account for (key, user, authConfig) with status and returns it.
func seed(t *testing.T, s *stack, key, user, authConfig, status string) composiotest.Account {
	t.Helper()
	return s.fake.Seed(t, composiotest.Account{Credential: key, UserID: user, AuthConfigID: authConfig, Status: status})
}

// accounts is what the upstream holds for key, oldest first.
func accounts(t *testing.T, s *stack, key string) []composiotest.Account {
	t.Helper()
	return s.fake.Accounts(t, key)
}

// ids lists the accounts' ids and statuses, for failure messages.
func ids(as []composiotest.Account) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.ID + ":" + a.Status
	}
	return out
}

// requests is what reached the upstream with key as x-api-key.
func requests(t *testing.T, s *stack, key string) []composiotest.Request {
	t.Helper()
	return s.fake.RequestsOf(t, key, "")
}

// count is how many requests of method on route reached the upstream with key.
func count(reqs []composiotest.Request, method, route string) int {
	n := 0
	for _, r := range reqs {
		if r.Method == method && r.Route == route {
			n++
		}
	}
	return n
}

// keyFor makes a distinct test credential, hence a distinct fake project, per
// case and version, so parallel cases never see each other's accounts.
func keyFor(caseName, version string) string {
	return fmt.Sprintf("test_key_%s_%s", caseName, strings.ReplaceAll(version, ".", "_"))
}
