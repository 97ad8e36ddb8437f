package audit_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/composio-guard/composio-guard/internal/audit"
	"github.com/composio-guard/composio-guard/internal/composiotest"
	"github.com/composio-guard/composio-guard/internal/composiotest/fakeserver"
)

// secretKey is the project key of every test: no output may ever hold it.
const secretKey = "sk_live_SECRETVALUE_0123456789"

// result is one run of the command as a user sees it.
type result struct {
	code           int
	stdout, stderr string
}

// env builds a Getenv from pairs.
func env(pairs ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(pairs); i += 2 {
		m[pairs[i]] = pairs[i+1]
	}
	return func(k string) string { return m[k] }
}

// run runs `composio-guard audit args...` against the fake at srv with the
// project key secretKey, and checks that no output holds the key.
func run(t *testing.T, srv *httptest.Server, args ...string) result {
	t.Helper()
	return runEnv(t, env(audit.EnvAPIKey, secretKey, audit.EnvUpstream, srv.URL), args...)
}

func runEnv(t *testing.T, getenv func(string) string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := audit.Main(context.Background(), audit.Invocation{
		Args: args, Getenv: getenv, Stdout: &out, Stderr: &errb, Version: "test",
	})
	r := result{code: code, stdout: out.String(), stderr: errb.String()}
	for _, s := range []string{r.stdout, r.stderr} {
		if strings.Contains(s, "SECRETVALUE") || strings.Contains(s, "hunter2") {
			t.Fatalf("the credential is in the output:\n%s", s)
		}
	}
	return r
}

// jsonOut is the --format json document.
type jsonOut struct {
	Groups  []audit.Group `json:"groups"`
	Summary audit.Summary `json:"summary"`
}

func parseJSON(t *testing.T, r result) jsonOut {
	t.Helper()
	var out jsonOut
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&out); err != nil {
		t.Fatalf("json output: %v\n%s\nstderr: %s", err, r.stdout, r.stderr)
	}
	return out
}

func parseCSV(t *testing.T, s string) [][]string {
	t.Helper()
	rows, err := csv.NewReader(strings.NewReader(s)).ReadAll()
	if err != nil {
		t.Fatalf("csv output: %v\n%s", err, s)
	}
	return rows
}

// newFake starts a fake Composio.
func newFake(t *testing.T, opts ...composiotest.Option) (*composiotest.Fake, *httptest.Server) {
	t.Helper()
	return fakeserver.New(t, opts...)
}

// acct seeds one account of the test project.
func acct(f *composiotest.Fake, user, cfg, status string, age time.Duration, opts ...func(*composiotest.Account)) composiotest.Account {
	a := composiotest.Account{Credential: secretKey, UserID: user, AuthConfigID: cfg, Status: status,
		CreatedAt: time.Now().Add(-age)}
	for _, o := range opts {
		o(&a)
	}
	return f.AddAccount(a)
}

func shared(a *composiotest.Account) { a.AccountType = composiotest.AccountShared }

// ids lists the account ids of a group.
func ids(g audit.Group) []string {
	out := make([]string, len(g.Accounts))
	for i, a := range g.Accounts {
		out[i] = a.ID
	}
	return out
}
