package e2e_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/composio-guard/composio-guard/internal/apierror"
	"github.com/composio-guard/composio-guard/internal/composiotest"
)

// Three ways around the guard an attacker's-eye review found (docs/security.md
// §9, ways 7 to 9). Each test made a second account before its fix.

// A session that pins its auth config under a toolkit key in other than
// lower case: which auth config Composio links on is unknown (the fake
// matches keys exactly, so it links on the toolkit's default). The guard
// used the folded pin, looked up only that auth config, and let every repeat
// through, an ACTIVE duplicate and pending ones alike. Now such a pin is not
// trusted: the toolkit's every account counts.
func TestSessionPinSpelledOtherwise(t *testing.T) {
	t.Parallel()
	f := startFake(t)
	p := startProxy(t, "enforce", f.URL)
	for _, tc := range []struct{ name, pins, toolkit string }{
		{"capitalised key", `,"auth_configs":{"GitHub":"ac_pinned"}`, "github"},
		{"two spellings", `,"auth_configs":{"github":"ac_one","GITHUB":"ac_two"}`, "github"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key, user := uniq("key"), uniq("user")
			s := createSession(t, p, "/api/v3.1", key, user, tc.pins)
			// Repeats while the first link is pending: the first replayed.
			for i := range 3 {
				if a := authorize(t, p, "/api/v3.1", key, s, tc.toolkit); a.status != http.StatusCreated {
					t.Fatalf("authorize %d: %s, want 201 (the first, then replays)", i, a)
				}
			}
			accs := f.Accounts(t, key)
			if len(accs) != 1 {
				t.Fatalf("DUPLICATE: %d accounts after three authorize() calls, want 1: %+v", len(accs), accs)
			}
			// Once it is ACTIVE, a repeat is a duplicate.
			f.SetStatus(t, accs[0].ID, composiotest.StatusActive)
			a := authorize(t, p, "/api/v3.1", key, s, tc.toolkit)
			wantEnvelope(t, a, http.StatusConflict, apierror.SlugMultipleAccounts)
			if n := len(f.Accounts(t, key)); n != 1 {
				t.Errorf("DUPLICATE: %d accounts, want 1", n)
			}
		})
	}
}

// A session link whose toolkit is not a lower-case slug: the guard looks the
// toolkit up in lower case, and whether Composio folds it too is unknown (the
// fake does not, and made a new account per call). Refused, before any
// lookup or forward.
func TestSessionLinkToolkitSpelling(t *testing.T) {
	t.Parallel()
	f := startFake(t)
	p := startProxy(t, "enforce", f.URL)
	key, user := uniq("key"), uniq("user")
	s := createSession(t, p, "/api/v3.1", key, user, `,"auth_configs":{"github":"ac_pinned"}`)
	for _, tk := range []string{"GitHub", "GITHUB"} {
		a := authorize(t, p, "/api/v3.1", key, s, tk)
		e := wantEnvelope(t, a, http.StatusBadRequest, apierror.SlugBadRequest)
		if !strings.Contains(e.Message, "lower case") {
			t.Errorf("toolkit %q: the 400 does not say why: %q", tk, e.Message)
		}
	}
	if n := len(f.RequestsOf(t, key, composiotest.RouteSessionLink)); n != 0 {
		t.Errorf("%d session links reached the fake", n)
	}
	// The slug in lower case goes through.
	if a := authorize(t, p, "/api/v3.1", key, s, "github"); a.status != http.StatusCreated {
		t.Errorf("toolkit github: %s, want 201", a)
	}
}

// A PATCH that moves a session's pin, made through one replica (or around
// the proxy), was unknown to another replica for the session cache's whole
// time: its lookup asked the old auth config and a second account was made
// on the new one. The session is now read on every guarded link.
func TestSessionPinMovedElsewhere(t *testing.T) {
	t.Parallel()
	f := startFake(t)
	a := startProxy(t, "A", f.URL)
	b := startProxy(t, "B", f.URL)
	key, user := uniq("key"), uniq("user")
	const prefix = "/api/v3.1"
	existing := f.Seed(t, composiotest.Account{Credential: key, UserID: user, AuthConfigID: "ac_new", Status: composiotest.StatusActive})
	s := createSession(t, a, prefix, key, user, `,"auth_configs":{"github":"ac_old"}`)
	if r := authorize(t, b, prefix, key, s, "github"); r.status != http.StatusCreated {
		t.Fatalf("authorize through B: %s", r)
	}
	for _, acc := range f.Accounts(t, key) {
		if acc.AuthConfigID == "ac_old" {
			f.SetStatus(t, acc.ID, "FAILED") // the user abandoned that link
		}
	}
	if r := send(t, http.MethodPatch, a.URL+prefix+"/tool_router/session/"+s,
		[]byte(`{"auth_configs":{"github":"ac_new"}}`), "x-api-key", key); r.status != http.StatusOK {
		t.Fatalf("PATCH through A: %s", r)
	}
	for _, p := range []*proxy{a, b} {
		r := authorize(t, p, prefix, key, s, "github")
		wantEnvelope(t, r, http.StatusConflict, apierror.SlugMultipleAccounts)
	}
	for _, acc := range f.Accounts(t, key) {
		if acc.AuthConfigID == "ac_new" && acc.ID != existing.ID {
			t.Errorf("DUPLICATE: %s on ac_new beside the ACTIVE %s", acc.ID, existing.ID)
		}
	}
}

// Composio has been seen to answer next_cursor null while items remain. The
// lookup stopped there: with a page of the caller's own stale INITIATED
// accounts in front, the ACTIVE account behind it was never read and a
// duplicate was linked. A short count against total_items is now refused
// (422, in every failure mode), never passed.
func TestLookupCursorEndsEarly(t *testing.T) {
	t.Parallel()
	f := startFake(t)
	for _, mode := range []string{"closed", "open"} {
		t.Run(mode, func(t *testing.T) {
			p := startProxy(t, "enforce", f.URL, "GUARD_LOOKUP_PAGE_LIMIT=20", "GUARD_FAILURE_MODE="+mode)
			key, base := uniq("key"), uniq("user")
			user := base + "_0"
			old := time.Now().Add(-48 * time.Hour)
			active := f.Seed(t, composiotest.Account{Credential: key, UserID: user, AuthConfigID: "ac_x", Status: composiotest.StatusActive, CreatedAt: old})
			f.SeedBulk(t, composiotest.Seed{Credential: key, Count: 20, Users: 1, UserPrefix: base + "_", AuthConfigs: []string{"ac_x"},
				Status: composiotest.StatusInitiated, CreatedAt: old.Add(time.Hour), Step: time.Minute})
			f.SetFault(t, composiotest.RouteList, composiotest.Fault{CursorNullAfter: 20})
			defer f.ClearFaults(t)
			r := send(t, http.MethodPost, p.URL+"/api/v3.1/connected_accounts/link", linkBody(user, "ac_x"), "x-api-key", key)
			wantEnvelope(t, r, http.StatusUnprocessableEntity, apierror.SlugCheckNotPossible)
			if n := len(f.RequestsOf(t, key, "link")); n != 0 {
				t.Errorf("DUPLICATE risk: %d links reached the fake although %s is ACTIVE behind an unread page", n, active.ID)
			}
		})
	}
}
