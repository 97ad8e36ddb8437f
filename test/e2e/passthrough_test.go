package e2e_test

import (
	"encoding/json"
	"net/http"
	"reflect"
	"regexp"
	"testing"

	"github.com/composio-guard/composio-guard/internal/apierror"
	"github.com/composio-guard/composio-guard/internal/composiotest"
)

// testPassthrough: requests that are not guarded get the upstream's answer,
// status, rate-limit headers and body, as if the proxy were not there.
func testPassthrough(t *testing.T, w *world) {
	cred, user, ac := uniq("key"), uniq("user"), uniq("ac")
	a1 := w.fake.Seed(t, composiotest.Account{Credential: cred, UserID: user, AuthConfigID: ac})
	w.fake.Seed(t, composiotest.Account{Credential: cred, UserID: user, AuthConfigID: ac, Status: composiotest.StatusExpired})

	for _, c := range []struct {
		name, method, path string
		status             int
	}{
		{"list v3", http.MethodGet, "/api/v3/connected_accounts?user_ids=" + user + "&limit=1", http.StatusOK},
		{"list v3.1 filtered", http.MethodGet, "/api/v3.1/connected_accounts?statuses=ACTIVE%2CEXPIRED&auth_config_ids=" + ac, http.StatusOK},
		{"get", http.MethodGet, "/api/v3/connected_accounts/" + a1.ID, http.StatusOK},
		{"get unknown", http.MethodGet, "/api/v3.1/connected_accounts/ca_nope", http.StatusNotFound},
		{"unknown route", http.MethodGet, "/api/v3/no/such/route", http.StatusNotFound},
		{"GET on the link route is not guarded", http.MethodGet, "/api/v3/connected_accounts/link", http.StatusNotFound},
	} {
		t.Run(c.name, func(t *testing.T) {
			via := send(t, c.method, w.enforce.URL+c.path, nil, "x-api-key", cred)
			direct := send(t, c.method, w.fake.URL+c.path, nil, "x-api-key", cred)
			if via.status != c.status || direct.status != c.status {
				t.Fatalf("status through the proxy %d, direct %d, want %d; body %s", via.status, direct.status, c.status, via.body)
			}
			if !sameJSON(t, via.body, direct.body, c.status == http.StatusOK) {
				t.Errorf("body through the proxy differs from the fake's:\n proxy %s\ndirect %s", via.body, direct.body)
			}
			for _, h := range []string{"X-Ratelimit", "X-Ratelimit-Remaining", "X-Ratelimit-Window-Size"} {
				if via.header.Get(h) == "" {
					t.Errorf("upstream header %s did not reach the client: %v", h, via.header)
				}
			}
			if via.header.Get("X-Ratelimit") != direct.header.Get("X-Ratelimit") ||
				via.header.Get("X-Ratelimit-Window-Size") != direct.header.Get("X-Ratelimit-Window-Size") {
				t.Errorf("rate-limit headers changed: proxy %v, direct %v", via.header, direct.header)
			}
			if ct := via.header.Get("Content-Type"); ct != direct.header.Get("Content-Type") {
				t.Errorf("Content-Type = %q, fake sent %q", ct, direct.header.Get("Content-Type"))
			}
		})
	}
}

// sameJSON compares two JSON bodies; error envelopes carry a request id of
// their own, so only whole-body equality is asked of 200s.
func sameJSON(t *testing.T, a, b []byte, exact bool) bool {
	t.Helper()
	var x, y map[string]any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("proxy body is not JSON: %v: %s", err, a)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("fake body is not JSON: %v: %s", err, b)
	}
	if !exact {
		for _, m := range []map[string]any{x, y} {
			if e, ok := m["error"].(map[string]any); ok {
				delete(e, "request_id")
			}
		}
	}
	return reflect.DeepEqual(x, y)
}

var generatedID = regexp.MustCompile(`^[0-9a-f]{32}$`)

// testRequestID: an inbound X-Request-Id goes upstream and comes back; without
// one the proxy makes one, sends it upstream and returns it.
func testRequestID(t *testing.T, w *world) {
	cred := uniq("key")
	path := "/api/v3/connected_accounts?user_ids=" + uniq("user")

	in := "e2e-" + cred
	a := send(t, http.MethodGet, w.enforce.URL+path, nil, "x-api-key", cred, apierror.HeaderRequestID, in)
	if got := a.header.Get(apierror.HeaderRequestID); got != in {
		t.Errorf("answer X-Request-Id = %q, want the inbound %q", got, in)
	}
	a = send(t, http.MethodGet, w.enforce.URL+path, nil, "x-api-key", cred)
	gen := a.header.Get(apierror.HeaderRequestID)
	if !generatedID.MatchString(gen) {
		t.Errorf("generated X-Request-Id = %q, want 32 hex digits", gen)
	}
	got := w.fake.RequestsOf(t, cred, composiotest.RouteList)
	if len(got) != 2 {
		t.Fatalf("requests at the fake = %d, want 2", len(got))
	}
	if v := got[0].Header.Get(apierror.HeaderRequestID); v != in {
		t.Errorf("upstream got X-Request-Id %q, want %q", v, in)
	}
	if v := got[1].Header.Get(apierror.HeaderRequestID); v != gen {
		t.Errorf("upstream got X-Request-Id %q, want the generated %q", v, gen)
	}

	// An answer the proxy writes itself: the generated id is in the body too.
	bad := send(t, http.MethodPost, w.enforce.URL+"/api/v3/connected_accounts/link", []byte(`[]`), "x-api-key", cred)
	e := wantEnvelope(t, bad, http.StatusBadRequest, apierror.SlugBadRequest)
	if !generatedID.MatchString(e.RequestID) {
		t.Errorf("request_id of the proxy's own answer = %q, want a generated id", e.RequestID)
	}
}
