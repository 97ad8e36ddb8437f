package e2e_test

import (
	"bytes"
	"net/http"
	"sync"
	"testing"

	"github.com/composio-guard/composio-guard/internal/apierror"
	"github.com/composio-guard/composio-guard/internal/composiotest"
)

const racers = 50

// testRace: 50 concurrent links for one user create exactly one account; the
// others get the first answer replayed (or, under reject, a LinkPending 409).
func testRace(t *testing.T, w *world) {
	for _, c := range []struct {
		name string
		p    *proxy
	}{
		{"replay", w.enforce},
		{"reject", w.reject},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			cred, user, ac := uniq("key"), uniq("user"), uniq("ac")
			answers := make([]answer, racers)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range racers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					req, err := http.NewRequest(http.MethodPost, c.p.URL+"/api/v3/connected_accounts/link", bytes.NewReader(linkBody(user, ac)))
					if err != nil {
						t.Error(err)
						return
					}
					if answers[i], err = tryDo(req, "x-api-key", cred); err != nil {
						t.Error(err)
					}
				}()
			}
			close(start)
			wg.Wait()
			if t.Failed() {
				return
			}

			accts := w.fake.Accounts(t, cred)
			if len(accts) != 1 {
				t.Fatalf("accounts at the fake after %d concurrent links = %d, want exactly 1", racers, len(accts))
			}
			if n := len(posts(t, w.fake, cred)); n != 1 {
				t.Errorf("link POSTs at the fake = %d, want 1", n)
			}
			var firsts, replays, pendings int
			var first linkAnswer
			for _, a := range answers {
				if a.status == http.StatusCreated && a.header.Get(apierror.HeaderGuard) == "" {
					firsts++
					first = decodeLink(t, a)
				}
			}
			if firsts != 1 {
				t.Fatalf("answers forwarded from upstream = %d, want 1", firsts)
			}
			if first.ConnectedAccountID != accts[0].ID {
				t.Errorf("forwarded answer names %s, the fake holds %s", first.ConnectedAccountID, accts[0].ID)
			}
			for i, a := range answers {
				switch {
				case a.status == http.StatusCreated && a.header.Get(apierror.HeaderGuard) == "":
				case a.status == http.StatusCreated && a.header.Get(apierror.HeaderGuard) == "replayed":
					replays++
					if l := decodeLink(t, a); l != first {
						t.Errorf("answer %d replayed %+v, want the first answer %+v", i, l, first)
					}
				case a.status == http.StatusConflict:
					pendings++
					e := wantEnvelope(t, a, http.StatusConflict, apierror.SlugLinkPending)
					if a.header.Get(apierror.HeaderShouldRetry) != "false" {
						t.Errorf("answer %d: LinkPending without x-should-retry: false", i)
					}
					if len(e.ExistingAccountIDs) != 1 || e.ExistingAccountIDs[0] != first.ConnectedAccountID {
						t.Errorf("answer %d: LinkPending names %v, want [%s]", i, e.ExistingAccountIDs, first.ConnectedAccountID)
					}
				default:
					t.Errorf("answer %d: %s, want 201 (replayed) or 409 LinkPending", i, a)
				}
			}
			t.Logf("%s: 1 forwarded, %d replayed, %d LinkPending", c.name, replays, pendings)
			if c.name == "replay" && replays != racers-1 {
				t.Errorf("replayed answers = %d, want %d", replays, racers-1)
			}
			if c.name == "reject" && pendings != racers-1 {
				t.Errorf("LinkPending answers = %d, want %d", pendings, racers-1)
			}
		})
	}
}

// testReplay: a repeat while the first account is INITIATED gets the first
// answer replayed; once the account left INITIATED the next link is forwarded.
func testReplay(t *testing.T, w *world) {
	for _, leave := range []string{composiotest.StatusFailed, composiotest.StatusExpired} {
		t.Run("then "+leave, func(t *testing.T) {
			t.Parallel()
			cred, user, ac := uniq("key"), uniq("user"), uniq("ac")
			first := link(t, w.enforce, "/api/v3.1", cred, user, ac)
			if first.status != http.StatusCreated {
				t.Fatalf("first link: %s", first)
			}
			l1 := decodeLink(t, first)

			rid := "replay-" + cred
			again := link(t, w.enforce, "/api/v3.1", cred, user, ac, apierror.HeaderRequestID, rid)
			if again.status != http.StatusCreated || again.header.Get(apierror.HeaderGuard) != "replayed" {
				t.Fatalf("repeat while INITIATED: got %s with %s=%q, want 201 replayed", again, apierror.HeaderGuard, again.header.Get(apierror.HeaderGuard))
			}
			if !bytes.Equal(again.body, first.body) {
				t.Errorf("replayed body differs:\n%s\nfirst:\n%s", again.body, first.body)
			}
			if ct := again.header.Get("Content-Type"); ct != first.header.Get("Content-Type") {
				t.Errorf("replayed Content-Type = %q, first %q", ct, first.header.Get("Content-Type"))
			}
			if got := again.header.Get(apierror.HeaderRequestID); got != rid {
				t.Errorf("replayed answer X-Request-Id = %q, want this request's %q", got, rid)
			}
			if n := len(w.fake.Accounts(t, cred)); n != 1 {
				t.Errorf("accounts after the replay = %d, want 1", n)
			}
			if n := len(posts(t, w.fake, cred)); n != 1 {
				t.Errorf("link POSTs after the replay = %d, want 1", n)
			}

			// The user abandoned the link: it is forwarded again.
			w.fake.SetStatus(t, l1.ConnectedAccountID, leave)
			third := link(t, w.enforce, "/api/v3.1", cred, user, ac)
			if third.status != http.StatusCreated || third.header.Get(apierror.HeaderGuard) != "" {
				t.Fatalf("link after %s: got %s (%s=%q), want a forwarded 201", leave, third, apierror.HeaderGuard, third.header.Get(apierror.HeaderGuard))
			}
			l3 := decodeLink(t, third)
			if l3.ConnectedAccountID == l1.ConnectedAccountID || l3.RedirectURL == l1.RedirectURL {
				t.Errorf("link after %s answered the old link %+v", leave, l3)
			}
			if n := len(w.fake.Accounts(t, cred)); n != 2 {
				t.Errorf("accounts = %d, want 2", n)
			}
			// And the new link is the one replayed now.
			fourth := link(t, w.enforce, "/api/v3.1", cred, user, ac)
			if fourth.header.Get(apierror.HeaderGuard) != "replayed" || decodeLink(t, fourth) != l3 {
				t.Errorf("repeat of the new link: got %s, want the new answer replayed", fourth)
			}
		})
	}
}

// testPendingReject: GUARD_PENDING_ACTION=reject answers a repeat with a
// LinkPending 409 that the SDKs do not retry.
func testPendingReject(t *testing.T, w *world) {
	cred, user, ac := uniq("key"), uniq("user"), uniq("ac")
	first := link(t, w.reject, "/api/v3", cred, user, ac)
	if first.status != http.StatusCreated {
		t.Fatalf("first link: %s", first)
	}
	l1 := decodeLink(t, first)
	again := link(t, w.reject, "/api/v3", cred, user, ac)
	e := wantEnvelope(t, again, http.StatusConflict, apierror.SlugLinkPending)
	if again.header.Get(apierror.HeaderShouldRetry) != "false" {
		t.Errorf("x-should-retry = %q, want false", again.header.Get(apierror.HeaderShouldRetry))
	}
	if e.Code != apierror.CodeLinkPending {
		t.Errorf("error.code = %d, want %d", e.Code, apierror.CodeLinkPending)
	}
	if len(e.ExistingAccountIDs) != 1 || e.ExistingAccountIDs[0] != l1.ConnectedAccountID {
		t.Errorf("error.existing_connected_account_ids = %v, want [%s]", e.ExistingAccountIDs, l1.ConnectedAccountID)
	}
	if n := len(posts(t, w.fake, cred)); n != 1 {
		t.Errorf("link POSTs = %d, want 1", n)
	}
	w.fake.SetStatus(t, l1.ConnectedAccountID, composiotest.StatusExpired)
	if third := link(t, w.reject, "/api/v3", cred, user, ac); third.status != http.StatusCreated {
		t.Errorf("link after EXPIRED: got %s, want 201", third)
	}
	if n := len(w.fake.Accounts(t, cred)); n != 2 {
		t.Errorf("accounts = %d, want 2", n)
	}
}

// testOptInBypassesPending: an opt-in caller gets a new link, not the replay.
func testOptInBypassesPending(t *testing.T, w *world) {
	cred, user, ac := uniq("key"), uniq("user"), uniq("ac")
	first := link(t, w.enforce, "/api/v3", cred, user, ac)
	if first.status != http.StatusCreated {
		t.Fatalf("first link: %s", first)
	}
	second := link(t, w.enforce, "/api/v3", cred, user, ac, apierror.HeaderAllowMultiple, "true")
	if second.status != http.StatusCreated || second.header.Get(apierror.HeaderGuard) != "" {
		t.Fatalf("opt-in repeat: got %s (%s=%q), want a forwarded 201", second, apierror.HeaderGuard, second.header.Get(apierror.HeaderGuard))
	}
	if decodeLink(t, second).ConnectedAccountID == decodeLink(t, first).ConnectedAccountID {
		t.Errorf("opt-in repeat answered the first link")
	}
	if n := len(w.fake.Accounts(t, cred)); n != 2 {
		t.Errorf("accounts = %d, want 2", n)
	}
}
