package hostile_test

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/composio-guard/composio-guard/internal/testproc"
	"github.com/composio-guard/composio-guard/test/faults/harness"
)

// rss reads the resident memory of process pid (VmRSS of /proc/PID/status).
func rss(t *testing.T, pid int) int64 {
	t.Helper()
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Skipf("no /proc here: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("VmRSS %q: %v", v, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// announce opens n connections that each send the headers of a link
// announcing a body of announced bytes, then sent bytes of it, and hold on.
func announce(t *testing.T, addr, tag string, n, announced, sent int) []net.Conn {
	t.Helper()
	held := make([]net.Conn, 0, n)
	t.Cleanup(func() {
		for _, conn := range held {
			conn.Close()
		}
	})
	for i := range n {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		held = append(held, conn)
		body := fmt.Sprintf(`{"user_id":"mem_%s_%d","auth_config_id":%q,"callback_url":"https://app.example/cb","pad":"`, tag, i, authConfig)
		body += strings.Repeat("x", sent-len(body))
		if _, err := fmt.Fprintf(conn, "POST /api/v3.1/connected_accounts/link HTTP/1.1\r\nHost: proxy\r\nx-api-key: %s\r\n"+
			"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", key, announced, body); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	return held
}

// inFlight waits until the number of requests the proxy serves at once
// meets ok.
func inFlight(t *testing.T, p *testproc.Proxy, what string, ok func(n float64) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, _ := p.Metric(t, "composio_guard_http_requests_in_flight", nil)
		if ok(n) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v requests in flight after 10s, want %s", n, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// heapInUse reads the proxy's heap in use (go_memstats_heap_inuse_bytes):
// what it allocated, resident or not yet.
func heapInUse(t *testing.T, p *testproc.Proxy) float64 {
	t.Helper()
	v, ok := p.Metric(t, "go_memstats_heap_inuse_bytes", nil)
	if !ok {
		t.Fatal("no go_memstats_heap_inuse_bytes in /metrics")
	}
	return v
}

// TestAnnouncedBodiesCostWhatArrives: what a guarded request costs the proxy
// is bounded by what it sent, not by what it announced. 300 unauthenticated
// connections each announce a 1 MiB link body (GUARD_MAX_BODY_BYTES, so no
// 413), send 116 bytes of it and hold on. A buffer sized from Content-Length
// costs 300 MiB; one that grows with the bytes received costs a few KiB per
// connection. Meanwhile an honest link is answered.
//
// Memory the runtime takes fresh from the kernel is not resident until
// written, but heap it reuses is zeroed first, so the cost of a buffer shows
// in RSS once the heap has been used, as in any proxy that has run for a
// while: two waves are sent and dropped (the collector frees the first while
// the second arrives), then the third is held and measured, against the RSS
// before any. The heap in use is checked too: it counts what was allocated,
// resident or not yet.
//
// The two bounds differ because RSS holds more than the heap in use: the
// goroutine stacks of the held connections and the heap the dropped waves
// left, which the runtime returns to the kernel lazily. Measured on two
// cores: heap in use +12 MiB (net/http's own 8 KiB of bufio per connection
// is most of it), RSS +24 to +32 MiB. A buffer sized from Content-Length
// would cost 300 MiB of either.
func TestAnnouncedBodiesCostWhatArrives(t *testing.T) {
	t.Parallel()
	up := harness.NewUpstream(t)
	// The read timeout outlives the test: the held bodies stay held.
	p := testproc.StartProxy(t, up.URL, "GUARD_BODY_READ_TIMEOUT=30s")
	c := harness.Client(t)
	const (
		conns     = 300
		announced = 1 << 20
		sent      = 116
		maxHeap   = 32 << 20
		maxRSS    = 64 << 20
	)
	if a := harness.Link(c, p.URL, key, user("mem_warmup"), authConfig, nil); a.Err != nil || a.Status != http.StatusCreated {
		t.Fatalf("warm-up link: %v", a)
	}
	before := rss(t, p.PID())

	all := func(n float64) bool { return n >= conns }
	heapBefore := heapInUse(t, p)
	for wave := range 2 {
		dropped := announce(t, p.Addr, "dropped"+strconv.Itoa(wave), conns, announced, sent)
		inFlight(t, p, "all of a wave", all)
		for _, conn := range dropped {
			conn.Close()
		}
		inFlight(t, p, "the wave gone", func(n float64) bool { return n < 10 })
	}
	announce(t, p.Addr, "held", conns, announced, sent)
	inFlight(t, p, "all of the held wave", all)

	if a := harness.Link(c, p.URL, key, user("mem_honest"), authConfig, nil); a.Err != nil || a.Status != http.StatusCreated || a.Took > 2*time.Second {
		t.Errorf("an honest link while %d bodies are held: %v", conns, a)
	}

	after := before
	for range 10 { // the highest of a few samples
		time.Sleep(50 * time.Millisecond)
		after = max(after, rss(t, p.PID()))
	}
	growth := after - before
	heapGrowth := heapInUse(t, p) - heapBefore
	t.Logf("RSS %.1f MiB before, %.1f MiB with %d connections each announcing %d bytes and sending %d: growth %.1f MiB (heap in use %+.1f MiB)",
		float64(before)/(1<<20), float64(after)/(1<<20), conns, announced, sent, float64(growth)/(1<<20), heapGrowth/(1<<20))
	if heapGrowth >= maxHeap {
		t.Errorf("UNBOUNDED: the heap in use grew by %.1f MiB for %d connections that sent %d bytes each; want < %d MiB",
			heapGrowth/(1<<20), conns, sent, maxHeap>>20)
	}
	if growth >= maxRSS {
		t.Errorf("UNBOUNDED: resident memory grew by %.1f MiB for %d connections that sent %d bytes each (%d KiB in all); "+
			"want < %d MiB: the guarded body buffer must grow with the bytes received, not be sized from Content-Length",
			float64(growth)/(1<<20), conns, sent, conns*sent>>10, maxRSS>>20)
	}
}
