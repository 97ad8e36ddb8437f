package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/composio-guard/composio-guard/internal/testproc"
)

func TestProcess(t *testing.T) {
	bin := testproc.Build(t, "./cmd/fakecomposio")
	p := testproc.Start(t, bin, nil, "-rate-limit", "5")
	base := "http://" + p.Addr("addr")
	if !strings.HasPrefix(p.Addr("addr"), "127.0.0.1:") {
		t.Fatalf("listening on %q, want loopback", p.Addr("addr"))
	}

	do := func(method, path, body string, hdr ...string) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		return res, b
	}

	// Seed through the control API; read through the Composio API.
	if res, b := do("POST", "/_fake/accounts", `{"credential":"k1","user_id":"u1","auth_config_id":"ac_1"}`); res.StatusCode != 201 {
		t.Fatalf("seed: %d %s", res.StatusCode, b)
	}
	res, b := do("GET", "/api/v3/connected_accounts?user_ids=u1&statuses=ACTIVE", "", "x-api-key", "k1")
	var list struct {
		Items []struct {
			UserID     string `json:"user_id"`
			AuthConfig struct {
				ID string `json:"id"`
			} `json:"auth_config"`
		} `json:"items"`
	}
	if err := json.Unmarshal(b, &list); err != nil || res.StatusCode != 200 || len(list.Items) != 1 || list.Items[0].AuthConfig.ID != "ac_1" {
		t.Fatalf("list: %d %s", res.StatusCode, b)
	}
	if res.Header.Get("X-RateLimit") != "5" {
		t.Errorf("-rate-limit not applied: %v", res.Header)
	}

	// SIGTERM exits 0 even with a request held by a hang fault.
	if res, b := do("PUT", "/_fake/faults/any", `{"hang":true}`); res.StatusCode != 204 {
		t.Fatalf("fault: %d %s", res.StatusCode, b)
	}
	hung := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest("GET", base+"/api/v3/connected_accounts", nil)
		req.Header.Set("x-api-key", "k1")
		res, err := http.DefaultTransport.RoundTrip(req)
		if err == nil {
			res.Body.Close()
		}
		hung <- err
	}()
	for {
		_, b := do("GET", "/_fake/counts", "")
		if strings.Contains(string(b), `"GET list":2`) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.Wait(10 * time.Second); code != 0 {
		t.Fatalf("exit code %d, want 0\n%s", code, p.Logs())
	}
	select {
	case <-hung:
	case <-time.After(5 * time.Second):
		t.Error("hung request not released by the shutdown")
	}
}
