package intercept

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/composio-guard/composio-guard/internal/apierror"
	"github.com/composio-guard/composio-guard/internal/lock"
	"github.com/composio-guard/composio-guard/internal/reqscope"
	"github.com/composio-guard/composio-guard/internal/server"
)

const budgetLinkPath = "/api/v3.1/connected_accounts/link"

// recordingUpstream answers every link 201 and keeps the bodies it got.
type recordingUpstream struct {
	mu     sync.Mutex
	bodies [][]byte
}

func (u *recordingUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	u.mu.Lock()
	u.bodies = append(u.bodies, b)
	u.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write(linkAnswerBody)
}

func (u *recordingUpstream) got() [][]byte {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([][]byte(nil), u.bodies...)
}

// budgetProxy serves a guard with a small body budget behind the server's
// RequestID middleware, which ends each request's scope (and so gives its
// body bytes back) once it is served.
func budgetProxy(t *testing.T, mode Mode, budget int64) (*Guard, *recordingUpstream, *httptest.Server) {
	t.Helper()
	up := &recordingUpstream{}
	g := NewGuard(Config{Mode: mode, BodyBudgetBytes: budget, PendingAction: PendingOff, BodyReadTimeout: 10 * time.Second},
		staticLister{}, lock.NewMemory(), up, nil)
	srv := httptest.NewServer(server.RequestID(zap.NewNop())(Router(g, up)))
	t.Cleanup(srv.Close)
	return g, up, srv
}

// hog opens a link that announces a 1 MiB body, sends sent bytes of it and
// keeps the connection open; closing it ends the request.
func hog(t *testing.T, srv *httptest.Server, sent int) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: proxy\r\nX-Api-Key: k_hog\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", budgetLinkPath, 1<<20)
	if _, err := conn.Write(append([]byte(`{"user_id":"hog","auth_config_id":"ac_1","x":"`), bytes.Repeat([]byte("a"), sent)...)); err != nil {
		t.Fatal(err)
	}
	return conn
}

func waitInUse(t *testing.T, g *Guard, cond func(int64) bool, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond(g.links.tools.budget.inUse()) {
		if time.Now().After(deadline) {
			t.Fatalf("budget in use %d: never %s", g.links.tools.budget.inUse(), what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func budgetLink(t *testing.T, srv *httptest.Server, user string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, srv.URL+budgetLinkPath,
		strings.NewReader(`{"user_id":"`+user+`","auth_config_id":"ac_1"}`))
	req.Header.Set("X-Api-Key", "k_"+user)
	req.Header.Set("Content-Type", "application/json")
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, b
}

// An exhausted budget answers 503 in Composio's envelope with Retry-After and
// Connection: close, and forwards nothing; once the body holding it is done,
// the budget is back and the next request goes through.
func TestBodyBudgetExhaustedThenReleased(t *testing.T) {
	g, up, srv := budgetProxy(t, ModeEnforce, 16<<10)

	conn := hog(t, srv, 12<<10) // alone, it may take the whole budget: 16 KiB of buffer
	waitInUse(t, g, func(n int64) bool { return n == 16<<10 }, "16 KiB")

	res, body := budgetLink(t, srv, "alice")
	if res.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503: %s", res.StatusCode, body)
	}
	if got := res.Header.Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After %q, want 1", got)
	}
	if !res.Close || res.Header.Get("Content-Type") != "application/json" {
		t.Errorf("want Connection: close and JSON; close %v, header %v", res.Close, res.Header)
	}
	var env struct {
		Error struct {
			Slug      string `json:"slug"`
			Code      int    `json:"code"`
			Status    int    `json:"status"`
			RequestID string `json:"request_id"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		t.Fatalf("not an envelope: %v: %s", err, body)
	}
	if e := env.Error; e.Slug != apierror.SlugProxyBusy || e.Code != apierror.CodeProxyBusy || e.Status != 503 ||
		e.RequestID == "" || e.RequestID != res.Header.Get(apierror.HeaderRequestID) {
		t.Errorf("envelope %+v, request id header %q", e, res.Header.Get(apierror.HeaderRequestID))
	}
	if n := len(up.got()); n != 0 {
		t.Fatalf("%d requests reached the upstream, want none", n)
	}
	waitInUse(t, g, func(n int64) bool { return n == 16<<10 }, "back to the hog's 16 KiB after the refusal")

	conn.Close() // the hog's request ends: its bytes go back
	waitInUse(t, g, func(n int64) bool { return n == 0 }, "released")

	res, body = budgetLink(t, srv, "bob")
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("after release: status %d, want 201: %s", res.StatusCode, body)
	}
	waitInUse(t, g, func(n int64) bool { return n == 0 }, "released after a forward")
}

// In shadow mode a body the budget cannot cover is still forwarded, whole:
// the part read and the unread rest, streamed.
func TestBodyBudgetShadowForwardsWhole(t *testing.T) {
	g, up, srv := budgetProxy(t, ModeShadow, 16<<10)
	conn := hog(t, srv, 12<<10)
	waitInUse(t, g, func(n int64) bool { return n == 16<<10 }, "16 KiB")

	payload := `{"user_id":"carol","auth_config_id":"ac_1","pad":"` + strings.Repeat("p", 20<<10) + `"}`
	res, err := srv.Client().Post(srv.URL+budgetLinkPath, "application/json", strings.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("status %d, want the upstream's 201", res.StatusCode)
	}
	got := up.got()
	if len(got) != 1 || string(got[0]) != payload {
		t.Fatalf("upstream got %d bodies; first intact: %v", len(got), len(got) == 1 && string(got[0]) == payload)
	}
	conn.Close()
	waitInUse(t, g, func(n int64) bool { return n == 0 }, "released")
}

// The buffer grows with the bytes received, whatever Content-Length says,
// and every byte of it is reserved first.
func TestReadAllGrowsWithBytesReceived(t *testing.T) {
	b := newByteBudget(1 << 30)
	h := bodyHold{b: b, sc: scopeThatEnds()}

	// 116 bytes of an announced MiB, then the connection ends.
	buf, err := readAll(io.MultiReader(strings.NewReader(strings.Repeat("x", 116)), failing{}), 1<<20, 1<<20, h)
	if err == nil || len(buf) != 116 || cap(buf) > firstBodyBuffer {
		t.Fatalf("len %d cap %d err %v; want 116 bytes in at most %d", len(buf), cap(buf), err, firstBodyBuffer)
	}
	if b.inUse() != int64(cap(buf)) {
		t.Errorf("reserved %d for a buffer of %d", b.inUse(), cap(buf))
	}

	for _, tc := range []struct {
		n, hint int64
		maxCap  int
	}{
		{300, 300, 301},                     // a link body: one exact buffer
		{100 << 10, 100 << 10, 100<<10 + 1}, // grown by doubling, the last step to the announced size
		{100 << 10, -1, 128 << 10},          // unknown length: doubling
		{1 << 20, 1 << 20, 1<<20 + 1},       // the cap: never past max+1
	} {
		h := bodyHold{b: newByteBudget(1 << 30), sc: scopeThatEnds()}
		buf, err := readAll(strings.NewReader(strings.Repeat("y", int(tc.n))), tc.hint, 1<<20, h)
		if err != nil || int64(len(buf)) != tc.n || cap(buf) > tc.maxCap {
			t.Errorf("%d bytes, hint %d: len %d cap %d err %v, want cap <= %d", tc.n, tc.hint, len(buf), cap(buf), err, tc.maxCap)
		}
		if h.b.inUse() < int64(cap(buf)) || h.b.inUse() > 2*int64(cap(buf)) {
			t.Errorf("%d bytes: reserved %d for a buffer of %d", tc.n, h.b.inUse(), cap(buf))
		}
	}

	// A budget that cannot cover the next buffer stops the read, keeping what came.
	tight := newByteBudget(8 << 10)
	other := scopeThatEnds()
	if !(bodyHold{b: tight, sc: other}).grow(6 << 10) {
		t.Fatal("first hold refused")
	}
	buf, err = readAll(strings.NewReader(strings.Repeat("z", 10<<10)), 10<<10, 1<<20, bodyHold{b: tight, sc: scopeThatEnds()})
	if err != errBodyBudget || len(buf) != 0 {
		t.Fatalf("len %d err %v, want errBodyBudget before any byte", len(buf), err)
	}
	if tight.inUse() != 6<<10 {
		t.Fatalf("in use %d after a refusal, want the other hold's 6 KiB", tight.inUse())
	}
	other.End()
	if tight.inUse() != 0 {
		t.Fatalf("in use %d after End", tight.inUse())
	}
}

type failing struct{}

func (failing) Read([]byte) (int, error) { return 0, io.ErrUnexpectedEOF }

// A request alone is never refused, whatever its size: the cap, not the
// budget, bounds one body.
func TestBodyBudgetAloneAlwaysFits(t *testing.T) {
	b := newByteBudget(1 << 10)
	sc := scopeThatEnds()
	buf, err := readAll(strings.NewReader(strings.Repeat("w", 64<<10)), 64<<10, 1<<20, bodyHold{b: b, sc: sc})
	if err != nil || len(buf) != 64<<10 {
		t.Fatalf("len %d err %v", len(buf), err)
	}
	if _, err := readAll(strings.NewReader("{}"), 2, 1<<20, bodyHold{b: b, sc: scopeThatEnds()}); err != errBodyBudget {
		t.Fatalf("a second request while the first holds the budget: %v, want errBodyBudget", err)
	}
	sc.End()
	if b.inUse() != 0 {
		t.Fatalf("in use %d after End", b.inUse())
	}
}

// scopeThatEnds is a scope as the server's middleware makes it: one that can hold.
func scopeThatEnds() *reqscope.Scope {
	sc := &reqscope.Scope{}
	sc.WillEnd()
	return sc
}
