package hostile_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/composio-guard/composio-guard/internal/apierror"
	"github.com/composio-guard/composio-guard/internal/composiotest"
	"github.com/composio-guard/composio-guard/internal/testproc"
	"github.com/composio-guard/composio-guard/test/faults/harness"
)

const (
	key        = "test_key_hostile" // a test key: the fake's request log keeps it
	authConfig = "ac_hostile"
)

var seq atomic.Int64

func user(prefix string) string { return fmt.Sprintf("%s_%d", prefix, seq.Add(1)) }

// seenWith returns the requests that reached the upstream whose path, query
// or body contains marker.
func seenWith(up *harness.Upstream, marker string) []harness.Seen {
	var out []harness.Seen
	for _, s := range up.Seen() {
		if strings.Contains(s.RequestURI, marker) || strings.Contains(string(s.Body), marker) {
			out = append(out, s)
		}
	}
	return out
}

// linkPosts counts the link POSTs for u that reached the upstream.
func linkPosts(up *harness.Upstream, u string) int {
	n := 0
	for _, s := range seenWith(up, strconv.Quote(u)) {
		if s.Method == http.MethodPost && strings.HasSuffix(s.Path, "/connected_accounts/link") {
			n++
		}
	}
	return n
}

// answeredAfter waits (up to max) for the server to answer on c or close
// it, and returns how long after start that happened; ok is false when
// nothing came by max.
func answeredAfter(c net.Conn, start time.Time, max time.Duration) (time.Duration, bool) {
	_ = c.SetReadDeadline(start.Add(max))
	_, err := c.Read(make([]byte, 1))
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return time.Since(start), false
	}
	return time.Since(start), true
}

// TestSlowlorisHeaders: clients dribbling header lines are cut by
// GUARD_READ_HEADER_TIMEOUT while an honest client is served at full speed,
// and nothing of theirs reaches Composio.
func TestSlowlorisHeaders(t *testing.T) {
	t.Parallel()
	up := harness.NewUpstream(t)
	p := testproc.StartProxy(t, up.URL, "GUARD_READ_HEADER_TIMEOUT=1s")
	c := harness.Client(t)
	const (
		dribblers = 30
		drip      = 200 * time.Millisecond
		giveUp    = 6 * time.Second
		bound     = 2500 * time.Millisecond // the 1s timeout, plus scheduling slack on a busy 2-core machine
	)
	var wg sync.WaitGroup
	cuts := make([]time.Duration, dribblers)
	cut := make([]bool, dribblers)
	for i := range dribblers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.Dial("tcp", p.Addr)
			if err != nil {
				t.Errorf("dial: %v", err)
				return
			}
			defer conn.Close()
			start := time.Now()
			go func() {
				_, _ = io.WriteString(conn, "GET /api/v3/connected_accounts?slowloris="+strconv.Itoa(i)+" HTTP/1.1\r\nHost: proxy\r\nx-api-key: "+key+"\r\n")
				for time.Since(start) < giveUp {
					time.Sleep(drip)
					if _, err := fmt.Fprintf(conn, "X-Drip-%d: y\r\n", i); err != nil {
						return
					}
				}
			}()
			cuts[i], cut[i] = answeredAfter(conn, start, giveUp+time.Second)
		}()
	}
	// An honest client meanwhile.
	time.Sleep(300 * time.Millisecond)
	for i := range 10 {
		a := harness.Do(c, http.MethodGet, p.URL+"/api/v3/connected_accounts?honest="+strconv.Itoa(i), map[string]string{"x-api-key": key}, "")
		if a.Err != nil || a.Status != http.StatusOK || a.Took > 500*time.Millisecond {
			t.Errorf("honest request %d during the slowloris: %v", i, a)
		}
	}
	wg.Wait()
	for i := range dribblers {
		if !cut[i] || cuts[i] > bound {
			t.Errorf("dribbler %d: cut=%v after %s, want cut within %s", i, cut[i], cuts[i], bound)
		}
	}
	if n := len(seenWith(up, "slowloris=")); n != 0 {
		t.Errorf("%d dribbled requests reached Composio", n)
	}
}

// TestSlowBodyOnGuardedRoute: a guarded body is buffered by the proxy
// before the guard decides, so its size and its time must both be bounded.
// Size: GUARD_MAX_BODY_BYTES (413). Time: while a body dribbles, honest
// clients, the same user included, are served (the per-key lock is not held
// during the read), and the dribbler itself must be cut after a bounded time.
func TestSlowBodyOnGuardedRoute(t *testing.T) {
	t.Parallel()
	up := harness.NewUpstream(t)
	// GUARD_BODY_READ_TIMEOUT bounds the guarded body read (408 past it).
	p := testproc.StartProxy(t, up.URL, "GUARD_READ_HEADER_TIMEOUT=1s", "GUARD_LOOKUP_TIMEOUT=2s",
		"GUARD_MAX_BODY_BYTES=4096", "GUARD_BODY_READ_TIMEOUT=2s")
	c := harness.Client(t)

	t.Run("size: a chunked body past GUARD_MAX_BODY_BYTES is refused at the cap", func(t *testing.T) {
		u := user("big_body")
		conn, err := net.Dial("tcp", p.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, _ = io.WriteString(conn, "POST /api/v3/connected_accounts/link HTTP/1.1\r\nHost: proxy\r\nx-api-key: "+key+
			"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
		first := fmt.Sprintf(`{"user_id":%q,"auth_config_id":%q,"pad":"`, u, authConfig)
		_, _ = fmt.Fprintf(conn, "%x\r\n%s\r\n", len(first), first)
		// Stream up to 64 KiB more; the answer must come after about 4 KiB.
		go func() {
			chunk := strings.Repeat("x", 1024)
			for range 64 {
				if _, err := fmt.Fprintf(conn, "%x\r\n%s\r\n", len(chunk), chunk); err != nil {
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("no 413 within 5s for a chunked body past the cap (%v). If the proxy logged 413: http.MaxBytesReader "+
				"could not tell net/http to close the connection (its requestTooLarge hook only works on net/http's own "+
				"ResponseWriter, not on a middleware wrapper), so the server first drains up to 256 KiB more of the body "+
				"and a client that stops sending never gets the answer", err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("status %d, want 413", res.StatusCode)
		}
		if n := linkPosts(up, u); n != 0 {
			t.Errorf("%d oversized links reached Composio", n)
		}
	})

	t.Run("time: a dribbled body does not starve others and is cut", func(t *testing.T) {
		u := user("slow_body")
		body := harness.LinkBody(u, authConfig)
		const (
			drip  = 200 * time.Millisecond
			tail  = 30              // bytes dribbled: 30 x 200ms = 6s in all
			bound = 4 * time.Second // GUARD_BODY_READ_TIMEOUT (2s) or any bound of that order, plus slack
			max   = tail*drip + 2*time.Second
		)
		conn, err := net.Dial("tcp", p.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		start := time.Now()
		_, _ = io.WriteString(conn, "POST /api/v3/connected_accounts/link HTTP/1.1\r\nHost: proxy\r\nx-api-key: "+key+
			"\r\nContent-Type: application/json\r\nX-Request-Id: hostile-slow-body\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body[:len(body)-tail])
		go func() {
			for i := len(body) - tail; i < len(body); i++ {
				time.Sleep(drip)
				if _, err := io.WriteString(conn, body[i:i+1]); err != nil {
					return
				}
			}
		}()

		// Honest clients while the body dribbles: another client, and the
		// same user (whose per-key lock must not be held during the read).
		time.Sleep(300 * time.Millisecond)
		if a := harness.Do(c, http.MethodGet, p.URL+"/api/v3/connected_accounts?honest=1", map[string]string{"x-api-key": key}, ""); a.Err != nil || a.Status != 200 || a.Took > time.Second {
			t.Errorf("pass-through during a dribbled body: %v", a)
		}
		if a := harness.Link(c, p.URL, key, u, authConfig, nil); a.Err != nil || a.Status != http.StatusCreated || a.Took > time.Second {
			t.Errorf("a link for the same user during a dribbled body: %v", a)
		}

		_ = conn.SetReadDeadline(start.Add(max))
		rd := bufio.NewReader(conn)
		res, err := http.ReadResponse(rd, nil)
		took := time.Since(start)
		if err != nil || took > bound {
			t.Fatalf("UNBOUNDED: the proxy waited %s for a guarded body dribbled at 1 byte per %s (%v); "+
				"want a 408 within %s (GUARD_BODY_READ_TIMEOUT): one slow client would hold a "+
				"connection, a goroutine and up to GUARD_MAX_BODY_BYTES for as long as it likes", took, drip, err, bound)
		}
		got, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(got), apierror.SlugBodyTimeout) {
			t.Errorf("answer %d %s, want 408 %s", res.StatusCode, got, apierror.SlugBodyTimeout)
		}
		// The connection closes: net/http must not wait on the silent client
		// to drain what is left of its body.
		_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		if _, err := rd.ReadByte(); err == nil {
			t.Errorf("bytes after the 408 on the same connection")
		} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Errorf("the connection stayed open 3s after the 408: the rest of the dribbled body is being drained")
		}
		if n := linkPosts(up, u); n != 1 { // the honest link for the same user above
			t.Errorf("%d link POSTs reached Composio, want only the honest one", n)
		}
	})
}

// TestOversizedHeaders: headers past GUARD_MAX_HEADER_BYTES are refused with
// 431 by the server before any handler runs, on any route; nothing reaches
// Composio. Go allows 4 KiB of slack past the setting, so the cases go well
// beyond it.
func TestOversizedHeaders(t *testing.T) {
	t.Parallel()
	up := harness.NewUpstream(t)
	p := testproc.StartProxy(t, up.URL, "GUARD_MAX_HEADER_BYTES=4096")
	c := harness.Client(t)
	many := map[string]string{}
	for i := range 200 {
		many[fmt.Sprintf("X-Many-%03d", i)] = strings.Repeat("m", 100)
	}
	cases := []struct {
		name   string
		method string
		path   string
		header map[string]string
		body   string
		want   int
	}{
		{"one huge header, pass-through", http.MethodGet, "/api/v3/connected_accounts?oversized=1", map[string]string{"X-Huge": strings.Repeat("h", 16<<10)}, "", 431},
		{"many headers, pass-through", http.MethodGet, "/api/v3/connected_accounts?oversized=2", many, "", 431},
		{"huge header, guarded link", http.MethodPost, "/api/v3/connected_accounts/link?oversized=3", map[string]string{"X-Huge": strings.Repeat("h", 16<<10)}, harness.LinkBody("u_oversized", authConfig), 431},
		{"within the limit", http.MethodGet, "/api/v3/connected_accounts?oversized=4", map[string]string{"X-Fine": strings.Repeat("f", 2<<10)}, "", 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := map[string]string{"x-api-key": key}
			for k, v := range tc.header {
				h[k] = v
			}
			marker := tc.path[strings.Index(tc.path, "oversized="):]
			a := harness.Do(c, tc.method, p.URL+tc.path, h, tc.body)
			if a.Err != nil || a.Status != tc.want {
				t.Fatalf("got %v, want %d", a, tc.want)
			}
			n := len(seenWith(up, marker))
			if tc.want == 431 && n != 0 {
				t.Errorf("%d refused requests reached Composio", n)
			}
			if tc.want == 200 && n != 1 {
				t.Errorf("%d requests reached Composio, want 1", n)
			}
		})
	}
}

// TestAmbiguousFraming: requests framed two ways at once. The proxy must
// never let the two framings disagree on the way to Composio, and (RFC 9112
// §6.1) must close the connection after answering a request that carried
// both Content-Length and Transfer-Encoding, so bytes hidden past the
// chunked body never become a request of their own.
func TestAmbiguousFraming(t *testing.T) {
	t.Parallel()
	up := harness.NewUpstream(t)
	p := testproc.StartProxy(t, up.URL)
	const wait = 2 * time.Second
	head := func(method, target string, extra ...string) string {
		return method + " " + target + " HTTP/1.1\r\nHost: proxy\r\nx-api-key: " + key + "\r\nContent-Type: application/json\r\n" + strings.Join(extra, "")
	}

	t.Run("CL and TE: smuggled request behind the chunked body", func(t *testing.T) {
		u := user("smuggled")
		link := harness.LinkBody(u, authConfig)
		smuggled := head(http.MethodPost, "/api/v3/connected_accounts/link", "Content-Length: "+strconv.Itoa(len(link))+"\r\n") + "\r\n" + link
		body := "0\r\n\r\n" + smuggled
		raw := head(http.MethodPost, "/api/v3.1/tool_router/session?framing=clte",
			"Content-Length: "+strconv.Itoa(len(body))+"\r\n", "Transfer-Encoding: chunked\r\n") + "\r\n" + body
		rr := harness.RawExchange(p.Addr, raw, wait)
		if len(rr.Responses) == 0 {
			t.Fatalf("no answer: %v", rr.Err)
		}
		if first := seenWith(up, "framing=clte"); len(first) > 1 || len(first) == 1 && len(first[0].Body) != 0 {
			t.Errorf("Composio got %d requests for the first message (first body %q); want at most 1 with the chunked (empty) body", len(first), first[0].Body)
		}
		if len(rr.Responses) > 1 || !rr.Closed || linkPosts(up, u) != 0 {
			t.Errorf("RFC 9112 §6.1: after a request with both Content-Length and Transfer-Encoding the connection must close; "+
				"got %d answers on it (closed=%v) and the request hidden behind the chunked body reached Composio %d times",
				len(rr.Responses), rr.Closed, linkPosts(up, u))
		}
	})

	t.Run("CL and TE on a guarded link: one framing upstream", func(t *testing.T) {
		u := user("clte_link")
		link := harness.LinkBody(u, authConfig)
		chunked := fmt.Sprintf("%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n", 10, link[:10], len(link)-10, link[10:])
		raw := head(http.MethodPost, "/api/v3/connected_accounts/link", "Content-Length: 10\r\n", "Transfer-Encoding: chunked\r\n", "Connection: close\r\n") + "\r\n" + chunked
		rr := harness.RawExchange(p.Addr, raw, wait)
		if len(rr.Responses) != 1 {
			t.Fatalf("got %d answers (%v), want 1", len(rr.Responses), rr.Err)
		}
		st := rr.Responses[0].StatusCode
		if st == http.StatusBadRequest {
			if n := linkPosts(up, u); n != 0 {
				t.Errorf("refused with 400 but %d link POSTs reached Composio", n)
			}
			return
		}
		if st != http.StatusCreated {
			t.Fatalf("status %d (%s), want 400 or the link forwarded (201)", st, rr.Bodies[0])
		}
		got := seenWith(up, strconv.Quote(u))
		if len(got) != 1 {
			t.Fatalf("%d link POSTs reached Composio, want 1", len(got))
		}
		if s := got[0]; string(s.Body) != link || s.ContentLength != int64(len(link)) || len(s.TransferEncoding) != 0 {
			t.Errorf("forwarded framing: body %q, Content-Length %d, Transfer-Encoding %v; want the whole chunked body with its own length only",
				s.Body, s.ContentLength, s.TransferEncoding)
		}
	})

	rejected := []struct {
		name  string
		extra []string
		body  string
	}{
		{"two different Content-Lengths", []string{"Content-Length: 5\r\n", "Content-Length: 6\r\n"}, "abcdef"},
		{"Transfer-Encoding not ending in chunked", []string{"Transfer-Encoding: chunked, identity\r\n"}, "0\r\n\r\n"},
		{"Transfer-Encoding twice", []string{"Transfer-Encoding: chunked\r\n", "Transfer-Encoding: chunked\r\n"}, "0\r\n\r\n"},
		{"space before the colon", []string{"Transfer-Encoding : chunked\r\n", "Content-Length: 5\r\n"}, "0\r\n\r\n"},
		{"signed Content-Length", []string{"Content-Length: +5\r\n"}, "abcde"},
	}
	for i, tc := range rejected {
		t.Run(tc.name, func(t *testing.T) {
			marker := "framing=bad" + strconv.Itoa(i)
			raw := head(http.MethodPost, "/api/v3/connected_accounts/link?"+marker, tc.extra...) + "\r\n" + tc.body
			rr := harness.RawExchange(p.Addr, raw, wait)
			if len(rr.Responses) != 1 {
				t.Fatalf("got %d answers (%v), want 1 refusal", len(rr.Responses), rr.Err)
			}
			if st := rr.Responses[0].StatusCode; st != http.StatusBadRequest && st != http.StatusNotImplemented {
				t.Errorf("status %d, want 400 (or 501 for an unsupported coding)", st)
			}
			if !rr.Closed {
				t.Errorf("connection left open after a refused framing")
			}
			if n := len(seenWith(up, marker)); n != 0 {
				t.Errorf("%d requests reached Composio", n)
			}
		})
	}
}

// TestClientDisconnect: a client goes away mid-body, during the guard's
// lookup, or while the link is being forwarded. The access log says 499,
// nothing is created at Composio, and the per-key lock is released: the same
// user's next link proceeds at once.
func TestClientDisconnect(t *testing.T) {
	t.Parallel()
	up := harness.NewUpstream(t)
	p := testproc.StartProxy(t, up.URL, "GUARD_LOOKUP_TIMEOUT=5s")
	c := harness.Client(t)
	const slow = 2 * time.Second

	cases := []struct {
		name  string
		fault string // fake route slowed down for the one request
		half  bool   // send only half the body
	}{
		{"mid-body", "", true},
		{"during the lookup", composiotest.RouteList, false},
		{"during the forward", composiotest.RouteLink, false},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u := user("gone")
			rid := "hostile-gone-" + strconv.Itoa(i)
			if tc.fault != "" {
				if err := up.Fake.SetFault(tc.fault, composiotest.Fault{Latency: slow, Times: 1}); err != nil {
					t.Fatal(err)
				}
				defer up.Fake.ClearFault(tc.fault)
			}
			body := harness.LinkBody(u, authConfig)
			sent := body
			if tc.half {
				sent = body[:len(body)/2]
			}
			conn, err := net.Dial("tcp", p.Addr)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			_, _ = io.WriteString(conn, "POST /api/v3/connected_accounts/link HTTP/1.1\r\nHost: proxy\r\nx-api-key: "+key+
				"\r\nContent-Type: application/json\r\nX-Request-Id: "+rid+"\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+sent)
			time.Sleep(300 * time.Millisecond)
			conn.Close()

			line, ok := p.AccessLine(rid, 3*time.Second)
			if !ok {
				t.Fatalf("no access-log line for %s", rid)
			}
			if st, _ := line["status"].(float64); st != 499 {
				t.Errorf("access log status %v, want 499 (client closed request); line %v", line["status"], line)
			}

			// Past the fake's latency: a request that was not cancelled
			// upstream would have created the account by now.
			time.Sleep(time.Until(start.Add(slow + 500*time.Millisecond)))
			if n := linkPosts(up, u); tc.fault != composiotest.RouteLink && n != 0 {
				t.Errorf("%d link POSTs reached Composio for a client that went away", n)
			}
			if n := len(up.Accounts(key, u, authConfig)); n != 0 {
				t.Errorf("%d accounts created for a client that went away", n)
			}
			a := harness.Link(c, p.URL, key, u, authConfig, nil)
			if a.Err != nil || a.Status != http.StatusCreated || a.Took > time.Second {
				t.Errorf("the same user's next link: %v; want 201 at once (the lock released)", a)
			}
			if n := len(up.Accounts(key, u, authConfig)); n != 1 {
				t.Errorf("%d accounts after the next link, want 1", n)
			}
		})
	}
}

// TestSpoofedForwarding: Host, absolute-form request targets, a path that
// looks like an authority, CONNECT, and forged X-Forwarded-*/Forwarded/
// X-Real-Ip. The request goes to the configured upstream only (a canary
// named in the request is never dialled), with the upstream's own Host, and
// the forged forwarding headers reach it only when GUARD_TRUST_FORWARDED=true.
func TestSpoofedForwarding(t *testing.T) {
	t.Parallel()
	const forgedIP = "6.6.6.6"
	forged := "X-Forwarded-For: " + forgedIP + "\r\nX-Forwarded-Host: evil.example\r\nX-Forwarded-Proto: https\r\n" +
		"Forwarded: for=" + forgedIP + ";host=evil.example;proto=https\r\nX-Real-Ip: " + forgedIP + "\r\n"
	for _, trust := range []bool{false, true} {
		t.Run("trust="+strconv.FormatBool(trust), func(t *testing.T) {
			t.Parallel()
			up := harness.NewUpstream(t)
			canary := harness.NewCanary(t)
			p := testproc.StartProxy(t, up.URL, "GUARD_TRUST_FORWARDED="+strconv.FormatBool(trust))
			evil := canary.Addr
			link := func(u string) string { return harness.LinkBody(u, authConfig) }
			u1, u2 := user("spoof"), user("spoof")
			reqs := []struct {
				name, raw, marker string
			}{
				{"absolute-form pass-through", "GET http://" + evil + "/api/v3/connected_accounts?spoof=abs HTTP/1.1\r\nHost: " + evil + "\r\nx-api-key: " + key + "\r\n" + forged + "Connection: close\r\n\r\n", "spoof=abs"},
				{"spoofed Host on a guarded link", "POST /api/v3/connected_accounts/link HTTP/1.1\r\nHost: " + evil + "\r\nx-api-key: " + key + "\r\nContent-Type: application/json\r\n" + forged +
					"Content-Length: " + strconv.Itoa(len(link(u1))) + "\r\nConnection: close\r\n\r\n" + link(u1), strconv.Quote(u1)},
				{"absolute-form guarded link", "POST http://" + evil + "/api/v3/connected_accounts/link HTTP/1.1\r\nHost: evil.example\r\nx-api-key: " + key + "\r\nContent-Type: application/json\r\n" + forged +
					"Content-Length: " + strconv.Itoa(len(link(u2))) + "\r\nConnection: close\r\n\r\n" + link(u2), strconv.Quote(u2)},
				{"authority-looking path", "GET //" + evil + "/api/v3/connected_accounts?spoof=dslash HTTP/1.1\r\nHost: proxy\r\nx-api-key: " + key + "\r\n" + forged + "Connection: close\r\n\r\n", "spoof=dslash"},
			}
			var forwarded []harness.Seen // the requests the clients sent, as they reached Composio
			for _, rq := range reqs {
				rr := harness.RawExchange(p.Addr, rq.raw, 3*time.Second)
				if len(rr.Responses) != 1 {
					t.Errorf("%s: %d answers (%v), want 1", rq.name, len(rr.Responses), rr.Err)
					continue
				}
				got := seenWith(up, rq.marker)
				forwarded = append(forwarded, got...)
				if len(got) != 1 {
					t.Errorf("%s: reached the configured upstream %d times, want 1 (answer %d %s)", rq.name, len(got), rr.Responses[0].StatusCode, rr.Bodies[0])
				}
			}
			// CONNECT must not become a tunnel to the named host.
			rr := harness.RawExchange(p.Addr, "CONNECT "+evil+" HTTP/1.1\r\nHost: "+evil+"\r\n"+forged+"\r\n", 2*time.Second)
			if len(rr.Responses) == 1 && rr.Responses[0].StatusCode == http.StatusOK {
				t.Errorf("CONNECT %s answered 200: a tunnel?", evil)
			}

			if n := canary.Dials(); n != 0 {
				t.Errorf("the host named by the client was dialled %d times; only the configured upstream may be", n)
			}
			for _, s := range up.Seen() {
				if s.Host != up.Addr {
					t.Errorf("%s %s reached Composio with Host %q, want the upstream's own %q", s.Method, s.RequestURI, s.Host, up.Addr)
				}
				// Origin-form only: an absolute-form target could send a
				// further hop elsewhere. ("//host/x" is a path, sent to
				// the upstream's Host like any other.)
				if !strings.HasPrefix(s.RequestURI, "/") {
					t.Errorf("request target %q is not in origin-form", s.RequestURI)
				}
				forgedSeen := []string{}
				for k, vs := range s.Header {
					for _, v := range vs {
						if strings.Contains(v, forgedIP) || strings.Contains(v, "evil.example") || strings.Contains(v, evil) {
							forgedSeen = append(forgedSeen, k+": "+v)
						}
					}
				}
				if !trust && len(forgedSeen) > 0 {
					t.Errorf("%s %s: forged forwarding headers reached Composio with GUARD_TRUST_FORWARDED=false: %v", s.Method, s.RequestURI, forgedSeen)
				}
			}
			for _, s := range forwarded {
				if trust && !strings.Contains(s.Header.Get("X-Forwarded-For"), forgedIP) {
					t.Errorf("%s %s: with GUARD_TRUST_FORWARDED=true the trusted hop's X-Forwarded-For should pass on; got %q",
						s.Method, s.RequestURI, s.Header.Get("X-Forwarded-For"))
				}
			}
		})
	}
}

// TestReplayStaysWithCredential: a pending link's answer (its redirect URL
// lets whoever opens it connect an account as that user) is replayed only to
// a caller with the same credential. A caller of another project naming the
// same user and auth config gets its own link from Composio, never the first
// caller's.
func TestReplayStaysWithCredential(t *testing.T) {
	t.Parallel()
	up := harness.NewUpstream(t)
	p := testproc.StartProxy(t, up.URL)
	c := harness.Client(t)
	const path = "/api/v3.1/connected_accounts/link"
	u := user("victim")
	body := harness.LinkBody(u, authConfig)
	owner := map[string]string{"x-user-api-key": "uak_test_owner", "x-org-id": "org_1", "x-project-id": "proj_1"}
	first := harness.Do(c, http.MethodPost, p.URL+path, owner, body)
	if first.Err != nil || first.Status != http.StatusCreated || first.AccountID() == "" {
		t.Fatalf("first link: %v", first)
	}
	if again := harness.Do(c, http.MethodPost, p.URL+path, owner, body); again.Header.Get("X-Composio-Guard") != "replayed" || again.AccountID() != first.AccountID() {
		t.Fatalf("the owner's repeat should be replayed: %v", again)
	}
	others := []struct {
		name   string
		header map[string]string
	}{
		{"another project key", map[string]string{"x-api-key": "test_key_other"}},
		{"same user key, another project", map[string]string{"x-user-api-key": "uak_test_owner", "x-org-id": "org_1", "x-project-id": "proj_2"}},
		{"same user key, another org", map[string]string{"x-user-api-key": "uak_test_owner", "x-org-id": "org_2", "x-project-id": "proj_1"}},
		{"an org key", map[string]string{"x-org-api-key": "oak_test_other", "x-project-id": "proj_1"}},
	}
	for _, o := range others {
		t.Run(o.name, func(t *testing.T) {
			a := harness.Do(c, http.MethodPost, p.URL+path, o.header, body)
			if a.Err != nil || a.Status != http.StatusCreated {
				t.Fatalf("got %v, want its own 201", a)
			}
			if a.Header.Get("X-Composio-Guard") == "replayed" || a.AccountID() == first.AccountID() ||
				strings.Contains(string(a.Body), first.AccountID()) {
				t.Errorf("another credential got the first caller's pending link: %v", a)
			}
		})
	}
}
