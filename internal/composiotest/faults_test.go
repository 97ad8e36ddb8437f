package composiotest_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/composio-guard/composio-guard/internal/composiotest"
	"github.com/composio-guard/composio-guard/internal/composiotest/fakeserver"
)

const linkBody = `{"user_id":"u1","auth_config_id":"ac_1"}`

func TestFaultAnswers(t *testing.T) {
	tests := []struct {
		name     string
		fault    composiotest.Fault
		status   int
		header   [2]string
		body     string // exact body, when set
		validJS  bool
		accounts int // accounts created by the faulted link
	}{
		{"status with body and header", composiotest.Fault{Status: 429, Body: `{"message":"slow down"}`, Headers: map[string]string{"Retry-After": "2"}},
			429, [2]string{"Retry-After", "2"}, `{"message":"slow down"}`, true, 0},
		{"status alone is an envelope", composiotest.Fault{Status: 503}, 503, [2]string{"Content-Type", "application/json"}, "", true, 0},
		{"not json", composiotest.Fault{NotJSON: true}, 200, [2]string{"Content-Type", "application/json"}, "", false, 0},
		{"not json with status", composiotest.Fault{NotJSON: true, Status: 502}, 502, [2]string{}, "", false, 0},
		{"truncated takes effect", composiotest.Fault{Truncate: true}, 201, [2]string{"Content-Type", "application/json"}, "", false, 1},
		{"latency only", composiotest.Fault{Latency: 20 * time.Millisecond}, 201, [2]string{}, "", true, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fake, srv := fakeserver.New(t)
			if err := fake.SetFault(composiotest.RouteLink, tc.fault); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			a := call(t, srv.URL, "POST", "/api/v3/connected_accounts/link", linkBody, "x-api-key", "k1")
			if tc.fault.Latency > 0 && time.Since(start) < tc.fault.Latency {
				t.Errorf("answered before the latency")
			}
			if a.status != tc.status {
				t.Fatalf("status %d, want %d: %s", a.status, tc.status, a.raw)
			}
			if tc.header[0] != "" && a.header.Get(tc.header[0]) != tc.header[1] {
				t.Errorf("%s = %q, want %q", tc.header[0], a.header.Get(tc.header[0]), tc.header[1])
			}
			if tc.body != "" && string(a.raw) != tc.body {
				t.Errorf("body %q, want %q", a.raw, tc.body)
			}
			if json.Valid(a.raw) != tc.validJS {
				t.Errorf("body valid JSON = %v, want %v: %q", json.Valid(a.raw), tc.validJS, a.raw)
			}
			if a.header.Get("X-RateLimit-Remaining") == "" {
				t.Error("faulted answer lacks the rate-limit headers")
			}
			if n := len(fake.Accounts("k1")); n != tc.accounts {
				t.Errorf("%d accounts, want %d", n, tc.accounts)
			}
			if fake.Count("POST", composiotest.RouteLink) != 1 {
				t.Error("faulted request not logged")
			}
		})
	}
}

func TestFaultReset(t *testing.T) {
	fake, srv := fakeserver.New(t)
	if err := fake.SetFault(composiotest.RouteList, composiotest.Fault{Reset: true, Times: 1}); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", srv.URL+"/api/v3/connected_accounts", nil)
	req.Header.Set("x-api-key", "k1")
	res, err := http.DefaultTransport.RoundTrip(req) // no retry of the client's own
	if err == nil {
		res.Body.Close()
		t.Fatalf("got an answer %d, want a broken connection", res.StatusCode)
	}
	if a := call(t, srv.URL, "GET", "/api/v3/connected_accounts", "", "x-api-key", "k1"); a.status != 200 {
		t.Errorf("after the one reset: %d", a.status)
	}
}

func TestFaultHang(t *testing.T) {
	fake, srv := fakeserver.New(t)
	if err := fake.SetFault(composiotest.RouteAny, composiotest.Fault{Hang: true}); err != nil {
		t.Fatal(err)
	}
	// Until the client goes away...
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/v3/connected_accounts", nil)
	req.Header.Set("x-api-key", "k1")
	if res, err := http.DefaultClient.Do(req); err == nil {
		res.Body.Close()
		t.Fatalf("hang answered %d", res.StatusCode)
	} else if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want the client's deadline", err)
	}

	// ...or until Close, which lets the server shut down.
	done := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest("GET", srv.URL+"/api/v3/connected_accounts", nil)
		req.Header.Set("x-api-key", "k1")
		res, err := http.DefaultTransport.RoundTrip(req)
		if err == nil {
			res.Body.Close()
		}
		done <- err
	}()
	for fake.Count("GET", composiotest.RouteList) < 2 {
		time.Sleep(time.Millisecond)
	}
	fake.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Error("released hang answered, want a dropped connection")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not release the hung request")
	}
}

func TestFaultSelection(t *testing.T) {
	fake, srv := fakeserver.New(t)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(fake.SetFault(composiotest.RouteAny, composiotest.Fault{Status: 500}))
	must(fake.SetFault(composiotest.RouteList, composiotest.Fault{Status: 429, Times: 2}))

	var got []int
	for range 3 {
		got = append(got, call(t, srv.URL, "GET", "/api/v3/connected_accounts", "", "x-api-key", "k1").status)
	}
	got = append(got, call(t, srv.URL, "POST", "/api/v3/connected_accounts/link", linkBody, "x-api-key", "k1").status)
	// The route's own fault twice, then it is used up and "any" applies.
	if want := []int{429, 429, 500, 500}; !equalInts(got, want) {
		t.Errorf("statuses %v, want %v", got, want)
	}
	fake.ClearFault(composiotest.RouteAny)
	if s := call(t, srv.URL, "GET", "/api/v3/connected_accounts", "", "x-api-key", "k1").status; s != 200 {
		t.Errorf("after ClearFault: %d", s)
	}
	must(fake.SetFault(composiotest.RouteSessionUpdate, composiotest.Fault{Status: 500}))
	fake.ClearFaults()
	if s := call(t, srv.URL, "POST", "/api/v3/tool_router/session", `{"user_id":"u"}`, "x-api-key", "k1").status; s != 201 {
		t.Errorf("after ClearFaults: %d", s)
	}
}

func TestFaultValidation(t *testing.T) {
	fake := composiotest.New()
	tests := []struct {
		name  string
		route string
		fault composiotest.Fault
	}{
		{"unknown route", "lists", composiotest.Fault{Status: 500}},
		{"nothing", composiotest.RouteList, composiotest.Fault{}},
		{"reset and hang", composiotest.RouteList, composiotest.Fault{Reset: true, Hang: true}},
		{"truncate and status", composiotest.RouteList, composiotest.Fault{Truncate: true, Status: 500}},
		{"body without status", composiotest.RouteList, composiotest.Fault{Body: "x"}},
		{"bad status", composiotest.RouteList, composiotest.Fault{Status: 1000}},
		{"negative times", composiotest.RouteList, composiotest.Fault{Status: 500, Times: -1}},
	}
	for _, tc := range tests {
		if err := fake.SetFault(tc.route, tc.fault); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}

func TestFaultJSON(t *testing.T) {
	in := `{"latency":"250ms","status":429,"body":"{}","headers":{"Retry-After":"1"},"times":2}`
	var fl composiotest.Fault
	if err := json.Unmarshal([]byte(in), &fl); err != nil {
		t.Fatal(err)
	}
	if fl.Latency != 250*time.Millisecond || fl.Status != 429 || fl.Headers["Retry-After"] != "1" || fl.Times != 2 {
		t.Errorf("decoded %+v", fl)
	}
	out, err := json.Marshal(fl)
	if err != nil || !strings.Contains(string(out), `"latency":"250ms"`) {
		t.Errorf("encoded %s %v", out, err)
	}
	if err := json.Unmarshal([]byte(`{"latency":"soon"}`), &fl); err == nil {
		t.Error("bad latency accepted")
	}
}

func TestTruncatedBodyIsCut(t *testing.T) {
	fake, srv := fakeserver.New(t)
	fake.AddAccount(composiotest.Account{Credential: "k1", UserID: "u1", AuthConfigID: "ac_1"})
	whole := call(t, srv.URL, "GET", "/api/v3/connected_accounts", "", "x-api-key", "k1")
	if err := fake.SetFault(composiotest.RouteList, composiotest.Fault{Truncate: true}); err != nil {
		t.Fatal(err)
	}
	// call fails the test if the body cannot be read: the message itself is whole.
	cut := call(t, srv.URL, "GET", "/api/v3/connected_accounts", "", "x-api-key", "k1")
	if cut.status != 200 || string(cut.raw) != string(whole.raw[:len(whole.raw)/2]) {
		t.Errorf("status %d body %q, want the first half of %q", cut.status, cut.raw, whole.raw)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
