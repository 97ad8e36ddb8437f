package intercept_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/composio-guard/composio-guard/internal/apierror"
	"github.com/composio-guard/composio-guard/internal/intercept"
)

// Session routes on both API versions. Classify also matches a PATCH on
// /api/v3, so it is policed too.
var (
	createPaths = []string{"/api/v3/tool_router/session", "/api/v3.1/tool_router/session"}
	updatePaths = []string{"/api/v3.1/tool_router/session/trs_1", "/api/v3/tool_router/session/trs_1"}
)

const (
	onCreate = 1 << iota
	onUpdate
	onBoth = onCreate | onUpdate
)

var allTiers = []string{"standard", "medium", "large", "xlarge"}

func sizes(s ...intercept.SandboxSize) []intercept.SandboxSize { return s }

// sandboxCfg is a policy for the table below.
func sandboxCfg(maxSize intercept.SandboxSize, allowed []intercept.SandboxSize, def intercept.SandboxSize) intercept.Config {
	return intercept.Config{MaxBodyBytes: 1024, SandboxMaxSize: maxSize, SandboxAllowedSizes: allowed, SandboxDefaultSize: def}
}

func TestSandboxPolicy(t *testing.T) {
	none := sandboxCfg("", nil, "")
	maxMedium := sandboxCfg("medium", nil, "")
	set := sandboxCfg("", sizes("standard", "large"), "")
	both := sandboxCfg("large", sizes("medium", "large", "xlarge"), "")
	big := `{"user_id":"u","workbench":{"sandbox_size":"medium"},"pad":"` + strings.Repeat("x", 2000) + `"}`

	tests := []struct {
		name     string
		cfg      intercept.Config
		routes   int
		body     string
		status   int    // 200: forwarded as sent
		slug     string // of a refusal
		decision string
		reason   string
		size     string // sandbox_requests_total size label
		allowed  []string
	}{
		// Point 1: tiers are validated even without a policy.
		{"no policy: xlarge", none, onBoth, `{"user_id":"u","workbench":{"enable":true,"sandbox_size":"xlarge"}}`,
			200, "", intercept.DecisionAllowed, intercept.ReasonSizeAllowed, "xlarge", nil},
		{"no policy: standard, odd spacing", none, onBoth, "{ \"workbench\" :\n{ \"sandbox_size\" : \"standard\" } ,\"toolkits\":[\"github\"] }",
			200, "", intercept.DecisionAllowed, intercept.ReasonSizeAllowed, "standard", nil},
		{"no policy: unknown tier", none, onBoth, `{"user_id":"u","workbench":{"sandbox_size":"huge"}}`,
			400, apierror.SlugInvalidSandbox, intercept.DecisionRejectedInvalid, intercept.ReasonBadSandboxSize, "invalid", allTiers},
		{"no policy: tier in capitals", none, onBoth, `{"workbench":{"sandbox_size":"Large"}}`,
			400, apierror.SlugInvalidSandbox, intercept.DecisionRejectedInvalid, intercept.ReasonBadSandboxSize, "invalid", allTiers},
		{"no policy: empty tier", none, onBoth, `{"workbench":{"sandbox_size":""}}`,
			400, apierror.SlugInvalidSandbox, intercept.DecisionRejectedInvalid, intercept.ReasonBadSandboxSize, "invalid", allTiers},
		{"no policy: tier a number", none, onBoth, `{"workbench":{"sandbox_size":4}}`,
			400, apierror.SlugInvalidSandbox, intercept.DecisionRejectedInvalid, intercept.ReasonBadSandboxSize, "invalid", allTiers},
		{"no policy: tier an object", none, onBoth, `{"workbench":{"sandbox_size":{"tier":"large"}}}`,
			400, apierror.SlugInvalidSandbox, intercept.DecisionRejectedInvalid, intercept.ReasonBadSandboxSize, "invalid", allTiers},
		{"no policy: workbench a string", none, onBoth, `{"workbench":"large"}`,
			400, apierror.SlugInvalidSandbox, intercept.DecisionRejectedInvalid, intercept.ReasonBadWorkbench, "invalid", allTiers},
		{"no policy: workbench an array", none, onBoth, `{"workbench":[{"sandbox_size":"large"}]}`,
			400, apierror.SlugInvalidSandbox, intercept.DecisionRejectedInvalid, intercept.ReasonBadWorkbench, "invalid", allTiers},
		{"no policy: workbench false", none, onBoth, `{"workbench":false}`,
			400, apierror.SlugInvalidSandbox, intercept.DecisionRejectedInvalid, intercept.ReasonBadWorkbench, "invalid", allTiers},
		{"no workbench", none, onBoth, `{"user_id":"u","toolkits":["github"]}`,
			200, "", intercept.DecisionAllowed, intercept.ReasonNoSize, "default", nil},
		{"workbench without tier", maxMedium, onBoth, `{"workbench":{"enable":true,"auto_offload_threshold":20000}}`,
			200, "", intercept.DecisionAllowed, intercept.ReasonNoSize, "default", nil},
		{"tier null", maxMedium, onBoth, `{"workbench":{"sandbox_size":null}}`,
			200, "", intercept.DecisionAllowed, intercept.ReasonNoSize, "default", nil},
		{"PATCH workbench null clears the override", maxMedium, onUpdate, `{"workbench":null}`,
			200, "", intercept.DecisionAllowed, intercept.ReasonWorkbenchCleared, "default", nil},
		{"a tier elsewhere is not the workbench's", maxMedium, onBoth, `{"experimental":{"workbench":{"sandbox_size":"xlarge"}},"note":"sandbox_size xlarge"}`,
			200, "", intercept.DecisionAllowed, intercept.ReasonNoSize, "default", nil},

		// Point 2: policy.
		{"ceiling: at the ceiling", maxMedium, onBoth, `{"workbench":{"sandbox_size":"medium"}}`,
			200, "", intercept.DecisionAllowed, intercept.ReasonSizeAllowed, "medium", nil},
		{"ceiling: below", maxMedium, onBoth, `{"workbench":{"sandbox_size":"standard"}}`,
			200, "", intercept.DecisionAllowed, intercept.ReasonSizeAllowed, "standard", nil},
		{"ceiling: above", maxMedium, onBoth, `{"user_id":"u","workbench":{"enable":true,"sandbox_size":"large"}}`,
			403, apierror.SlugSandboxForbidden, intercept.DecisionRejectedPolicy, intercept.ReasonSizeAboveMax, "large", []string{"standard", "medium"}},
		{"ceiling: escaped member name", maxMedium, onBoth, `{"workbench":{"sandbox\u005fsize":"xl\u0061rge"}}`,
			403, apierror.SlugSandboxForbidden, intercept.DecisionRejectedPolicy, intercept.ReasonSizeAboveMax, "xlarge", []string{"standard", "medium"}},
		{"set: in it", set, onBoth, `{"workbench":{"sandbox_size":"large"}}`,
			200, "", intercept.DecisionAllowed, intercept.ReasonSizeAllowed, "large", nil},
		{"set: outside it", set, onBoth, `{"workbench":{"sandbox_size":"medium"}}`,
			403, apierror.SlugSandboxForbidden, intercept.DecisionRejectedPolicy, intercept.ReasonSizeNotAllowed, "medium", []string{"standard", "large"}},
		{"both: below the set", both, onBoth, `{"workbench":{"sandbox_size":"standard"}}`,
			403, apierror.SlugSandboxForbidden, intercept.DecisionRejectedPolicy, intercept.ReasonSizeNotAllowed, "standard", []string{"medium", "large"}},
		{"both: above the ceiling", both, onBoth, `{"workbench":{"sandbox_size":"xlarge"}}`,
			403, apierror.SlugSandboxForbidden, intercept.DecisionRejectedPolicy, intercept.ReasonSizeAboveMax, "xlarge", []string{"medium", "large"}},
		{"both: allowed", both, onBoth, `{"workbench":{"sandbox_size":"large"}}`,
			200, "", intercept.DecisionAllowed, intercept.ReasonSizeAllowed, "large", nil},
		{"policy: invalid beats forbidden", maxMedium, onBoth, `{"workbench":{"sandbox_size":"gigantic"}}`,
			400, apierror.SlugInvalidSandbox, intercept.DecisionRejectedInvalid, intercept.ReasonBadSandboxSize, "invalid", []string{"standard", "medium"}},

		// The body itself.
		{"duplicate tier", maxMedium, onBoth, `{"workbench":{"sandbox_size":"medium","sandbox_size":"xlarge"}}`,
			400, apierror.SlugBadRequest, intercept.DecisionInvalidRequest, intercept.ReasonDuplicateMember, "invalid", nil},
		{"duplicate tier by case", maxMedium, onBoth, `{"workbench":{"sandbox_size":"medium","SANDBOX_SIZE":"xlarge"}}`,
			400, apierror.SlugBadRequest, intercept.DecisionInvalidRequest, intercept.ReasonDuplicateMember, "invalid", nil},
		{"duplicate workbench", maxMedium, onBoth, `{"workbench":{"sandbox_size":"medium"},"workbench":{"sandbox_size":"xlarge"}}`,
			400, apierror.SlugBadRequest, intercept.DecisionInvalidRequest, intercept.ReasonDuplicateMember, "invalid", nil},
		{"not JSON", none, onBoth, `{"workbench":{"sandbox_size":"medium"}`,
			400, apierror.SlugBadRequest, intercept.DecisionInvalidRequest, intercept.ReasonNotJSON, "invalid", nil},
		{"not an object", none, onBoth, `[{"workbench":{"sandbox_size":"medium"}}]`,
			400, apierror.SlugBadRequest, intercept.DecisionInvalidRequest, intercept.ReasonNotObject, "invalid", nil},
		{"empty body", none, onBoth, ``,
			400, apierror.SlugBadRequest, intercept.DecisionInvalidRequest, intercept.ReasonNotJSON, "invalid", nil},
		{"too large", none, onBoth, big,
			413, apierror.SlugBodyTooLarge, intercept.DecisionInvalidRequest, intercept.ReasonBodyTooLarge, "invalid", nil},
	}
	for _, tc := range tests {
		for _, route := range []struct {
			flag   int
			method string
			paths  []string
			label  string
		}{{onCreate, "POST", createPaths, "session_create"}, {onUpdate, "PATCH", updatePaths, "session_update"}} {
			if tc.routes&route.flag == 0 {
				continue
			}
			for _, path := range route.paths {
				t.Run(tc.name+"/"+route.method+" "+path, func(t *testing.T) {
					e := newEnv(t, tc.cfg)
					var body []byte
					if tc.body != "" {
						body = []byte(tc.body)
					}
					a := e.do(t, route.method, path, body, "X-Request-Id", "rid-sbx")
					if a.Status != tc.status {
						t.Fatalf("status %d, want %d: %s", a.Status, tc.status, a.Body)
					}
					reqs := e.up.requests()
					if tc.status == 200 {
						if len(reqs) != 1 || !bytes.Equal(reqs[0].Body, body) || reqs[0].Method != route.method || reqs[0].Path != path {
							t.Fatalf("upstream got %d requests (%+v), want the body forwarded as sent", len(reqs), reqs)
						}
						if got := reqs[0].Header.Get("Content-Length"); got != fmt.Sprint(len(body)) {
							t.Fatalf("Content-Length %q for %d bytes", got, len(body))
						}
					} else {
						if len(reqs) != 0 {
							t.Fatalf("a refused request reached the upstream: %q", reqs[0].Body)
						}
						assertSandboxRefusal(t, a, tc.status, tc.slug, "rid-sbx", tc.allowed)
						env := a.envelope(t)
						if tc.status == 403 && env["requested_sandbox_size"] != tc.size {
							t.Fatalf("requested_sandbox_size %v, want %s", env["requested_sandbox_size"], tc.size)
						}
						if tc.status != 403 && env["requested_sandbox_size"] != nil {
							t.Fatalf("requested_sandbox_size %v on a %d", env["requested_sandbox_size"], tc.status)
						}
					}
					if n := counter(e.m.Sandbox.WithLabelValues(route.label, tc.size, tc.decision)); n != 1 {
						t.Fatalf("sandbox_requests_total{%s,%s,%s} = %v, want 1", route.label, tc.size, tc.decision, n)
					}
					if n := counter(e.m.Decisions.WithLabelValues(route.label, tc.decision, "enforce")); n != 1 {
						t.Fatalf("decisions_total{%s,%s,enforce} = %v, want 1", route.label, tc.decision, n)
					}
					if sc := <-e.scopes; sc.Route != route.label || sc.Decision != tc.decision || sc.Reason != tc.reason ||
						sc.Mode != "enforce" || sc.SandboxSize != tc.size {
						t.Fatalf("scope %+v, want %s %s %s", sc, route.label, tc.decision, tc.reason)
					}
					ds := e.decisions()
					if len(ds) != 1 || ds[0].ContextMap()["sandbox_size"] != tc.size || ds[0].ContextMap()["reason"] != tc.reason {
						t.Fatalf("decision log %v", ds)
					}
				})
			}
		}
	}
}

// assertSandboxRefusal checks what a client reads on a refusal: the status,
// Composio's envelope, the request id, no retry, and for the sandbox slugs
// the allowed tiers named in the message or the envelope.
func assertSandboxRefusal(t *testing.T, a answer, status int, slug, rid string, allowed []string) {
	t.Helper()
	if a.Header.Get("Content-Type") != "application/json" || a.Header.Get("X-Should-Retry") != "false" || a.Header.Get("X-Request-Id") != rid {
		t.Fatalf("headers %v", a.Header)
	}
	env := a.envelope(t)
	if env["slug"] != slug || env["status"] != float64(status) || env["request_id"] != rid {
		t.Fatalf("envelope %v, want slug %s status %d", env, slug, status)
	}
	if slug != apierror.SlugInvalidSandbox && slug != apierror.SlugSandboxForbidden {
		return
	}
	if env["code"] != float64(apierror.CodeSandbox) {
		t.Fatalf("code %v, want %d", env["code"], apierror.CodeSandbox)
	}
	var got []string
	for _, v := range env["allowed_sandbox_sizes"].([]any) {
		got = append(got, v.(string))
	}
	if !reflect.DeepEqual(got, allowed) {
		t.Fatalf("allowed_sandbox_sizes %v, want %v", got, allowed)
	}
	msg, _ := env["message"].(string)
	fix, _ := env["suggested_fix"].(string)
	names := msg
	if slug == apierror.SlugSandboxForbidden {
		names = msg + fix
	}
	for _, s := range allowed {
		if !strings.Contains(names, s) {
			t.Fatalf("message %q / fix %q do not name %s", msg, fix, s)
		}
	}
	if slug == apierror.SlugInvalidSandbox && !strings.Contains(msg, "standard, medium, large, xlarge") {
		t.Fatalf("message %q does not list the tiers", msg)
	}
}

func TestSandboxDefault(t *testing.T) {
	cfg := sandboxCfg("medium", nil, "medium")
	tests := []struct {
		name, body, want       string // want "" means forwarded as sent
		decision, reason, size string
	}{
		{"no workbench", `{"user_id":"u"}`, `{"workbench":{"sandbox_size":"medium"},"user_id":"u"}`,
			intercept.DecisionDefaulted, intercept.ReasonDefaultInserted, "medium"},
		{"empty object", `{}`, `{"workbench":{"sandbox_size":"medium"}}`,
			intercept.DecisionDefaulted, intercept.ReasonDefaultInserted, "medium"},
		{"whitespace kept", " {\n  \"user_id\" : \"u\" ,\n  \"toolkits\": [ \"a\" ]\n}\n",
			" {\"workbench\":{\"sandbox_size\":\"medium\"},\n  \"user_id\" : \"u\" ,\n  \"toolkits\": [ \"a\" ]\n}\n",
			intercept.DecisionDefaulted, intercept.ReasonDefaultInserted, "medium"},
		{"SDK shape, enable true", `{"user_id":"u","workbench":{"enable":true},"manage_connections":{"enable":true}}`,
			`{"user_id":"u","workbench":{"sandbox_size":"medium","enable":true},"manage_connections":{"enable":true}}`,
			intercept.DecisionDefaulted, intercept.ReasonDefaultInserted, "medium"},
		{"empty workbench", `{"workbench":{}}`, `{"workbench":{"sandbox_size":"medium"}}`,
			intercept.DecisionDefaulted, intercept.ReasonDefaultInserted, "medium"},
		{"empty workbench with spaces", `{"workbench":{ }}`, `{"workbench":{"sandbox_size":"medium" }}`,
			intercept.DecisionDefaulted, intercept.ReasonDefaultInserted, "medium"},
		{"workbench null", `{"user_id":"u","workbench":null}`, `{"user_id":"u","workbench":{"sandbox_size":"medium"}}`,
			intercept.DecisionDefaulted, intercept.ReasonDefaultInserted, "medium"},
		{"tier null", `{"workbench":{"sandbox_size":null,"enable":null}}`, `{"workbench":{"sandbox_size":"medium","enable":null}}`,
			intercept.DecisionDefaulted, intercept.ReasonDefaultInserted, "medium"},
		{"unicode elsewhere kept", `{"user_id":"\u00e9l\u00e8ve ✓","workbench":{"enable_proxy_execution":false}}`,
			`{"user_id":"\u00e9l\u00e8ve ✓","workbench":{"sandbox_size":"medium","enable_proxy_execution":false}}`,
			intercept.DecisionDefaulted, intercept.ReasonDefaultInserted, "medium"},
		{"workbench disabled", `{"user_id":"u","workbench":{"enable":false}}`, "",
			intercept.DecisionAllowed, intercept.ReasonWorkbenchOff, "default"},
		{"tier sent", `{"workbench":{"sandbox_size":"standard"}}`, "",
			intercept.DecisionAllowed, intercept.ReasonSizeAllowed, "standard"},
	}
	for _, tc := range tests {
		for _, path := range createPaths {
			t.Run(tc.name+"/"+path, func(t *testing.T) {
				e := newEnv(t, cfg)
				a := e.do(t, "POST", path, []byte(tc.body))
				if a.Status != 200 {
					t.Fatalf("status %d: %s", a.Status, a.Body)
				}
				want := tc.want
				if want == "" {
					want = tc.body
				}
				got := e.up.requests()[0]
				if string(got.Body) != want {
					t.Fatalf("upstream got\n%s\nwant\n%s", got.Body, want)
				}
				if got.Header.Get("Content-Length") != fmt.Sprint(len(want)) {
					t.Fatalf("Content-Length %q for %d bytes", got.Header.Get("Content-Length"), len(want))
				}
				assertSameJSONPlusDefault(t, []byte(tc.body), got.Body, tc.want != "")
				if n := counter(e.m.Sandbox.WithLabelValues("session_create", tc.size, tc.decision)); n != 1 {
					t.Fatalf("sandbox_requests_total{session_create,%s,%s} = %v", tc.size, tc.decision, n)
				}
				if sc := <-e.scopes; sc.Decision != tc.decision || sc.Reason != tc.reason {
					t.Fatalf("scope %+v", sc)
				}
			})
		}
	}

	t.Run("PATCH never gets a default", func(t *testing.T) {
		e := newEnv(t, cfg)
		for _, body := range []string{`{"toolkits":["github"]}`, `{"workbench":{"enable":true}}`, `{"workbench":null}`} {
			if a := e.do(t, "PATCH", updatePaths[0], []byte(body)); a.Status != 200 {
				t.Fatalf("status %d", a.Status)
			}
			reqs := e.up.requests()
			if got := reqs[len(reqs)-1].Body; string(got) != body {
				t.Fatalf("PATCH %s reached the upstream as %s", body, got)
			}
		}
		if n := counter(e.m.Decisions.WithLabelValues("session_update", intercept.DecisionDefaulted, "enforce")); n != 0 {
			t.Fatalf("a PATCH was defaulted %v times", n)
		}
	})

	t.Run("bad enable", func(t *testing.T) {
		e := newEnv(t, cfg)
		a := e.do(t, "POST", createPaths[1], []byte(`{"workbench":{"enable":"no"}}`), "X-Request-Id", "rid-en")
		if a.Status != 400 || len(e.up.requests()) != 0 {
			t.Fatalf("status %d, %d forwarded", a.Status, len(e.up.requests()))
		}
		assertSandboxRefusal(t, a, 400, apierror.SlugBadRequest, "rid-en", nil)
		if sc := <-e.scopes; sc.Decision != intercept.DecisionInvalidRequest || sc.Reason != intercept.ReasonBadEnable {
			t.Fatalf("scope %+v", sc)
		}
		// Without a default the member is not read: the API judges it.
		e = newEnv(t, sandboxCfg("medium", nil, ""))
		if a := e.do(t, "POST", createPaths[1], []byte(`{"workbench":{"enable":"no"}}`)); a.Status != 200 {
			t.Fatalf("without a default: status %d", a.Status)
		}
	})
}

// assertSameJSONPlusDefault checks that out decodes as in does, plus
// workbench.sandbox_size when inserted.
func assertSameJSONPlusDefault(t *testing.T, in, out []byte, inserted bool) {
	t.Helper()
	var a, b map[string]any
	if err := json.Unmarshal(in, &a); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(out, &b); err != nil {
		t.Fatalf("forwarded body is not JSON: %v: %s", err, out)
	}
	if inserted {
		wb, _ := a["workbench"].(map[string]any)
		if wb == nil {
			wb = map[string]any{}
		}
		wb["sandbox_size"] = "medium"
		a["workbench"] = wb
	}
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("forwarded JSON %v, want %v", b, a)
	}
}

func TestSandboxGzip(t *testing.T) {
	cfg := sandboxCfg("medium", nil, "medium")
	t.Run("default inserted into a gzip body", func(t *testing.T) {
		e := newEnv(t, cfg)
		a := e.do(t, "POST", createPaths[1], gz(t, []byte(`{"user_id":"u","workbench":{"enable":true}}`)), "Content-Encoding", "gzip")
		if a.Status != 200 {
			t.Fatalf("status %d: %s", a.Status, a.Body)
		}
		got := e.up.requests()[0]
		if got.Header.Get("Content-Encoding") != "gzip" || got.Header.Get("Content-Length") != fmt.Sprint(len(got.Body)) {
			t.Fatalf("headers %v", got.Header)
		}
		zr, err := gzip.NewReader(bytes.NewReader(got.Body))
		if err != nil {
			t.Fatalf("forwarded body is not gzip: %v", err)
		}
		plain, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		if want := `{"user_id":"u","workbench":{"sandbox_size":"medium","enable":true}}`; string(plain) != want {
			t.Fatalf("upstream got %s, want %s", plain, want)
		}
	})
	t.Run("allowed gzip body forwarded as sent", func(t *testing.T) {
		e := newEnv(t, cfg)
		sent := gz(t, []byte(`{"workbench":{"sandbox_size":"medium"}}`))
		if a := e.do(t, "PATCH", updatePaths[0], sent, "Content-Encoding", "gzip"); a.Status != 200 {
			t.Fatalf("status %d", a.Status)
		}
		if got := e.up.requests()[0].Body; !bytes.Equal(got, sent) {
			t.Fatal("the gzip body was changed on the way")
		}
	})
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		slug                     string
	}{
		{"refused above the ceiling", "POST", createPaths[0], `{"workbench":{"sandbox_size":"xlarge"}}`, 403, apierror.SlugSandboxForbidden},
		{"refused invalid", "PATCH", updatePaths[0], `{"workbench":{"sandbox_size":"tiny"}}`, 400, apierror.SlugInvalidSandbox},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, cfg)
			a := e.do(t, tc.method, tc.path, gz(t, []byte(tc.body)), "Content-Encoding", "gzip")
			if a.Status != tc.status || len(e.up.requests()) != 0 {
				t.Fatalf("status %d, %d forwarded", a.Status, len(e.up.requests()))
			}
			if env := a.envelope(t); env["slug"] != tc.slug {
				t.Fatalf("slug %v", env["slug"])
			}
		})
	}
	t.Run("gzip bomb", func(t *testing.T) {
		e := newEnv(t, cfg)
		bomb := gz(t, []byte(`{"workbench":{"sandbox_size":"medium"},"pad":"`+strings.Repeat("0", 100_000)+`"}`))
		a := e.do(t, "POST", createPaths[0], bomb, "Content-Encoding", "gzip")
		if a.Status != 413 || len(e.up.requests()) != 0 {
			t.Fatalf("status %d, %d forwarded", a.Status, len(e.up.requests()))
		}
	})
}

func TestSandboxShadow(t *testing.T) {
	e := newEnv(t, intercept.Config{Mode: "shadow", MaxBodyBytes: 256, SandboxMaxSize: "medium", SandboxDefaultSize: "medium"})
	tests := []struct {
		method, path, body    string
		label, size, decision string
	}{
		{"POST", createPaths[0], `{"workbench":{"sandbox_size":"xlarge"}}`, "session_create", "xlarge", intercept.DecisionRejectedPolicy},
		{"PATCH", updatePaths[0], `{"workbench":{"sandbox_size":"large"}}`, "session_update", "large", intercept.DecisionRejectedPolicy},
		{"POST", createPaths[1], `{"workbench":{"sandbox_size":"huge"}}`, "session_create", "invalid", intercept.DecisionRejectedInvalid},
		{"POST", createPaths[1], `{"user_id":"u"}`, "session_create", "medium", intercept.DecisionDefaulted},
		{"PATCH", updatePaths[1], `{"workbench":`, "session_update", "invalid", intercept.DecisionInvalidRequest},
		{"POST", createPaths[0], `{"pad":"` + strings.Repeat("y", 500) + `"}`, "session_create", "invalid", intercept.DecisionInvalidRequest},
	}
	for i, tc := range tests {
		a := e.do(t, tc.method, tc.path, []byte(tc.body))
		reqs := e.up.requests()
		if a.Status != 200 || len(reqs) != i+1 || string(reqs[i].Body) != tc.body {
			t.Fatalf("%s %s: status %d, upstream got %q; shadow forwards every body as sent", tc.method, tc.body, a.Status, reqs[len(reqs)-1].Body)
		}
		if n := counter(e.m.Decisions.WithLabelValues(tc.label, tc.decision, "shadow")); n < 1 {
			t.Fatalf("%s: decisions_total{%s,%s,shadow} = %v", tc.body, tc.label, tc.decision, n)
		}
		if n := counter(e.m.Sandbox.WithLabelValues(tc.label, tc.size, tc.decision)); n != 1 {
			t.Fatalf("%s: sandbox_requests_total{%s,%s,%s} = %v", tc.body, tc.label, tc.size, tc.decision, n)
		}
	}
	// The PATCH refused in shadow mode still reached Composio: the sandbox
	// will be recreated, and the log says so.
	if lines := e.logs.FilterMessage("sandbox will be recreated").All(); len(lines) != 1 || lines[0].ContextMap()["sandbox_size"] != "large" {
		t.Fatalf("recreate log %v", lines)
	}
}

func TestSandboxModeOff(t *testing.T) {
	e := newEnv(t, intercept.Config{Mode: "off", SandboxMaxSize: "standard", SandboxDefaultSize: "standard"})
	for i, tc := range []struct{ method, path, body, label string }{
		{"POST", createPaths[0], `{"workbench":{"sandbox_size":"xlarge"}}`, "session_create"},
		{"POST", createPaths[1], `{"user_id":"u"}`, "session_create"},
		{"PATCH", updatePaths[0], `{"workbench":{"sandbox_size":"huge"}}`, "session_update"},
		{"PATCH", updatePaths[0], `not json`, "session_update"},
	} {
		a := e.do(t, tc.method, tc.path, []byte(tc.body))
		reqs := e.up.requests()
		if a.Status != 200 || len(reqs) != i+1 || string(reqs[i].Body) != tc.body {
			t.Fatalf("off: status %d, upstream got %q, want %q", a.Status, reqs[len(reqs)-1].Body, tc.body)
		}
	}
	if n := counter(e.m.Decisions.WithLabelValues("session_create", "off", "off")); n != 2 {
		t.Fatalf("decisions_total{session_create,off,off} = %v, want 2", n)
	}
	if n := counter(e.m.Decisions.WithLabelValues("session_update", "off", "off")); n != 2 {
		t.Fatalf("decisions_total{session_update,off,off} = %v, want 2", n)
	}
	if n := familySum(t, e, "composio_guard_sandbox_requests_total"); n != 0 {
		t.Fatalf("sandbox_requests_total = %v in off mode, want nothing read", n)
	}
	if lines := e.logs.FilterMessage("sandbox will be recreated").All(); len(lines) != 0 {
		t.Fatalf("off mode logged %v", lines)
	}
}

func TestSandboxRecreateLog(t *testing.T) {
	const secret = "sk_live_BODY_SECRET_42"
	tests := []struct {
		name, method, path, body string
		upstream                 int
		wantLog                  bool
		wantID, wantSize         string
	}{
		{"PATCH with a tier", "PATCH", "/api/v3.1/tool_router/session/trs_abc", `{"workbench":{"sandbox_size":"large"},"note":"` + secret + `"}`, 200, true, "trs_abc", "large"},
		{"PATCH clearing the tier", "PATCH", "/api/v3.1/tool_router/session/trs_abc/", `{"workbench":null}`, 200, true, "trs_abc", "default"},
		{"id decoded from the path", "PATCH", "/api/v3.1/tool_router/session/trs_%41bc", `{"workbench":{"sandbox_size":"medium"}}`, 200, true, "trs_Abc", "medium"},
		{"Composio refused the PATCH", "PATCH", "/api/v3.1/tool_router/session/trs_gone", `{"workbench":{"sandbox_size":"large"}}`, 404, false, "", ""},
		{"PATCH without a tier", "PATCH", "/api/v3.1/tool_router/session/trs_abc", `{"workbench":{"enable":true}}`, 200, false, "", ""},
		{"create", "POST", "/api/v3.1/tool_router/session", `{"workbench":{"sandbox_size":"large"}}`, 200, false, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, intercept.Config{})
			e.up.status.Store(int32(tc.upstream))
			a := e.do(t, tc.method, tc.path, []byte(tc.body), "X-Request-Id", "rid-rec")
			if a.Status != tc.upstream {
				t.Fatalf("status %d, want the upstream's %d", a.Status, tc.upstream)
			}
			lines := e.logs.FilterMessage("sandbox will be recreated").All()
			if !tc.wantLog {
				if len(lines) != 0 {
					t.Fatalf("unexpected log %v", lines)
				}
				return
			}
			if len(lines) != 1 || lines[0].Level.String() != "info" {
				t.Fatalf("recreate log %v, want one INFO line", lines)
			}
			f := lines[0].ContextMap()
			for k, v := range map[string]any{"session_id": tc.wantID, "sandbox_size": tc.wantSize, "request_id": "rid-rec", "route": "session_update"} {
				if f[k] != v {
					t.Fatalf("log field %s = %v, want %v", k, f[k], v)
				}
			}
			for _, entry := range e.logs.All() {
				if line := fmt.Sprint(entry.Message, entry.ContextMap()); strings.Contains(line, secret) || strings.Contains(line, apiKey) {
					t.Fatalf("body or credential in the log: %s", line)
				}
			}
		})
	}
}

// familySum adds up every series of one metric family.
func familySum(t *testing.T, e *env, name string) float64 {
	t.Helper()
	mfs, err := e.m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}
