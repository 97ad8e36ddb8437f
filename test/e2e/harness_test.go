package e2e_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/composio-guard/composio-guard/internal/apierror"
	"github.com/composio-guard/composio-guard/internal/composiotest"
	"github.com/composio-guard/composio-guard/internal/testproc"
)

// buildFlags are the go build flags of both binaries. E2E_RACE=1 builds them
// with the race detector (slower to build and run; worth it before a release).
func buildFlags() []string {
	if os.Getenv("E2E_RACE") == "1" {
		return []string{"-race"}
	}
	return nil
}

func proxyBin(t *testing.T) string {
	t.Helper()
	return testproc.Build(t, "./cmd/proxy", buildFlags()...)
}

// client is shared by every test: generous idle pool for the races, a
// timeout well above any scenario's own delays.
var client = &http.Client{
	Timeout:   20 * time.Second,
	Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true},
}

var seq atomic.Int64

// uniq returns a fresh identifier with a readable prefix, so that every case
// has its own credential (the fake's project), user and auth config.
func uniq(prefix string) string {
	return fmt.Sprintf("%s_%d", prefix, seq.Add(1))
}

// ---- the fake Composio and the proxy, as processes ---------------------

type (
	fake  = testproc.Fake
	proxy = testproc.Proxy
)

func startFake(t *testing.T) *fake { return testproc.StartFake(t, buildFlags()...) }

// startProxy runs the proxy in front of upstream with testproc's base
// settings plus env (later entries win, as in a shell).
func startProxy(t *testing.T, name, upstream string, env ...string) *proxy {
	t.Helper()
	return testproc.LaunchProxy(t, upstream, testproc.ProxyOptions{Name: name, Env: env, BuildFlags: buildFlags()})
}

// posts returns the POST requests of credential: what the guard forwarded.
func posts(t *testing.T, f *fake, credential string) []composiotest.Request {
	t.Helper()
	var out []composiotest.Request
	for _, q := range f.RequestsOf(t, credential, "") {
		if q.Method == http.MethodPost {
			out = append(out, q)
		}
	}
	return out
}

// query parses the query a request reached the fake with.
func query(t *testing.T, q composiotest.Request) url.Values {
	t.Helper()
	v, err := url.ParseQuery(q.RawQuery)
	if err != nil {
		t.Fatalf("query %q: %v", q.RawQuery, err)
	}
	return v
}

// ---- HTTP ----------------------------------------------------------------

// answer is what a client of the proxy saw.
type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) String() string {
	return fmt.Sprintf("%d %s", a.status, bytes.TrimSpace(a.body))
}

// send makes one request. hdr holds header name/value pairs; a Content-Type
// of application/json is added to a non-empty body unless hdr sets one.
func send(t *testing.T, method, u string, body []byte, hdr ...string) answer {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		t.Fatalf("request %s %s: %v", method, u, err)
	}
	return do(t, req, hdr...)
}

func do(t *testing.T, req *http.Request, hdr ...string) answer {
	t.Helper()
	a, err := tryDo(req, hdr...)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// tryDo is do for goroutines other than the test's: it reports, never fails.
func tryDo(req *http.Request, hdr ...string) (answer, error) {
	if len(hdr)%2 != 0 {
		return answer{}, fmt.Errorf("send: odd header list %q", hdr)
	}
	if req.Body != nil && req.Body != http.NoBody {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i < len(hdr); i += 2 {
		if http.CanonicalHeaderKey(hdr[i]) == "Content-Type" {
			req.Header.Set(hdr[i], hdr[i+1])
			continue
		}
		req.Header.Add(hdr[i], hdr[i+1])
	}
	res, err := client.Do(req)
	if err != nil {
		return answer{}, fmt.Errorf("%s %s: %w", req.Method, req.URL, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return answer{}, fmt.Errorf("%s %s: read answer: %w", req.Method, req.URL, err)
	}
	return answer{status: res.StatusCode, header: res.Header, body: b}, nil
}

func linkBody(user, authConfig string) []byte {
	return fmt.Appendf(nil, `{"auth_config_id":%q,"user_id":%q,"callback_url":"https://app.example/cb"}`, authConfig, user)
}

// createBody is a legacy create; user "" leaves connection.user_id out.
func createBody(user, authConfig string) []byte {
	if user == "" {
		return fmt.Appendf(nil, `{"auth_config":{"id":%q},"connection":{"callback_url":"https://app.example/cb"}}`, authConfig)
	}
	return fmt.Appendf(nil, `{"auth_config":{"id":%q},"connection":{"user_id":%q,"callback_url":"https://app.example/cb"}}`, authConfig, user)
}

// linkAnswer is the 201 of a link.
type linkAnswer struct {
	LinkToken          string `json:"link_token"`
	RedirectURL        string `json:"redirect_url"`
	ExpiresAt          string `json:"expires_at"`
	ConnectedAccountID string `json:"connected_account_id"`
}

func decodeLink(t *testing.T, a answer) linkAnswer {
	t.Helper()
	var l linkAnswer
	if err := json.Unmarshal(a.body, &l); err != nil || l.ConnectedAccountID == "" || l.RedirectURL == "" {
		t.Fatalf("not a link answer (%v): %s", err, a)
	}
	return l
}

// wantEnvelope checks an answer the proxy wrote itself: status, JSON content
// type, Composio's envelope with every member, slug, request id agreement.
func wantEnvelope(t *testing.T, a answer, status int, slug string) apierror.Error {
	t.Helper()
	if a.status != status {
		t.Fatalf("status = %d, want %d; body %s", a.status, status, a.body)
	}
	if ct := a.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var raw map[string]map[string]json.RawMessage
	if err := json.Unmarshal(a.body, &raw); err != nil || raw["error"] == nil {
		t.Fatalf("body is not Composio's error envelope (%v): %s", err, a.body)
	}
	for _, m := range []string{"message", "code", "slug", "status", "request_id", "suggested_fix", "errors"} {
		if _, ok := raw["error"][m]; !ok {
			t.Errorf("envelope lacks error.%s: %s", m, a.body)
		}
	}
	if e := string(raw["error"]["errors"]); !strings.HasPrefix(e, "[") {
		t.Errorf("error.errors = %s, want an array", e)
	}
	var env struct {
		Error apierror.Error `json:"error"`
	}
	if err := json.Unmarshal(a.body, &env); err != nil {
		t.Fatalf("envelope: %v: %s", err, a.body)
	}
	e := env.Error
	if e.Slug != slug {
		t.Errorf("error.slug = %q, want %q", e.Slug, slug)
	}
	if e.Status != status {
		t.Errorf("error.status = %d, want %d", e.Status, status)
	}
	if e.Code == 0 || e.Message == "" {
		t.Errorf("error.code / error.message empty: %s", a.body)
	}
	if e.RequestID == "" || e.RequestID != a.header.Get(apierror.HeaderRequestID) {
		t.Errorf("error.request_id = %q, X-Request-Id = %q: want equal and non-empty", e.RequestID, a.header.Get(apierror.HeaderRequestID))
	}
	return e
}

// wantConflict checks the duplicate 409 in full.
func wantConflict(t *testing.T, a answer, user, authConfig string, existing ...string) {
	t.Helper()
	e := wantEnvelope(t, a, http.StatusConflict, apierror.SlugMultipleAccounts)
	if got := a.header.Get(apierror.HeaderShouldRetry); got != "false" {
		t.Errorf("x-should-retry = %q, want false (the SDKs would post the link three times)", got)
	}
	if e.Code != apierror.CodeMultipleAccounts {
		t.Errorf("error.code = %d, want %d", e.Code, apierror.CodeMultipleAccounts)
	}
	if !strings.Contains(e.Message, user) || !strings.Contains(e.Message, authConfig) {
		t.Errorf("error.message %q does not name user %q and auth config %q", e.Message, user, authConfig)
	}
	if !strings.Contains(strings.ToLower(e.SuggestedFix), strings.ToLower(apierror.HeaderAllowMultiple)) {
		t.Errorf("error.suggested_fix %q does not name %s", e.SuggestedFix, apierror.HeaderAllowMultiple)
	}
	if e.UserID != user || e.AuthConfigID != authConfig {
		t.Errorf("error.user_id/auth_config_id = %q/%q, want %q/%q", e.UserID, e.AuthConfigID, user, authConfig)
	}
	if existing != nil && !sameSet(e.ExistingAccountIDs, existing) {
		t.Errorf("error.existing_connected_account_ids = %v, want %v", e.ExistingAccountIDs, existing)
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]int{}
	for _, s := range a {
		m[s]++
	}
	for _, s := range b {
		if m[s] == 0 {
			return false
		}
		m[s]--
	}
	return true
}

func gz(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// ---- metrics ---------------------------------------------------------------

// metric sums the samples of family name whose labels include want.
func metric(t *testing.T, p *proxy, name string, want map[string]string) float64 {
	t.Helper()
	v, _ := p.Metric(t, name, want)
	return v
}

// eventually polls cond every 20 ms until it holds or d passes.
func eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// accessLine is the part of an access log line the suite checks.
type accessLine struct {
	Msg       string   `json:"msg"`
	RequestID string   `json:"request_id"`
	Status    int      `json:"status"`
	Duration  float64  `json:"duration"`
	Upstream  float64  `json:"upstream_duration"`
	Lookup    *float64 `json:"lookup_duration"`
}

// checkAccessDurations: the time spent waiting on Composio (and on the lookup
// alone) is part of a request's time, so it can never exceed its duration.
func checkAccessDurations(t *testing.T, p *proxy) {
	t.Helper()
	n := 0
	for _, raw := range strings.Split(p.Logs(), "\n") {
		var l accessLine
		if json.Unmarshal([]byte(raw), &l) != nil || l.Msg != "request" {
			continue
		}
		n++
		limit := l.Duration*1.01 + 0.002 // clocks start a few µs apart
		if l.Upstream > limit {
			t.Errorf("%s: request %s: upstream_duration %.4fs > duration %.4fs", p.Name, l.RequestID, l.Upstream, l.Duration)
		}
		if l.Lookup != nil && *l.Lookup > limit {
			t.Errorf("%s: request %s: lookup_duration %.4fs > duration %.4fs", p.Name, l.RequestID, *l.Lookup, l.Duration)
		}
	}
	if n == 0 {
		t.Errorf("%s: no access line in the logs", p.Name)
	}
}
