package app

import (
	"fmt"
	"maps"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/alicebob/miniredis/v2"
	dto "github.com/prometheus/client_model/go"

	"github.com/composio-guard/composio-guard/internal/composiotest"
	"github.com/composio-guard/composio-guard/internal/config"
	"github.com/composio-guard/composio-guard/internal/intercept"
	"github.com/composio-guard/composio-guard/internal/metrics"
	"github.com/composio-guard/composio-guard/internal/reqscope"
	"github.com/composio-guard/composio-guard/internal/upstream"
)

func loadCfg(t *testing.T, upstreamURL string, env map[string]string) config.Config {
	t.Helper()
	base := map[string]string{
		"GUARD_UPSTREAM_URL": upstreamURL,
		"GUARD_LISTEN_ADDR":  "127.0.0.1:0",
		"GUARD_ADMIN_ADDR":   "127.0.0.1:0",
		"GUARD_DRAIN_DELAY":  "0s",
	}
	maps.Copy(base, env)
	cfg, err := config.LoadFrom(base)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// series gathers every composio_guard_* series of m: family name -> the
// series' labels rendered "k=v,k=v" (sorted) -> value (a histogram's count).
func series(t *testing.T, m *metrics.Metrics) map[string]map[string]float64 {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]float64{}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "composio_guard_") {
			continue
		}
		set := map[string]float64{}
		for _, s := range mf.GetMetric() {
			var parts []string
			for _, l := range s.GetLabel() {
				parts = append(parts, l.GetName()+"="+l.GetValue())
			}
			slices.Sort(parts)
			set[strings.Join(parts, ",")] = sampleValue(mf.GetType(), s)
		}
		out[mf.GetName()] = set
	}
	return out
}

func sampleValue(typ dto.MetricType, s *dto.Metric) float64 {
	switch typ {
	case dto.MetricType_COUNTER:
		return s.GetCounter().GetValue()
	case dto.MetricType_GAUGE:
		return s.GetGauge().GetValue()
	case dto.MetricType_HISTOGRAM:
		return float64(s.GetHistogram().GetSampleCount())
	}
	return 0
}

func key(pairs ...string) string {
	var parts []string
	for i := 0; i+1 < len(pairs); i += 2 {
		parts = append(parts, pairs[i]+"="+pairs[i+1])
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

// expected is every series createSeries makes for backend, from the label
// lists of the packages that count them, by family.
func expected(backend string) map[string][]string {
	e := map[string][]string{}
	add := func(family string, pairs ...string) {
		e["composio_guard_"+family] = append(e["composio_guard_"+family], key(pairs...))
	}
	for _, r := range reqscope.Routes() {
		add("proxy_overhead_seconds", "route", r)
	}
	for _, s := range intercept.DecisionSeries() {
		add("decisions_total", "route", s[0], "decision", s[1], "mode", s[2])
	}
	for _, s := range intercept.SandboxSeries() {
		add("sandbox_requests_total", "route", s[0], "size", s[1], "decision", s[2])
	}
	for _, r := range upstream.LookupResults() {
		add("lookup_duration_seconds", "result", r)
	}
	for _, s := range upstream.ErrorSeries() {
		add("upstream_errors_total", "op", s[0], "reason", s[1])
	}
	for _, b := range upstream.Breakers() {
		add("circuit_breaker_state", "breaker", b)
	}
	for _, r := range append(intercept.LeaseResults(), metrics.LeaseEvicted) {
		add("pending_leases_total", "result", r)
	}
	add("lock_wait_seconds", "backend", backend)
	for _, r := range lockErrorReasons(backend) {
		add("lock_errors_total", "backend", backend, "reason", r)
	}
	add("lock_backend_up", "backend", backend)
	return e
}

// checkClosed fails for every series of a closed family that is not in
// want, and (when all) for every one of want that is missing.
func checkClosed(t *testing.T, got map[string]map[string]float64, want map[string][]string, all bool) {
	t.Helper()
	for family, keys := range want {
		for k := range got[family] {
			if !slices.Contains(keys, k) {
				t.Errorf("%s{%s} is outside the closed set created at start", family, k)
			}
		}
		if !all {
			continue
		}
		for _, k := range keys {
			if _, ok := got[family][k]; !ok {
				t.Errorf("%s{%s} does not exist at start", family, k)
			}
		}
	}
}

// At start, before any request, every series of a closed label set exists,
// at zero; the lock series name only the backend in use; the HTTP families
// wait for their first request.
func TestSeriesExistAtStart(t *testing.T) {
	redis := miniredis.RunT(t)
	for _, tc := range []struct {
		backend string
		env     map[string]string
		up      float64
	}{
		{"memory", nil, 1},
		{"redis", map[string]string{"GUARD_LOCK_BACKEND": "redis", "GUARD_REDIS_URL": "redis://" + redis.Addr()}, -1},
	} {
		t.Run(tc.backend, func(t *testing.T) {
			p, err := New(loadCfg(t, "http://127.0.0.1:9", tc.env), Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(p.Close)
			got := series(t, p.Metrics)
			want := expected(tc.backend)
			checkClosed(t, got, want, true)
			for family := range want {
				for k, v := range got[family] {
					if v != 0 && family != "composio_guard_lock_backend_up" {
						t.Errorf("%s{%s} = %v at start, want 0", family, k, v)
					}
				}
			}
			if v := got["composio_guard_lock_backend_up"][key("backend", tc.backend)]; tc.up >= 0 && v != tc.up {
				t.Errorf("lock_backend_up{backend=%q} = %v, want %v", tc.backend, v, tc.up)
			}
			for _, f := range metrics.CreatedOnFirstUse() {
				if len(got[f]) != 0 {
					t.Errorf("%s has series before any request: %v", f, got[f])
				}
			}
			if n := len(got["composio_guard_decisions_total"]); n < 50 {
				t.Errorf("only %d decision series", n)
			}
		})
	}
}

// Traffic of every kind the guard decides counts only series created at
// start: the code never increments a label value outside the closed sets.
func TestTrafficStaysInsideTheSeries(t *testing.T) {
	for _, mode := range []string{"enforce", "shadow", "off"} {
		t.Run(mode, func(t *testing.T) {
			fake := composiotest.New()
			up := httptest.NewServer(fake)
			t.Cleanup(func() { fake.Close(); up.Close() })
			fake.AddAccount(composiotest.Account{Credential: "key_s", UserID: "u_dup", AuthConfigID: "ac_s"})
			p, err := New(loadCfg(t, up.URL, map[string]string{
				"GUARD_MODE": mode, "GUARD_SANDBOX_MAX_SIZE": "medium", "GUARD_SANDBOX_DEFAULT_SIZE": "standard",
				"GUARD_LOOKUP_TIMEOUT": "2s",
			}), Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(p.Close)
			h := p.Handler()
			do := func(method, path, body string, hdr ...string) {
				r := httptest.NewRequest(method, path, strings.NewReader(body))
				r.Header.Set("x-api-key", "key_s")
				if body != "" {
					r.Header.Set("content-type", "application/json")
				}
				for i := 0; i+1 < len(hdr); i += 2 {
					r.Header.Set(hdr[i], hdr[i+1])
				}
				h.ServeHTTP(httptest.NewRecorder(), r)
			}
			link := func(user string) string {
				return fmt.Sprintf(`{"auth_config_id":"ac_s","user_id":%q}`, user)
			}
			do("GET", "/api/v3/connected_accounts?user_ids=u_dup", "")
			do("POST", "/api/v3/connected_accounts/link", link("u_dup"))                                      // duplicate
			do("POST", "/api/v3/connected_accounts/link", link("u_new"))                                      // allowed, lease stored
			do("POST", "/api/v3/connected_accounts/link", link("u_new"))                                      // replayed
			do("POST", "/api/v3/connected_accounts/link", link("u_dup"), "X-Composio-Allow-Multiple", "true") // opt-in
			do("POST", "/api/v3/connected_accounts", `{"auth_config":{"id":"ac_s"},"connection":{"user_id":"u_c"}}`)
			do("POST", "/api/v3/connected_accounts/link", `{"auth_config_id":`)                // invalid
			do("post", "/api/v3/connected_accounts/link", link("u_x"))                         // disguised
			do("GET", "/api/v3/connected_accounts/link", "", "X-HTTP-Method-Override", "POST") // disguised pass-through
			do("POST", "/api/v3.1/tool_router/session", `{"user_id":"u_new"}`)                 // defaulted
			do("POST", "/api/v3.1/tool_router/session", `{"user_id":"u_new","workbench":{"sandbox_size":"medium"}}`)
			do("POST", "/api/v3.1/tool_router/session", `{"user_id":"u_new","workbench":{"sandbox_size":"xlarge"}}`) // refused
			do("POST", "/api/v3.1/tool_router/session", `{"user_id":"u_new","workbench":{"sandbox_size":"huge"}}`)   // invalid
			do("PATCH", "/api/v3.1/tool_router/session/trs_1", `{"workbench":{"sandbox_size":"large"}}`)
			if err := fake.SetFault(composiotest.RouteList, composiotest.Fault{Status: 500, Times: 10}); err != nil {
				t.Fatal(err)
			}
			do("POST", "/api/v3/connected_accounts/link", link("u_fail")) // lookup failed
			if err := fake.SetFault(composiotest.RouteList, composiotest.Fault{Status: 401, Times: 10}); err != nil {
				t.Fatal(err)
			}
			do("POST", "/api/v3/connected_accounts/link", link("u_401")) // lookup refused
			fake.ClearFaults()
			if err := fake.SetFault(composiotest.RouteAny, composiotest.Fault{Reset: true, Times: 10}); err != nil {
				t.Fatal(err)
			}
			do("GET", "/api/v3/toolkits", "") // forward failed
			fake.ClearFaults()

			got := series(t, p.Metrics)
			checkClosed(t, got, expected("memory"), false)
			var counted float64
			for _, v := range got["composio_guard_decisions_total"] {
				counted += v
			}
			if counted < 10 {
				t.Errorf("only %v decisions counted: the traffic did not reach the guard", counted)
			}
			if len(got["composio_guard_http_requests_total"]) == 0 {
				t.Error("no http_requests_total series after traffic")
			}
		})
	}
}
