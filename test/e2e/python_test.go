package e2e_test

// Python callers, from real bytes: the requests the Python Composio client
// really sent (testdata/python-wire-2026-12-04.jsonl, captured on loopback:
// the composio SDK 0.10.7 on its generated client 1.26.0, and the generated
// client 1.44.0 alone), replayed through the proxy binary to the fake
// Composio process.
//
// Why raw TCP: each request is written to the proxy's socket as the capture
// holds it (request line with the request-target as sent, headers in their
// order and spelling, body bytes), the way httpx put it on the wire. Go's
// http.Client would re-spell header names, reorder them, add its own
// Accept-Encoding and User-Agent and recompute the framing, so the proxy
// would be tested on Go's bytes, not Python's. Two fields are substituted,
// as a Python client pointed at the proxy would send them: Host (base_url is
// the proxy) and x-api-key (the capture redacts it; a test key of the same
// length takes its place, so Content-Length and framing stay the capture's).
// The capture records header names lower-cased (as its Node logging server
// received them); they are replayed that way.
//
// Around the bytes, the test plays the Python client's own retry loop, as
// its source (stainless _base_client: _should_retry, DEFAULT_MAX_RETRIES 2)
// decides it: retry 408, 409, 429 and 5xx, unless the answer says
// x-should-retry: false (or true to force). The capture itself shows that
// loop: three POSTs for a 409 without the header, one with it.

import (
	"bufio"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/composio-guard/composio-guard/internal/apierror"
	"github.com/composio-guard/composio-guard/internal/composiotest"
)

const pythonCapture = "testdata/python-wire-2026-12-04.jsonl"

// pyMaxRetries is the generated client's DEFAULT_MAX_RETRIES.
const pyMaxRetries = 2

// wireRecord is one request of the capture.
type wireRecord struct {
	Method  string        `json:"method"`
	RawURL  string        `json:"rawUrl"`
	Path    string        `json:"path"`
	Headers headerList    `json:"headers"`
	RawBody string        `json:"rawBody"`
	Body    *pyBodyFields `json:"body"`
}

// pyBodyFields are the members the test picks records by.
type pyBodyFields struct {
	UserID     string `json:"user_id"`
	Toolkit    string `json:"toolkit"`
	Connection struct {
		UserID string `json:"user_id"`
	} `json:"connection"`
}

func (r wireRecord) user() string {
	if r.Body == nil {
		return ""
	}
	if r.Body.UserID != "" {
		return r.Body.UserID
	}
	return r.Body.Connection.UserID
}

// rawQuery is the query of the request-target, encoding as sent.
func (r wireRecord) rawQuery() string {
	_, q, _ := strings.Cut(r.RawURL, "?")
	return q
}

// header is one header line as captured.
type header struct{ name, value string }

// headerList keeps the capture's header order (a Go map would lose it).
type headerList []header

func (h *headerList) UnmarshalJSON(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return fmt.Errorf("headers: want an object: %v", err)
	}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return fmt.Errorf("headers: %w", err)
		}
		var v string
		if err := dec.Decode(&v); err != nil {
			return fmt.Errorf("headers %v: %w", k, err)
		}
		*h = append(*h, header{k.(string), v})
	}
	_, err := dec.Token()
	return err
}

func (h headerList) get(name string) string {
	for _, x := range h {
		if x.name == name {
			return x.value
		}
	}
	return ""
}

// with returns a copy with name set to value, in place when present.
func (h headerList) with(name, value string) headerList {
	out := slices.Clone(h)
	for i := range out {
		if out[i].name == name {
			out[i].value = value
			return out
		}
	}
	return append(out, header{name, value})
}

// withAfter returns a copy with a header inserted after the one named
// after; ok is false when there is none.
func (h headerList) withAfter(after, name, value string) (out headerList, ok bool) {
	i := slices.IndexFunc(h, func(x header) bool { return x.name == after })
	if i < 0 {
		return h, false
	}
	return slices.Insert(slices.Clone(h), i+1, header{name, value}), true
}

func loadPythonCapture(t *testing.T) []wireRecord {
	t.Helper()
	b, err := os.ReadFile(filepath.FromSlash(pythonCapture))
	if err != nil {
		t.Fatalf("the Python capture: %v", err)
	}
	var out []wireRecord
	for i, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		var r wireRecord
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatalf("%s line %d: %v", pythonCapture, i+1, err)
		}
		// The capture's own framing must hold, or the replay would not be
		// the bytes the client sent.
		if cl := r.Headers.get("content-length"); cl != "" && cl != strconv.Itoa(len(r.RawBody)) {
			t.Fatalf("%s line %d: content-length %s for a %d-byte body", pythonCapture, i+1, cl, len(r.RawBody))
		}
		if len(r.Headers.get("x-api-key")) == 0 || r.Headers[0].name != "host" {
			t.Fatalf("%s line %d: no x-api-key, or host is not the first header", pythonCapture, i+1)
		}
		out = append(out, r)
	}
	return out
}

// pick returns the records of method and path suffix for user ("" for
// any), in capture order.
func pick(recs []wireRecord, method, pathSuffix, user string) []wireRecord {
	var out []wireRecord
	for _, r := range recs {
		if r.Method == method && strings.HasSuffix(r.Path, pathSuffix) && (user == "" || r.user() == user) {
			out = append(out, r)
		}
	}
	return out
}

// pyClient is one Python client instance: one keep-alive connection to the
// address its base_url names, reopened when the server closes it.
type pyClient struct {
	t    *testing.T
	addr string
	key  string // the API key in place of the redacted one
	conn net.Conn
	br   *bufio.Reader
}

// pyAnswer is what the Python caller got for one attempt.
type pyAnswer struct {
	status int
	header http.Header
	body   []byte // decoded as httpx does (gzip, deflate)
}

func (a pyAnswer) String() string { return fmt.Sprintf("%d %s", a.status, bytes.TrimSpace(a.body)) }

// wire renders a record as the request bytes, with Host and x-api-key
// substituted (see the file comment) and headers as given.
func (c *pyClient) wire(r wireRecord, h headerList) []byte {
	c.t.Helper()
	if n := redactedLen(r.Headers.get("x-api-key")); n != len(c.key) {
		c.t.Fatalf("test key %q is %d bytes, the captured one %d", c.key, len(c.key), n)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\n", r.Method, r.RawURL)
	for _, x := range h {
		v := x.value
		switch x.name {
		case "host":
			v = c.addr
		case "x-api-key":
			v = c.key
		}
		fmt.Fprintf(&b, "%s: %s\r\n", x.name, v)
	}
	b.WriteString("\r\n")
	b.WriteString(r.RawBody)
	return b.Bytes()
}

// redactedLen reads the length the capture gives for a redacted key.
func redactedLen(v string) int {
	n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(v, "<redacted len="), ">"))
	if err != nil {
		return -1
	}
	return n
}

// roundTrip writes one request and reads its answer; a connection the
// server closed while idle is reopened once, as httpx's pool does.
func (c *pyClient) roundTrip(raw []byte) pyAnswer {
	c.t.Helper()
	for attempt := 0; ; attempt++ {
		reused := c.conn != nil
		if c.conn == nil {
			conn, err := net.DialTimeout("tcp", c.addr, 5*time.Second)
			if err != nil {
				c.t.Fatalf("dial %s: %v", c.addr, err)
			}
			c.conn, c.br = conn, bufio.NewReader(conn)
		}
		_ = c.conn.SetDeadline(time.Now().Add(20 * time.Second))
		a, err := c.exchange(raw)
		if err == nil {
			return a
		}
		c.close()
		if !reused || attempt > 0 {
			c.t.Fatalf("%s: %v", bytes.SplitN(raw, []byte("\r\n"), 2)[0], err)
		}
	}
}

func (c *pyClient) exchange(raw []byte) (pyAnswer, error) {
	if _, err := c.conn.Write(raw); err != nil {
		return pyAnswer{}, fmt.Errorf("write: %w", err)
	}
	res, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return pyAnswer{}, fmt.Errorf("read answer: %w", err)
	}
	defer res.Body.Close()
	var body io.Reader = res.Body
	switch res.Header.Get("Content-Encoding") {
	case "gzip":
		zr, err := gzip.NewReader(res.Body)
		if err != nil {
			return pyAnswer{}, fmt.Errorf("gzip answer: %w", err)
		}
		body = zr
	case "deflate":
		body = flate.NewReader(res.Body)
	}
	b, err := io.ReadAll(body)
	if err != nil {
		return pyAnswer{}, fmt.Errorf("read body: %w", err)
	}
	if res.Close {
		c.close()
	}
	return pyAnswer{status: res.StatusCode, header: res.Header, body: b}, nil
}

func (c *pyClient) close() {
	if c.conn != nil {
		_ = c.conn.Close()
		c.conn, c.br = nil, nil
	}
}

// pyShouldRetry is the generated client's _should_retry.
func pyShouldRetry(status int, h http.Header) bool {
	switch h.Get("x-should-retry") {
	case "true":
		return true
	case "false":
		return false
	}
	return status == http.StatusRequestTimeout || status == http.StatusConflict ||
		status == http.StatusTooManyRequests || status >= 500
}

// call is one client call: the request loop of the generated client. The
// attempt with retry count n is the capture's own record for n when it has
// one, else the last record with x-stainless-retry-count set to n. Every
// answer the loop read is returned, the last one is what the caller gets.
// extra, when set, adds a header where the client's default_headers and a
// call's extra_headers go (right after x-stainless-async).
func (c *pyClient) call(attempts []wireRecord, extra ...string) []pyAnswer {
	c.t.Helper()
	var out []pyAnswer
	for n := 0; n <= pyMaxRetries; n++ {
		r := attempts[min(n, len(attempts)-1)]
		h := r.Headers.with("x-stainless-retry-count", strconv.Itoa(n))
		for i := 0; i+1 < len(extra); i += 2 {
			var ok bool
			if h, ok = h.withAfter("x-stainless-async", extra[i], extra[i+1]); !ok {
				c.t.Fatalf("%s %s: no x-stainless-async header to put %s after", r.Method, r.RawURL, extra[i])
			}
		}
		a := c.roundTrip(c.wire(r, h))
		out = append(out, a)
		if !pyShouldRetry(a.status, a.header) {
			break
		}
	}
	return out
}

// fakeLog is the fake's request log from index from on.
func fakeLog(t *testing.T, f *fake, from int) []composiotest.Request {
	t.Helper()
	all := f.Requests(t, "", "")
	if from > len(all) {
		t.Fatalf("the fake's log shrank: %d < %d", len(all), from)
	}
	return all[from:]
}

func onlyMethod(log []composiotest.Request, method string) []composiotest.Request {
	var out []composiotest.Request
	for _, q := range log {
		if q.Method == method {
			out = append(out, q)
		}
	}
	return out
}

// wantForwardedAsSent checks that q, the request the fake received, is the
// Python request r: method, path and query as sent, body bytes unchanged,
// the client's headers (all but the connection's own, Host and the key
// substituted) with their values, the key the caller's, and the opt-in
// header never forwarded.
func wantForwardedAsSent(t *testing.T, q composiotest.Request, r wireRecord, key string) {
	t.Helper()
	if q.Method != r.Method || q.Path != r.Path || q.RawQuery != r.rawQuery() {
		t.Errorf("reached the fake as %s %s?%s, sent as %s %s", q.Method, q.Path, q.RawQuery, r.Method, r.RawURL)
	}
	if !bytes.Equal(q.Body, []byte(r.RawBody)) {
		t.Errorf("body reached the fake as\n  %q\nsent as\n  %q", q.Body, r.RawBody)
	}
	for _, h := range r.Headers {
		switch h.name {
		case "host", "connection", "content-length":
			continue
		case "x-api-key":
			h.value = key
		}
		if got := q.Header.Values(h.name); len(got) != 1 || got[0] != h.value {
			t.Errorf("header %s reached the fake as %q, sent as %q", h.name, got, h.value)
		}
	}
	if v := q.Header.Get(apierror.HeaderAllowMultiple); v != "" {
		t.Errorf("the opt-in header reached the fake (%q): it is the proxy's, not Composio's", v)
	}
}

// wantOnePOST: the client's loop sent the request once and the caller got
// a refusal it will not retry.
func wantOnePOST(t *testing.T, answers []pyAnswer) pyAnswer {
	t.Helper()
	if len(answers) != 1 {
		t.Errorf("the Python client sent the POST %d times (answers: %v), want once", len(answers), answers)
	}
	return answers[len(answers)-1]
}

func asAnswer(a pyAnswer) answer { return answer(a) }

// wantCreatedAsSent sends the attempts through c and checks that the caller
// got one 201 and that exactly one POST, the request as sent, reached the
// fake.
func wantCreatedAsSent(t *testing.T, f *fake, c *pyClient, attempts []wireRecord, key, what string, extra ...string) pyAnswer {
	t.Helper()
	from := len(f.Requests(t, "", ""))
	got := c.call(attempts, extra...)
	if len(got) != 1 || got[0].status != http.StatusCreated {
		t.Fatalf("%s: %v, want one 201", what, got)
	}
	posts := onlyMethod(fakeLog(t, f, from), http.MethodPost)
	if len(posts) != 1 {
		t.Fatalf("%d POSTs reached the fake for the %s, want 1", len(posts), what)
	}
	wantForwardedAsSent(t, posts[0], attempts[0], key)
	return got[0]
}

func TestPythonCallers(t *testing.T) {
	t.Parallel()
	recs := loadPythonCapture(t)
	const ac = "ac_abc123"

	// The model of the client's retry loop against what the capture shows:
	// a 409 without x-should-retry was sent three times (retry counts 0, 1,
	// 2), a 409 with x-should-retry: false once.
	t.Run("retry_model_matches_capture", func(t *testing.T) {
		retried := pick(recs, http.MethodPost, "/connected_accounts/link", "conflict_user")
		once := pick(recs, http.MethodPost, "/connected_accounts/link", "conflict_noretry_user")
		sends := func(h http.Header) int {
			n := 1
			for n <= pyMaxRetries && pyShouldRetry(http.StatusConflict, h) {
				n++
			}
			return n
		}
		if got := sends(http.Header{}); got != len(retried) {
			t.Errorf("model: %d sends of a 409 without x-should-retry, the capture has %d", got, len(retried))
		}
		for i, r := range retried {
			if r.Headers.get("x-stainless-retry-count") != strconv.Itoa(i) || r.RawBody != retried[0].RawBody {
				t.Errorf("conflict_user attempt %d: retry count %s, body %q", i, r.Headers.get("x-stainless-retry-count"), r.RawBody)
			}
		}
		if got := sends(http.Header{"X-Should-Retry": {"false"}}); got != len(once) || got != 1 {
			t.Errorf("model: %d sends of a 409 with x-should-retry: false, the capture has %d", got, len(once))
		}
	})

	f := startFake(t)
	p := startProxy(t, "enforce", f.URL)
	target := p.Addr

	// The SDK 0.10.7 (client 1.26.0): link() with no client-side guard.
	t.Run("sdk_0.10.7_link", func(t *testing.T) {
		const key = "py_key_sdk0107" // 14 bytes, as the captured key
		py := &pyClient{t: t, addr: target, key: key}
		defer py.close()
		dup := f.Seed(t, composiotest.Account{Credential: key, UserID: "dup_user", AuthConfigID: ac})
		conflict := f.Seed(t, composiotest.Account{Credential: key, UserID: "conflict_user", AuthConfigID: ac})
		// A link another caller started a moment ago, still pending.
		pending := f.Seed(t, composiotest.Account{Credential: key, UserID: "conflict_noretry_user", AuthConfigID: ac,
			Status: composiotest.StatusInitiated})

		// A fresh link: forwarded as sent, the caller gets Composio's 201.
		fresh := pick(recs, http.MethodPost, "/connected_accounts/link", "user_123")[0]
		from := len(f.Requests(t, "", ""))
		answers := py.call([]wireRecord{fresh})
		if len(answers) != 1 || answers[0].status != http.StatusCreated {
			t.Fatalf("fresh link: %v, want one 201", answers)
		}
		link := decodeLink(t, asAnswer(answers[0]))
		posts := onlyMethod(fakeLog(t, f, from), http.MethodPost)
		if len(posts) != 1 {
			t.Fatalf("%d POSTs reached the fake for the fresh link, want 1", len(posts))
		}
		wantForwardedAsSent(t, posts[0], fresh, key)
		var made string
		for _, a := range f.Accounts(t, key) {
			if a.UserID == "user_123" {
				made = a.ID
			}
		}
		if made == "" || link.ConnectedAccountID != made {
			t.Errorf("the caller got connected account %q, the fake made %q", link.ConnectedAccountID, made)
		}

		// Duplicates: refused with Composio's envelope and x-should-retry:
		// false, so the client's loop sends one POST, and none reaches Composio.
		for _, tc := range []struct {
			user, slug string
			existing   string
		}{
			{"dup_user", apierror.SlugMultipleAccounts, dup.ID},
			{"conflict_user", apierror.SlugMultipleAccounts, conflict.ID},
			{"conflict_noretry_user", apierror.SlugLinkPending, pending.ID},
		} {
			t.Run(tc.user, func(t *testing.T) {
				from := len(f.Requests(t, "", ""))
				// Every attempt the capture holds for the user (conflict_user:
				// retry counts 0, 1, 2): the loop decides how many are sent.
				a := wantOnePOST(t, py.call(pick(recs, http.MethodPost, "/connected_accounts/link", tc.user)))
				if tc.slug == apierror.SlugMultipleAccounts {
					wantConflict(t, asAnswer(a), tc.user, ac, tc.existing)
				} else {
					e := wantEnvelope(t, asAnswer(a), http.StatusConflict, tc.slug)
					if a.header.Get("x-should-retry") != "false" || !slices.Equal(e.ExistingAccountIDs, []string{tc.existing}) {
						t.Errorf("pending refusal: x-should-retry %q, existing %v: %v", a.header.Get("x-should-retry"), e.ExistingAccountIDs, a)
					}
				}
				if posts := onlyMethod(fakeLog(t, f, from), http.MethodPost); len(posts) != 0 {
					t.Errorf("%d POSTs reached the fake for a refused duplicate", len(posts))
				}
			})
		}

		// The SDK's own list with two users: passed through untouched, the
		// percent-encoded comma included, and the caller gets Composio's bytes.
		f.SetStatus(t, made, composiotest.StatusActive)
		list := pick(recs, http.MethodGet, "/connected_accounts", "")
		list = slices.DeleteFunc(list, func(r wireRecord) bool { return !strings.Contains(r.RawURL, "%2C") })
		if len(list) != 1 {
			t.Fatalf("the capture has %d lists with a percent-encoded comma, want 1", len(list))
		}
		from = len(f.Requests(t, "", ""))
		got := py.call(list)
		if len(got) != 1 || got[0].status != http.StatusOK {
			t.Fatalf("list: %v", got)
		}
		fwd := fakeLog(t, f, from)
		if len(fwd) != 1 {
			t.Fatalf("%d requests reached the fake for one pass-through list, want 1", len(fwd))
		}
		wantForwardedAsSent(t, fwd[0], list[0], key)
		direct := (&pyClient{t: t, addr: strings.TrimPrefix(f.URL, "http://"), key: key}).call(list)
		if !bytes.Equal(got[0].body, direct[0].body) {
			t.Errorf("list answer through the proxy\n  %s\ndiffers from Composio's\n  %s", got[0].body, direct[0].body)
		}
		var page struct {
			Items []struct {
				ID string `json:"id"`
			} `json:"items"`
		}
		if err := json.Unmarshal(got[0].body, &page); err != nil || len(page.Items) != 1 || page.Items[0].ID != made {
			t.Errorf("list: items %+v (%v), want the one ACTIVE account of user_123 (%s)", page.Items, err, made)
		}
	})

	// The SDK 0.10.7's initiate(): two lists without a statuses filter (the
	// SDK refuses client-side on any item), then the legacy create. Two
	// workers race: both list before either creates.
	t.Run("sdk_0.10.7_initiate_legacy_create", func(t *testing.T) {
		const key = "py_key_legacy1"
		w1 := &pyClient{t: t, addr: target, key: key}
		w2 := &pyClient{t: t, addr: target, key: key}
		defer w1.close()
		defer w2.close()
		lists := pick(recs, http.MethodGet, "/connected_accounts", "")
		lists = slices.DeleteFunc(lists, func(r wireRecord) bool { return !strings.Contains(r.RawURL, "user_ids=dupac_user") })
		create := pick(recs, http.MethodPost, "/api/v3/connected_accounts", "dupac_user")
		if len(lists) != 2 || len(create) != 1 {
			t.Fatalf("capture: %d lists and %d creates for dupac_user, want 2 and 1", len(lists), len(create))
		}
		for _, w := range []*pyClient{w1, w2} {
			for _, l := range lists {
				from := len(f.Requests(t, "", ""))
				a := w.call([]wireRecord{l})
				fwd := fakeLog(t, f, from)
				if len(a) != 1 || a[0].status != http.StatusOK || !bytes.Contains(a[0].body, []byte(`"items":[]`)) {
					t.Fatalf("list: %v, want 200 with no items", a)
				}
				if len(fwd) != 1 {
					t.Fatalf("%d requests reached the fake for one pass-through list, want 1", len(fwd))
				}
				wantForwardedAsSent(t, fwd[0], l, key)
			}
		}

		// Worker 1 creates: forwarded as sent.
		first := wantCreatedAsSent(t, f, w1, create, key, "first create")
		accounts := f.Accounts(t, key)
		if len(accounts) != 1 {
			t.Fatalf("%d accounts after the first create, want 1", len(accounts))
		}

		// Worker 2's identical create while the link is pending: the first
		// answer again, not a second account.
		from := len(f.Requests(t, "", ""))
		second := w2.call(create)
		if len(second) != 1 || second[0].status != http.StatusCreated || second[0].header.Get(apierror.HeaderGuard) != "replayed" ||
			!bytes.Equal(second[0].body, first.body) {
			t.Errorf("second create while pending: %v (guard %q), want the first 201 replayed", second, second[len(second)-1].header.Get(apierror.HeaderGuard))
		}
		if posts := onlyMethod(fakeLog(t, f, from), http.MethodPost); len(posts) != 0 {
			t.Errorf("%d POSTs reached the fake for the replayed create", len(posts))
		}

		// Once the user finished the first link, the same create is a duplicate.
		f.SetStatus(t, accounts[0].ID, composiotest.StatusActive)
		from = len(f.Requests(t, "", ""))
		a := wantOnePOST(t, w2.call(create))
		wantConflict(t, asAnswer(a), "dupac_user", ac, accounts[0].ID)
		if posts := onlyMethod(fakeLog(t, f, from), http.MethodPost); len(posts) != 0 {
			t.Errorf("%d POSTs reached the fake for a refused create", len(posts))
		}
		if n := len(f.Accounts(t, key)); n != 1 {
			t.Errorf("%d accounts for dupac_user, want 1", n)
		}
	})

	// The generated client 1.44.0: /api/v3.1, compact JSON, the list the
	// SDK's guard sends, a link with an alias, the opt-in, and a Tool Router
	// session link.
	t.Run("client_1.44.0", func(t *testing.T) {
		const key = "py_key_cli1440"
		py := &pyClient{t: t, addr: target, key: key}
		defer py.close()
		link := pick(recs, http.MethodPost, "/api/v3.1/connected_accounts/link", "user_123")
		list := pick(recs, http.MethodGet, "/api/v3.1/connected_accounts", "")
		session := pick(recs, http.MethodPost, "/link", "")
		session = slices.DeleteFunc(session, func(r wireRecord) bool { return !strings.Contains(r.Path, "/tool_router/session/") })
		if len(link) != 1 || len(list) != 1 || len(session) != 1 {
			t.Fatalf("capture: %d links, %d lists, %d session links on v3.1, want 1 each", len(link), len(list), len(session))
		}

		from := len(f.Requests(t, "", ""))
		a := py.call(list)
		fwd := fakeLog(t, f, from)
		if len(a) != 1 || a[0].status != http.StatusOK || len(fwd) != 1 {
			t.Fatalf("list: %v, %d requests at the fake; want one 200, one request", a, len(fwd))
		}
		wantForwardedAsSent(t, fwd[0], list[0], key)

		first := wantCreatedAsSent(t, f, py, link, key, "link")
		firstID := decodeLink(t, asAnswer(first)).ConnectedAccountID
		f.SetStatus(t, firstID, composiotest.StatusActive)

		// The same link again: a duplicate, sent once.
		from = len(f.Requests(t, "", ""))
		wantConflict(t, asAnswer(wantOnePOST(t, py.call(link))), "user_123", ac, firstID)
		if posts := onlyMethod(fakeLog(t, f, from), http.MethodPost); len(posts) != 0 {
			t.Errorf("%d POSTs reached the fake for a refused link", len(posts))
		}

		// With the opt-in, where default_headers / extra_headers put it: a
		// second account on purpose, the header not forwarded.
		optIn := wantCreatedAsSent(t, f, py, link, key, "opt-in link", "x-composio-allow-multiple", "true")
		if id := decodeLink(t, asAnswer(optIn)).ConnectedAccountID; id == firstID {
			t.Errorf("the opt-in link answered the first account %s", id)
		}

		// The Tool Router session link, for the session's user.
		sid := strings.Split(session[0].Path, "/")[5]
		f.SeedSession(t, composiotest.SessionSeed{ID: sid, Credential: key, CreateBody: json.RawMessage(`{"user_id":"tr_user"}`)})
		authz := wantCreatedAsSent(t, f, py, session, key, "session link")
		trID := decodeLink(t, asAnswer(authz)).ConnectedAccountID
		f.SetStatus(t, trID, composiotest.StatusActive)
		from = len(f.Requests(t, "", ""))
		a2 := wantOnePOST(t, py.call(session))
		e := wantEnvelope(t, asAnswer(a2), http.StatusConflict, apierror.SlugMultipleAccounts)
		if a2.header.Get("x-should-retry") != "false" || !slices.Equal(e.ExistingAccountIDs, []string{trID}) || e.UserID != "tr_user" {
			t.Errorf("session link duplicate: x-should-retry %q, existing %v, user %q: %v",
				a2.header.Get("x-should-retry"), e.ExistingAccountIDs, e.UserID, a2)
		}
		if posts := onlyMethod(fakeLog(t, f, from), http.MethodPost); len(posts) != 0 {
			t.Errorf("%d POSTs reached the fake for a refused session link", len(posts))
		}
	})
}
