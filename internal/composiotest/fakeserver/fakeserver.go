// Package fakeserver serves the fake Composio (package composiotest) on a
// loopback httptest server for a test:
//
//	fake, srv := fakeserver.New(t)
//	fake.AddAccount(composiotest.Account{Credential: "key_1", UserID: "u1", AuthConfigID: "ac_1"})
//	// point the code under test at srv.URL, then look at fake.Requests()
//
// It is a package of its own so that what links the fake outside tests
// (cmd/proxy -demo, cmd/fakecomposio) imports neither testing nor
// net/http/httptest: package composiotest must import neither.
package fakeserver

import (
	"net/http/httptest"
	"testing"

	"github.com/composio-guard/composio-guard/internal/composiotest"
)

// New starts a fake on a loopback httptest server and stops both when the
// test ends (releasing hung requests first, so the server can close).
func New(t testing.TB, opts ...composiotest.Option) (*composiotest.Fake, *httptest.Server) {
	t.Helper()
	f := composiotest.New(opts...)
	srv := httptest.NewServer(f)
	t.Cleanup(func() {
		f.Close()
		srv.Close()
	})
	return f, srv
}
