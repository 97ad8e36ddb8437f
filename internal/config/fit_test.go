package config

import (
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/composio-guard/composio-guard/internal/audit"
	"github.com/composio-guard/composio-guard/internal/lock"
)

// wideDurations are values each valid on its own for any duration setting,
// from far below to far above every default.
var wideDurations = []string{"1ms", "100ms", "999ms", "1s", "4s", "5s", "5001ms", "10s", "25s", "61s", "5m", "15m", "1h", "24h", "720h"}

// zeroAllowed are the duration settings for which 0 is valid on its own (0
// means "derive it" or "none").
var zeroAllowed = map[string]bool{"DRAIN_DELAY": true, "LOCK_WAIT": true, "AUDIT_INTERVAL": true, "AUDIT_TIMEOUT": true}

// floors are the shortest values valid on their own, where one exists.
var floors = map[string]time.Duration{"AUDIT_INTERVAL": audit.MinInterval}

// companions are what a setting requires, whatever its value: not a default
// in its way, but a second setting of the user's own (the periodic audit
// needs its credential).
var companions = map[string]map[string]string{"AUDIT_INTERVAL": {Prefix + "AUDIT_API_KEY": "audit-key"}}

// A default must never make the only setting given invalid: every duration
// setting, set alone to any value valid on its own, loads, keeps the value
// given, and the settings derived from it fit together.
func TestEveryDurationSetAloneLoads(t *testing.T) {
	var keys []string
	walk(reflect.ValueOf(Config{}), func(key string, sf reflect.StructField, _ reflect.Value) {
		if sf.Type == reflect.TypeFor[time.Duration]() {
			keys = append(keys, key)
		}
	})
	if len(keys) < 16 {
		t.Fatalf("found %d duration settings: %v", len(keys), keys)
	}
	for _, key := range keys {
		values := wideDurations
		if zeroAllowed[key] {
			values = append([]string{"0s"}, values...)
		}
		for _, v := range values {
			if d, _ := time.ParseDuration(v); d != 0 && d < floors[key] {
				continue
			}
			environ := map[string]string{Prefix + key: v}
			for k, cv := range companions[key] {
				environ[k] = cv
			}
			c, err := LoadFrom(environ)
			if err != nil {
				t.Errorf("%s%s=%s alone: %v", Prefix, key, v, err)
				continue
			}
			want, _ := time.ParseDuration(v)
			var got time.Duration
			walk(reflect.ValueOf(c), func(k string, _ reflect.StructField, f reflect.Value) {
				if k == key {
					got = time.Duration(f.Int())
				}
			})
			if got != want {
				t.Errorf("%s%s=%s alone: loaded as %s: a setting given is never changed", Prefix, key, v, got)
			}
			checkFits(t, Prefix+key+"="+v, c)
		}
	}
}

// checkFits asserts what must hold between the settings of a loaded Config.
func checkFits(t *testing.T, what string, c Config) {
	t.Helper()
	if s := c.Server; s.DrainDelay < 0 || s.DrainDelay >= s.ShutdownGrace {
		t.Errorf("%s: drain delay %s, grace %s: the drain must end inside the grace", what, s.DrainDelay, s.ShutdownGrace)
	}
	if g := c.Guard; g.BodyBudgetBytes < g.MaxBodyBytes {
		t.Errorf("%s: body budget %d below the body cap %d", what, g.BodyBudgetBytes, g.MaxBodyBytes)
	}
	// The guard's timing: a positive lock wait, and a lock TTL the guarded
	// work (lookup, then the forward's response headers, two lock calls)
	// cannot outlive.
	gc := c.GuardConfig()
	if gc.LockWait <= 0 {
		t.Errorf("%s: lock wait %s", what, gc.LockWait)
	}
	if c.Lock.Wait > 0 && gc.LockWait != c.Lock.Wait {
		t.Errorf("%s: lock wait %s, want GUARD_LOCK_WAIT as given (%s)", what, gc.LockWait, c.Lock.Wait)
	}
	if work := c.Lookup.Timeout + c.Transport.ResponseHeaderTimeout + 2*c.Lock.RedisTimeout; gc.LockTTL <= work {
		t.Errorf("%s: lock TTL %s does not outlive the guarded work (%s)", what, gc.LockTTL, work)
	}
	if gc.LookupTimeout != c.Lookup.Timeout {
		t.Errorf("%s: the guard's lookup timeout %s, the lookup's %s", what, gc.LookupTimeout, c.Lookup.Timeout)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("%s: the loaded Config does not validate: %v", what, err)
	}
}

// The body cap and the budget, each set alone over a wide range.
func TestBodySettingSetAloneLoads(t *testing.T) {
	for _, key := range []string{"MAX_BODY_BYTES", "BODY_BUDGET_BYTES"} {
		for _, n := range []int64{1, 4096, 1 << 20, 64<<20 - 1, 64 << 20, 64<<20 + 1, 1 << 30, 1 << 40} {
			v := strconv.FormatInt(n, 10)
			c, err := LoadFrom(map[string]string{Prefix + key: v})
			if err != nil {
				t.Errorf("%s%s=%s alone: %v", Prefix, key, v, err)
				continue
			}
			got := c.Guard.MaxBodyBytes
			if key == "BODY_BUDGET_BYTES" {
				got = c.Guard.BodyBudgetBytes
			}
			if got != n {
				t.Errorf("%s%s=%s alone: loaded as %d", Prefix, key, v, got)
			}
			checkFits(t, Prefix+key+"="+v, c)
		}
	}
}

// GUARD_SHUTDOWN_GRACE and GUARD_DRAIN_DELAY: the one not given is derived
// from the one given, and the start-up notes say so.
func TestDrainDelayFitsGrace(t *testing.T) {
	for _, tc := range []struct {
		env          map[string]string
		drain, grace time.Duration
		note         string // "" for none
	}{
		{map[string]string{}, 5 * time.Second, 25 * time.Second, ""},
		{map[string]string{"GUARD_SHUTDOWN_GRACE": "5s"}, time.Second, 5 * time.Second,
			"GUARD_DRAIN_DELAY lowered from its default 5s to 1s, 1/5 of GUARD_SHUTDOWN_GRACE (5s)"},
		{map[string]string{"GUARD_SHUTDOWN_GRACE": "10s"}, 2 * time.Second, 10 * time.Second,
			"GUARD_DRAIN_DELAY lowered from its default 5s to 2s"},
		{map[string]string{"GUARD_SHUTDOWN_GRACE": "1ms"}, 200 * time.Microsecond, time.Millisecond,
			"GUARD_DRAIN_DELAY lowered from its default 5s to 200µs"},
		{map[string]string{"GUARD_SHUTDOWN_GRACE": "25s"}, 5 * time.Second, 25 * time.Second, ""},
		{map[string]string{"GUARD_SHUTDOWN_GRACE": "1h"}, 5 * time.Second, time.Hour, ""},
		{map[string]string{"GUARD_DRAIN_DELAY": "30s"}, 30 * time.Second, 50 * time.Second,
			"GUARD_SHUTDOWN_GRACE raised from its default 25s to 50s, GUARD_DRAIN_DELAY (30s) plus the 20s"},
		{map[string]string{"GUARD_DRAIN_DELAY": "10s"}, 10 * time.Second, 30 * time.Second,
			"GUARD_SHUTDOWN_GRACE raised from its default 25s to 30s"},
		{map[string]string{"GUARD_DRAIN_DELAY": "5s"}, 5 * time.Second, 25 * time.Second, ""},
		{map[string]string{"GUARD_DRAIN_DELAY": "0s"}, 0, 25 * time.Second, ""},
		// Both given and consistent: taken as given, even a short in-flight time.
		{map[string]string{"GUARD_DRAIN_DELAY": "5s", "GUARD_SHUTDOWN_GRACE": "6s"}, 5 * time.Second, 6 * time.Second, ""},
		{map[string]string{"GUARD_DRAIN_DELAY": "0s", "GUARD_SHUTDOWN_GRACE": "1ms"}, 0, time.Millisecond, ""},
	} {
		c, err := LoadFrom(tc.env)
		if err != nil {
			t.Errorf("%v: %v", tc.env, err)
			continue
		}
		if c.Server.DrainDelay != tc.drain || c.Server.ShutdownGrace != tc.grace {
			t.Errorf("%v: drain %s, grace %s; want %s, %s", tc.env, c.Server.DrainDelay, c.Server.ShutdownGrace, tc.drain, tc.grace)
		}
		wantNote(t, c, tc.note, tc.env)
	}
}

// Only two explicit settings that contradict are refused, and the message
// names both.
func TestContradictingSettingsRefusedNamingBoth(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		a, b string
	}{
		{map[string]string{"GUARD_DRAIN_DELAY": "10s", "GUARD_SHUTDOWN_GRACE": "5s"}, "GUARD_DRAIN_DELAY", "GUARD_SHUTDOWN_GRACE"},
		{map[string]string{"GUARD_DRAIN_DELAY": "5s", "GUARD_SHUTDOWN_GRACE": "5s"}, "GUARD_DRAIN_DELAY", "GUARD_SHUTDOWN_GRACE"},
		{map[string]string{"GUARD_MAX_BODY_BYTES": "2097152", "GUARD_BODY_BUDGET_BYTES": "1048576"}, "GUARD_BODY_BUDGET_BYTES", "GUARD_MAX_BODY_BYTES"},
		{map[string]string{"GUARD_LISTEN_ADDR": "127.0.0.1:7000", "GUARD_ADMIN_ADDR": ":7000"}, "GUARD_ADMIN_ADDR", "GUARD_LISTEN_ADDR"},
		{map[string]string{"GUARD_SANDBOX_MAX_SIZE": "standard", "GUARD_SANDBOX_ALLOWED_SIZES": "large"}, "GUARD_SANDBOX_ALLOWED_SIZES", "GUARD_SANDBOX_MAX_SIZE"},
		{map[string]string{"GUARD_SANDBOX_MAX_SIZE": "medium", "GUARD_SANDBOX_DEFAULT_SIZE": "large"}, "GUARD_SANDBOX_DEFAULT_SIZE", "GUARD_SANDBOX_MAX_SIZE"},
		{map[string]string{"GUARD_SANDBOX_ALLOWED_SIZES": "medium", "GUARD_SANDBOX_DEFAULT_SIZE": "standard"}, "GUARD_SANDBOX_DEFAULT_SIZE", "GUARD_SANDBOX_ALLOWED_SIZES"},
	} {
		c, err := LoadFrom(tc.env)
		if err == nil {
			t.Errorf("%v: loaded (%s)", tc.env, c)
			continue
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, tc.a+":") || !strings.Contains(msg, tc.b) {
			t.Errorf("%v: error %q, want one starting with %s: and naming %s", tc.env, msg, tc.a, tc.b)
		}
		if len(c.Notes()) != 0 {
			t.Errorf("%v: explicit settings were adjusted: %v", tc.env, c.Notes())
		}
	}
}

// The guard's timing settings cannot contradict: the lock wait and the lock
// TTL are derived from the lookup, upstream and Redis timeouts, and an
// explicit GUARD_LOCK_WAIT is taken as given. Extreme pairs load.
func TestTimingPairsNeverContradict(t *testing.T) {
	extremes := []string{"1ms", "1h"}
	pairs := [][2]string{
		{"LOCK_WAIT", "LOOKUP_TIMEOUT"},
		{"LOCK_WAIT", "UPSTREAM_RESPONSE_HEADER_TIMEOUT"},
		{"LOCK_WAIT", "REDIS_TIMEOUT"},
		{"LOOKUP_TIMEOUT", "UPSTREAM_RESPONSE_HEADER_TIMEOUT"},
		{"LOOKUP_TIMEOUT", "REDIS_TIMEOUT"},
		{"LOOKUP_TIMEOUT", "SESSION_CACHE_TTL"},
		{"BODY_READ_TIMEOUT", "LOOKUP_TIMEOUT"},
		{"BODY_READ_TIMEOUT", "SHUTDOWN_GRACE"},
		{"PENDING_MAX_TTL", "LOCK_WAIT"},
		{"PENDING_MAX_TTL", "SESSION_CACHE_TTL"},
		{"RETRY_AFTER", "LOOKUP_BREAKER_COOLDOWN"},
		{"UPSTREAM_DIAL_TIMEOUT", "LOOKUP_TIMEOUT"},
		{"UPSTREAM_TLS_HANDSHAKE_TIMEOUT", "UPSTREAM_RESPONSE_HEADER_TIMEOUT"},
		{"READ_HEADER_TIMEOUT", "IDLE_TIMEOUT"},
	}
	for _, p := range pairs {
		for _, a := range extremes {
			for _, b := range extremes {
				env := map[string]string{Prefix + p[0]: a, Prefix + p[1]: b}
				c, err := LoadFrom(env)
				if err != nil {
					t.Errorf("%v: %v", env, err)
					continue
				}
				checkFits(t, p[0]+"="+a+" "+p[1]+"="+b, c)
			}
		}
	}
}

// GUARD_LISTEN_ADDR and GUARD_ADMIN_ADDR, each set alone to any address:
// when the one given takes the other's default port, the other moves to
// the port left free, and the notes say so.
func TestListenersFit(t *testing.T) {
	for _, tc := range []struct {
		env           map[string]string
		listen, admin string
		note          string
	}{
		{map[string]string{}, ":8080", ":9090", ""},
		{map[string]string{"GUARD_LISTEN_ADDR": ":9090"}, ":9090", ":8080",
			"GUARD_ADMIN_ADDR moved from its default :9090 to :8080, since GUARD_LISTEN_ADDR (:9090) takes its port"},
		{map[string]string{"GUARD_LISTEN_ADDR": "127.0.0.1:9090"}, "127.0.0.1:9090", ":8080", "GUARD_ADMIN_ADDR moved"},
		{map[string]string{"GUARD_LISTEN_ADDR": "[::1]:9090"}, "[::1]:9090", ":8080", "GUARD_ADMIN_ADDR moved"},
		{map[string]string{"GUARD_ADMIN_ADDR": ":8080"}, ":9090", ":8080",
			"GUARD_LISTEN_ADDR moved from its default :8080 to :9090, since GUARD_ADMIN_ADDR (:8080) takes its port"},
		{map[string]string{"GUARD_ADMIN_ADDR": "0.0.0.0:8080"}, ":9090", "0.0.0.0:8080", "GUARD_LISTEN_ADDR moved"},
		{map[string]string{"GUARD_LISTEN_ADDR": ":9091"}, ":9091", ":9090", ""},
		{map[string]string{"GUARD_ADMIN_ADDR": "127.0.0.1:0"}, ":8080", "127.0.0.1:0", ""},
		// Both given and apart: as given.
		{map[string]string{"GUARD_LISTEN_ADDR": ":9090", "GUARD_ADMIN_ADDR": ":8080"}, ":9090", ":8080", ""},
	} {
		c, err := LoadFrom(tc.env)
		if err != nil {
			t.Errorf("%v: %v", tc.env, err)
			continue
		}
		if c.Server.ListenAddr != tc.listen || c.Server.AdminAddr != tc.admin {
			t.Errorf("%v: listen %s, admin %s; want %s, %s", tc.env, c.Server.ListenAddr, c.Server.AdminAddr, tc.listen, tc.admin)
		}
		wantNote(t, c, tc.note, tc.env)
	}
	// Any port, either listener alone, loads.
	for _, key := range []string{"LISTEN_ADDR", "ADMIN_ADDR"} {
		for _, v := range []string{":0", ":1", ":80", ":8080", ":9090", "127.0.0.1:8080", "127.0.0.1:9090", "[::]:9090", "localhost:8080", ":65535"} {
			c, err := LoadFrom(map[string]string{Prefix + key: v})
			if err != nil {
				t.Errorf("%s%s=%s alone: %v", Prefix, key, v, err)
				continue
			}
			if got := map[string]string{"LISTEN_ADDR": c.Server.ListenAddr, "ADMIN_ADDR": c.Server.AdminAddr}[key]; got != v {
				t.Errorf("%s%s=%s alone: loaded as %s", Prefix, key, v, got)
			}
		}
	}
}

// wantNote checks the start line's notes: none when want is empty, else one
// that contains want.
func wantNote(t *testing.T, c Config, want string, ctx ...any) {
	t.Helper()
	notes := strings.Join(c.Notes(), "\n")
	if want == "" && notes != "" || !strings.Contains(notes, want) {
		t.Errorf("%v: notes %q, want %q", ctx, notes, want)
	}
}

// A Redis URL given alone means Redis: the memory default would leave it
// unused and each replica with locks of its own. Redis settings the memory
// backend cannot use are warned about, never dropped in silence, and never
// stop a start.
func TestFitLockBackend(t *testing.T) {
	const url = "redis://127.0.0.1:6379/0"
	for _, tc := range []struct {
		env      map[string]string
		backend  lock.Backend
		note     string
		warnings []string
	}{
		{map[string]string{}, lock.BackendMemory, "", nil},
		{map[string]string{"GUARD_REDIS_URL": url}, lock.BackendRedis,
			"GUARD_LOCK_BACKEND set from its default memory to redis, since GUARD_REDIS_URL is given", nil},
		{map[string]string{"GUARD_REDIS_URL": url, "GUARD_LOCK_BACKEND": "redis"}, lock.BackendRedis, "", nil},
		{map[string]string{"GUARD_REDIS_URL": url, "GUARD_LOCK_BACKEND": "memory"}, lock.BackendMemory, "",
			[]string{"GUARD_REDIS_URL has no effect: GUARD_LOCK_BACKEND is memory (as set)"}},
		{map[string]string{"GUARD_REDIS_MIN_REPLICAS": "1", "GUARD_REDIS_KEY_PREFIX": "x:"}, lock.BackendMemory, "",
			[]string{"GUARD_REDIS_MIN_REPLICAS has no effect: GUARD_LOCK_BACKEND is memory (its default)", "GUARD_REDIS_KEY_PREFIX has no effect"}},
	} {
		c, err := LoadFrom(tc.env)
		if err != nil {
			t.Errorf("%v: %v", tc.env, err)
			continue
		}
		if c.Lock.Backend != tc.backend {
			t.Errorf("%v: backend %s, want %s", tc.env, c.Lock.Backend, tc.backend)
		}
		wantNote(t, c, tc.note, tc.env)
		wantWarnings(t, c, tc.warnings, tc.env)
	}
}

// The periodic audit's settings given while it is off are warned about: a
// key alone starts no audit, and says so.
func TestWarnAuditOff(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want []string
	}{
		{map[string]string{"GUARD_AUDIT_API_KEY": "k"}, []string{"GUARD_AUDIT_API_KEY has no effect: the periodic audit is off until GUARD_AUDIT_INTERVAL is set"}},
		{map[string]string{"GUARD_AUDIT_INTERVAL": "0s", "GUARD_AUDIT_MAX_RATE": "2"}, []string{"GUARD_AUDIT_MAX_RATE has no effect"}},
		{map[string]string{"GUARD_AUDIT_INTERVAL": "1h", "GUARD_AUDIT_API_KEY": "k", "GUARD_AUDIT_MAX_RATE": "2"}, nil},
		{map[string]string{}, nil},
	} {
		c, err := LoadFrom(tc.env)
		if err != nil {
			t.Errorf("%v: %v", tc.env, err)
			continue
		}
		wantWarnings(t, c, tc.want, tc.env)
	}
}

// wantWarnings checks the start-up warnings: as many as want, each starting
// with its want.
func wantWarnings(t *testing.T, c Config, want []string, ctx ...any) {
	t.Helper()
	got := c.Warnings()
	if len(got) != len(want) {
		t.Errorf("%v: warnings %q, want %d", ctx, got, len(want))
		return
	}
	for i, w := range want {
		if !strings.HasPrefix(got[i], w) {
			t.Errorf("%v: warning %q, want it to start %q", ctx, got[i], w)
		}
	}
}

// Findings of an operator's review: an empty value is unset (a templated
// manifest's GUARD_X="" is no choice), so it neither blocks a default from
// giving way nor keeps Redis off; a CA file alone, a page limit of 0, a
// variable named just GUARD_ and a zero-padded port all start.
func TestOperatorTraps(t *testing.T) {
	for _, tc := range []struct {
		env   map[string]string
		check func(c Config) string
	}{
		{map[string]string{"GUARD_SHUTDOWN_GRACE": "5s", "GUARD_DRAIN_DELAY": ""}, func(c Config) string {
			if c.Server.DrainDelay != time.Second {
				return "drain delay " + c.Server.DrainDelay.String() + ", want 1s"
			}
			return ""
		}},
		{map[string]string{"GUARD_MAX_BODY_BYTES": "100000000", "GUARD_BODY_BUDGET_BYTES": ""}, func(c Config) string {
			if c.Guard.BodyBudgetBytes != 100000000 {
				return "budget not raised"
			}
			return ""
		}},
		{map[string]string{"GUARD_LISTEN_ADDR": ":9090", "GUARD_ADMIN_ADDR": ""}, func(c Config) string {
			if c.Server.AdminAddr != ":8080" {
				return "admin " + c.Server.AdminAddr + ", want :8080"
			}
			return ""
		}},
		{map[string]string{"GUARD_REDIS_URL": "redis://127.0.0.1:6379", "GUARD_LOCK_BACKEND": ""}, func(c Config) string {
			if c.Lock.Backend != lock.BackendRedis || len(c.Warnings()) != 0 {
				return "backend " + string(c.Lock.Backend) + ", want redis with no warning"
			}
			return ""
		}},
		{map[string]string{"GUARD_REDIS_CA_FILE": "/etc/ssl/ca.pem"}, func(c Config) string {
			if len(c.Warnings()) != 1 {
				return "want one warning for the CA file"
			}
			return ""
		}},
		{map[string]string{"GUARD_LOOKUP_PAGE_LIMIT": "0"}, func(c Config) string { return "" }},
		{map[string]string{"GUARD_": "x"}, func(c Config) string { return "" }},
		{map[string]string{"GUARD_LISTEN_ADDR": "127.0.0.1:09090"}, func(c Config) string {
			if c.Server.AdminAddr != ":8080" {
				return "admin " + c.Server.AdminAddr + " collides with 127.0.0.1:09090"
			}
			return ""
		}},
	} {
		c, err := LoadFrom(tc.env)
		if err != nil {
			t.Errorf("%v: refused: %v", tc.env, err)
			continue
		}
		if msg := tc.check(c); msg != "" {
			t.Errorf("%v: %s", tc.env, msg)
		}
	}
}
