package testproc

import (
	"testing"

	"github.com/composio-guard/composio-guard/internal/composiotest"
	"github.com/composio-guard/composio-guard/internal/testproc/fakectl"
)

// Fake is a running fake Composio binary (cmd/fakecomposio) and its control
// API. Its methods are fakectl's calls, failing the test on error.
type Fake struct {
	*Proc
	URL string // http://addr
	Ctl *fakectl.Client
}

// StartFake runs the fake Composio binary on a loopback port, built with
// buildFlags (e.g. -race); it stops when the test ends.
func StartFake(t testing.TB, buildFlags ...string) *Fake {
	t.Helper()
	p := Start(t, Build(t, "./cmd/fakecomposio", buildFlags...), nil)
	if p.Addr("addr") == "" {
		t.Fatalf("fake: listening line without addr: %v", p.Fields)
	}
	u := "http://" + p.Addr("addr")
	return &Fake{Proc: p, URL: u, Ctl: fakectl.New(u)}
}

// Seed adds an account (ACTIVE unless a.Status says otherwise) and returns it.
func (f *Fake) Seed(t testing.TB, a composiotest.Account) composiotest.Account {
	t.Helper()
	out, err := f.Ctl.AddAccount(a)
	check(t, err)
	return out
}

// SeedBulk adds many accounts at once (see composiotest.Seed).
func (f *Fake) SeedBulk(t testing.TB, s composiotest.Seed) {
	t.Helper()
	n, err := f.Ctl.Seed(s)
	check(t, err)
	if n != s.Count {
		t.Fatalf("fake seed: added %d accounts, want %d", n, s.Count)
	}
}

// SetStatus sets an account's status.
func (f *Fake) SetStatus(t testing.TB, id, status string) {
	t.Helper()
	_, err := f.Ctl.SetStatus(id, status)
	check(t, err)
}

// Accounts returns the accounts of one project (credential), oldest first.
func (f *Fake) Accounts(t testing.TB, credential string) []composiotest.Account {
	t.Helper()
	out, err := f.Ctl.Accounts(credential)
	check(t, err)
	return out
}

// Requests returns the request log, oldest first, only those of method and
// route when they are set.
func (f *Fake) Requests(t testing.TB, method, route string) []composiotest.Request {
	t.Helper()
	out, err := f.Ctl.Requests(method, route)
	check(t, err)
	return out
}

// RequestsOf returns the requests that carried credential in any credential
// header, only those of route when it is set.
func (f *Fake) RequestsOf(t testing.TB, credential, route string) []composiotest.Request {
	t.Helper()
	var out []composiotest.Request
	for _, q := range f.Requests(t, "", route) {
		for _, h := range []string{"X-Api-Key", "X-User-Api-Key", "X-Org-Api-Key"} {
			if q.Header.Get(h) == credential {
				out = append(out, q)
				break
			}
		}
	}
	return out
}

// Sessions returns the Tool Router sessions, oldest first.
func (f *Fake) Sessions(t testing.TB) []composiotest.Session {
	t.Helper()
	out, err := f.Ctl.Sessions()
	check(t, err)
	return out
}

// SeedSession puts a Tool Router session in place and returns it.
func (f *Fake) SeedSession(t testing.TB, seed composiotest.SessionSeed) composiotest.Session {
	t.Helper()
	out, err := f.Ctl.AddSession(seed)
	check(t, err)
	return out
}

// SetFault makes the fake misbehave on route.
func (f *Fake) SetFault(t testing.TB, route string, fl composiotest.Fault) {
	t.Helper()
	check(t, f.Ctl.SetFault(route, fl))
}

// ClearFaults clears every fault.
func (f *Fake) ClearFaults(t testing.TB) {
	t.Helper()
	check(t, f.Ctl.ClearFaults())
}

func check(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
