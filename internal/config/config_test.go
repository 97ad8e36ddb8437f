package config

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/composio-guard/composio-guard/internal/lock"
	"github.com/composio-guard/composio-guard/internal/server"
	"github.com/composio-guard/composio-guard/internal/upstream"
)

func TestDefaults(t *testing.T) {
	c, err := LoadFrom(map[string]string{})
	if err != nil {
		t.Fatalf("defaults must validate: %v", err)
	}
	checks := []struct {
		name string
		got  any
		want any
	}{
		{"UpstreamURL", c.Transport.URL, "https://backend.composio.dev"},
		{"ListenAddr", c.Server.ListenAddr, ":8080"},
		{"AdminAddr", c.Server.AdminAddr, ":9090"},
		{"Mode", c.Guard.Mode, ModeEnforce},
		{"FailureMode", c.Guard.FailureMode, FailureClosed},
		{"MaxBodyBytes", c.Guard.MaxBodyBytes, int64(1 << 20)},
		{"BodyBudgetBytes", c.Guard.BodyBudgetBytes, int64(64 << 20)},
		{"Notes", len(c.Notes()), 0},
		{"LookupTimeout", c.Lookup.Timeout, 5 * time.Second},
		{"LookupPageLimit", c.Lookup.PageLimit, 100},
		{"LookupMaxPages", c.Lookup.MaxPages, 10},
		{"LookupBreakerThreshold", c.Lookup.BreakerThreshold, 5},
		{"LookupBreakerCooldown", c.Lookup.BreakerCooldown, 10 * time.Second},
		{"PendingAction", c.Guard.PendingAction, PendingReplay},
		{"PendingMaxTTL", c.Guard.PendingMaxTTL, 15 * time.Minute},
		{"AllowMultiple", c.Guard.AllowMultiple, AllowMultipleFlag},
		{"MultipleAuthConfigs", len(c.Guard.MultipleAuthConfigs), 0},
		{"LockBackend", c.Lock.Backend, lock.BackendMemory},
		{"LockWait", c.Lock.Wait, time.Duration(0)},
		{"EffectiveLockWait", c.EffectiveLockWait(), 65 * time.Second},
		{"RedisKeyPrefix", c.Lock.RedisKeyPrefix, "composio-guard:"},
		{"RedisTimeout", c.Lock.RedisTimeout, 500 * time.Millisecond},
		{"RetryAfter", c.Guard.RetryAfter, time.Second},
		{"RetryAfterSeconds", c.Guard.RetryAfterSeconds(), 1},
		{"UpstreamDialTimeout", c.Transport.DialTimeout, 5 * time.Second},
		{"UpstreamTLSHandshakeTimeout", c.Transport.TLSHandshakeTimeout, 5 * time.Second},
		{"UpstreamResponseHeaderTimeout", c.Transport.ResponseHeaderTimeout, 60 * time.Second},
		{"UpstreamIdleConnTimeout", c.Transport.IdleConnTimeout, 90 * time.Second},
		{"UpstreamMaxIdleConnsPerHost", c.Transport.MaxIdleConnsPerHost, 256},
		{"ReadHeaderTimeout", c.Server.ReadHeaderTimeout, 10 * time.Second},
		{"IdleTimeout", c.Server.IdleTimeout, 120 * time.Second},
		{"MaxHeaderBytes", c.Server.MaxHeaderBytes, 65536},
		{"TrustForwarded", c.Server.TrustForwarded, false},
		{"ShutdownGrace", c.Server.ShutdownGrace, 25 * time.Second},
		{"DrainDelay", c.Server.DrainDelay, 5 * time.Second},
		{"LogLevel", c.Server.LogLevel, server.LevelInfo},
		{"Pprof", c.Server.Pprof, false},
		{"SandboxPolicy", c.Guard.SandboxRules().Active(), false},
		{"SandboxAllowed", c.Guard.SandboxRules().AllowedSizes(), SandboxSizes},
	}
	for _, tc := range checks {
		if !reflect.DeepEqual(tc.got, tc.want) {
			t.Errorf("%s = %v, want %v", tc.name, tc.got, tc.want)
		}
	}
	if c.LockTTL() <= c.Lookup.Timeout+c.Transport.ResponseHeaderTimeout {
		t.Errorf("LockTTL %s must exceed lookup + response header timeout", c.LockTTL())
	}
}

func TestValidSettings(t *testing.T) {
	tests := []struct {
		name  string
		env   map[string]string
		check func(t *testing.T, c Config)
	}{
		{"enums are case and space insensitive", map[string]string{"GUARD_MODE": " Shadow ", "GUARD_FAILURE_MODE": "OPEN", "GUARD_LOG_LEVEL": "Debug"},
			func(t *testing.T, c Config) {
				if c.Guard.Mode != ModeShadow || c.Guard.FailureMode != FailureOpen || c.Server.LogLevel != server.LevelDebug {
					t.Errorf("got %s %s %s", c.Guard.Mode, c.Guard.FailureMode, c.Server.LogLevel)
				}
			}},
		{"lists are trimmed, empties dropped", map[string]string{"GUARD_MULTIPLE_AUTH_CONFIGS": " ac_One, ac_two,,", "GUARD_SANDBOX_ALLOWED_SIZES": "Standard, medium"},
			func(t *testing.T, c Config) {
				if !reflect.DeepEqual(c.Guard.MultipleAuthConfigs, []string{"ac_One", "ac_two"}) {
					t.Errorf("auth configs %q", c.Guard.MultipleAuthConfigs)
				}
				if !c.Guard.MultipleAllowedFor("ac_One") || c.Guard.MultipleAllowedFor("ac_one") || c.Guard.MultipleAllowedFor("") {
					t.Error("MultipleAllowedFor must match ids exactly")
				}
				if !reflect.DeepEqual(c.Guard.SandboxRules().AllowedSizes(), []SandboxSize{SandboxStandard, SandboxMedium}) {
					t.Errorf("allowed %v", c.Guard.SandboxRules().AllowedSizes())
				}
			}},
		{"ceiling and set intersect", map[string]string{"GUARD_SANDBOX_MAX_SIZE": "large", "GUARD_SANDBOX_ALLOWED_SIZES": "standard,large,xlarge", "GUARD_SANDBOX_DEFAULT_SIZE": "large"},
			func(t *testing.T, c Config) {
				if !reflect.DeepEqual(c.Guard.SandboxRules().AllowedSizes(), []SandboxSize{SandboxStandard, SandboxLarge}) {
					t.Errorf("allowed %v", c.Guard.SandboxRules().AllowedSizes())
				}
				if c.Guard.SandboxRules().Allows("medium") || c.Guard.SandboxRules().Allows("xlarge") || c.Guard.SandboxRules().Allows("huge") {
					t.Error("medium, xlarge and unknown tiers must be refused")
				}
			}},
		{"redis with password and TLS", map[string]string{"GUARD_LOCK_BACKEND": "redis", "GUARD_REDIS_URL": "rediss://default:s3cret@redis.internal:6380/2"}, nil},
		{"port 0 twice is fine", map[string]string{"GUARD_LISTEN_ADDR": "127.0.0.1:0", "GUARD_ADMIN_ADDR": "127.0.0.1:0"}, nil},
		{"same port on two hosts", map[string]string{"GUARD_LISTEN_ADDR": "127.0.0.1:9000", "GUARD_ADMIN_ADDR": "127.0.0.2:9000"}, nil},
		{"retry-after rounds up", map[string]string{"GUARD_RETRY_AFTER": "1500ms"},
			func(t *testing.T, c Config) {
				if c.Guard.RetryAfterSeconds() != 2 {
					t.Errorf("RetryAfterSeconds = %d", c.Guard.RetryAfterSeconds())
				}
			}},
		{"explicit lock wait", map[string]string{"GUARD_LOCK_WAIT": "2s"},
			func(t *testing.T, c Config) {
				if c.EffectiveLockWait() != 2*time.Second {
					t.Errorf("EffectiveLockWait = %s", c.EffectiveLockWait())
				}
			}},
		{"upstream with path prefix", map[string]string{"GUARD_UPSTREAM_URL": "http://127.0.0.1:4000/base"},
			func(t *testing.T, c Config) {
				if u := c.Transport.Base(); u == nil || u.Host != "127.0.0.1:4000" || u.Path != "/base" {
					t.Errorf("UpstreamBase = %v", u)
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := LoadFrom(tc.env)
			if err != nil {
				t.Fatalf("LoadFrom: %v", err)
			}
			if tc.check != nil {
				tc.check(t, c)
			}
		})
	}
}

// Every problem is reported in one go, each naming its variable.
func TestEveryErrorReportedTogether(t *testing.T) {
	env := map[string]string{
		"GUARD_UPSTREAM_URL":                     "ftp://user:hunter2@example.com/?q=1",
		"GUARD_LISTEN_ADDR":                      ":9090",
		"GUARD_ADMIN_ADDR":                       "0.0.0.0:9090",
		"GUARD_MODE":                             "enforcing",
		"GUARD_FAILURE_MODE":                     "sometimes",
		"GUARD_MAX_BODY_BYTES":                   "0",
		"GUARD_LOOKUP_TIMEOUT":                   "soon",
		"GUARD_LOOKUP_PAGE_LIMIT":                "5000",
		"GUARD_LOOKUP_MAX_PAGES":                 "0",
		"GUARD_LOOKUP_BREAKER_THRESHOLD":         "-1",
		"GUARD_LOOKUP_BREAKER_COOLDOWN":          "0s",
		"GUARD_PENDING_ACTION":                   "wait",
		"GUARD_PENDING_MAX_TTL":                  "-1m",
		"GUARD_ALLOW_MULTIPLE":                   "always",
		"GUARD_MULTIPLE_AUTH_CONFIGS":            "ac_1,ac 2",
		"GUARD_LOCK_BACKEND":                     "redis",
		"GUARD_LOCK_WAIT":                        "-1s",
		"GUARD_REDIS_TIMEOUT":                    "0s",
		"GUARD_RETRY_AFTER":                      "0s",
		"GUARD_UPSTREAM_DIAL_TIMEOUT":            "0s",
		"GUARD_UPSTREAM_MAX_IDLE_CONNS_PER_HOST": "0",
		"GUARD_READ_HEADER_TIMEOUT":              "0s",
		"GUARD_MAX_HEADER_BYTES":                 "100",
		"GUARD_TRUST_FORWARDED":                  "perhaps",
		"GUARD_SHUTDOWN_GRACE":                   "5s",
		"GUARD_DRAIN_DELAY":                      "5s",
		"GUARD_LOG_LEVEL":                        "verbose",
		"GUARD_SANDBOX_MAX_SIZE":                 "huge",
		"GUARD_SANDBOX_ALLOWED_SIZES":            "standard,tiny",
		"GUARD_SANDBOX_DEFAULT_SIZE":             "gigantic",
	}
	_, err := LoadFrom(env)
	if err == nil {
		t.Fatal("want errors")
	}
	msg := err.Error()
	for _, name := range []string{
		"GUARD_UPSTREAM_URL", "GUARD_ADMIN_ADDR", "GUARD_MODE", "GUARD_FAILURE_MODE", "GUARD_MAX_BODY_BYTES",
		"GUARD_LOOKUP_TIMEOUT", "GUARD_LOOKUP_PAGE_LIMIT", "GUARD_LOOKUP_MAX_PAGES", "GUARD_LOOKUP_BREAKER_THRESHOLD",
		"GUARD_LOOKUP_BREAKER_COOLDOWN", "GUARD_PENDING_ACTION", "GUARD_PENDING_MAX_TTL", "GUARD_ALLOW_MULTIPLE",
		"GUARD_MULTIPLE_AUTH_CONFIGS", "GUARD_LOCK_WAIT", "GUARD_REDIS_URL", "GUARD_REDIS_TIMEOUT", "GUARD_RETRY_AFTER",
		"GUARD_UPSTREAM_DIAL_TIMEOUT", "GUARD_UPSTREAM_MAX_IDLE_CONNS_PER_HOST", "GUARD_READ_HEADER_TIMEOUT",
		"GUARD_MAX_HEADER_BYTES", "GUARD_TRUST_FORWARDED", "GUARD_DRAIN_DELAY", "GUARD_LOG_LEVEL",
		"GUARD_SANDBOX_MAX_SIZE", "GUARD_SANDBOX_ALLOWED_SIZES", "GUARD_SANDBOX_DEFAULT_SIZE",
	} {
		if !strings.Contains(msg, name+":") {
			t.Errorf("error does not mention %s:\n%s", name, msg)
		}
	}
	for _, detail := range []string{"scheme must be http or https", "must not carry user info", "must not carry a query", "is required when GUARD_LOCK_BACKEND=redis"} {
		if !strings.Contains(msg, detail) {
			t.Errorf("error lacks %q:\n%s", detail, msg)
		}
	}
	if strings.Contains(msg, "hunter2") {
		t.Errorf("error leaks the upstream password:\n%s", msg)
	}
	if n := strings.Count(msg, "\n") + 1; n < 28 {
		t.Errorf("want one line per problem (>= 28), got %d:\n%s", n, msg)
	}
}

// A value that fails to parse is reported once, not again as out of range.
func TestParseErrorReportedOnce(t *testing.T) {
	_, err := LoadFrom(map[string]string{"GUARD_LOOKUP_TIMEOUT": "soon"})
	if err == nil || strings.Count(err.Error(), "GUARD_LOOKUP_TIMEOUT") != 1 {
		t.Fatalf("want exactly one GUARD_LOOKUP_TIMEOUT error, got %v", err)
	}
}

func TestSingleErrors(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"relative upstream", map[string]string{"GUARD_UPSTREAM_URL": "/api"}, "GUARD_UPSTREAM_URL: scheme must be http or https; a host is required"},
		{"upstream fragment", map[string]string{"GUARD_UPSTREAM_URL": "https://h/#x"}, "must not carry a fragment"},
		{"bad listen addr", map[string]string{"GUARD_LISTEN_ADDR": "8080"}, "GUARD_LISTEN_ADDR: want host:port"},
		{"bad port", map[string]string{"GUARD_ADMIN_ADDR": ":99999"}, "GUARD_ADMIN_ADDR: port \"99999\""},
		{"same addr", map[string]string{"GUARD_ADMIN_ADDR": ":8080", "GUARD_LISTEN_ADDR": "127.0.0.1:8080"}, "GUARD_ADMIN_ADDR: must differ from GUARD_LISTEN_ADDR"},
		{"redis scheme", map[string]string{"GUARD_LOCK_BACKEND": "redis", "GUARD_REDIS_URL": "http://:pw@h:6379"}, "GUARD_REDIS_URL: scheme must be redis:// or rediss://"},
		{"redis db", map[string]string{"GUARD_LOCK_BACKEND": "redis", "GUARD_REDIS_URL": "redis://:pw@h:6379/x"}, "invalid database number"},
		{"redis unparseable", map[string]string{"GUARD_LOCK_BACKEND": "redis", "GUARD_REDIS_URL": "redis://:pw@h:port\x7f"}, "GUARD_REDIS_URL: not a valid URL"},
		{"policy allows nothing", map[string]string{"GUARD_SANDBOX_MAX_SIZE": "standard", "GUARD_SANDBOX_ALLOWED_SIZES": "large"}, "allows no tier at all"},
		{"default above ceiling", map[string]string{"GUARD_SANDBOX_MAX_SIZE": "medium", "GUARD_SANDBOX_DEFAULT_SIZE": "large"}, "GUARD_SANDBOX_DEFAULT_SIZE: \"large\" is not allowed by the sandbox policy (GUARD_SANDBOX_MAX_SIZE=medium; allowed: standard,medium)"},
		{"default outside set", map[string]string{"GUARD_SANDBOX_ALLOWED_SIZES": "medium", "GUARD_SANDBOX_DEFAULT_SIZE": "standard"}, "not allowed by the sandbox policy"},
		{"drain longer than grace", map[string]string{"GUARD_DRAIN_DELAY": "30s", "GUARD_SHUTDOWN_GRACE": "25s"}, "GUARD_DRAIN_DELAY: (30s) must be shorter than GUARD_SHUTDOWN_GRACE"},
		{"unparseable int", map[string]string{"GUARD_MAX_BODY_BYTES": "1MB"}, "GUARD_MAX_BODY_BYTES: cannot parse"},
		{"budget below the body cap, both set", map[string]string{"GUARD_MAX_BODY_BYTES": "2097152", "GUARD_BODY_BUDGET_BYTES": "1048576"},
			"GUARD_BODY_BUDGET_BYTES: (1048576) must be at least GUARD_MAX_BODY_BYTES (2097152)"},
		{"budget not positive", map[string]string{"GUARD_BODY_BUDGET_BYTES": "0"}, "GUARD_BODY_BUDGET_BYTES: must be positive"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadFrom(tc.env)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want error containing %q, got %v", tc.want, err)
			}
			if strings.Contains(err.Error(), "pw@") {
				t.Errorf("error leaks the Redis password: %v", err)
			}
		})
	}
}

func TestStringRedacts(t *testing.T) {
	tests := []struct {
		name, redisURL, want, secret string
	}{
		{"user and password", "rediss://default:s3cr3t-pw@redis.internal:6380/0", "GUARD_REDIS_URL=rediss://default:xxxxx@redis.internal:6380/0", "s3cr3t-pw"},
		{"password only", "redis://:s3cr3t-pw@redis:6379", "GUARD_REDIS_URL=redis://:xxxxx@redis:6379", "s3cr3t-pw"},
		{"user name only", "redis://s3cr3t-pw@redis:6379", "GUARD_REDIS_URL=redis://xxxxx@redis:6379", "s3cr3t-pw"},
		{"no credentials", "redis://redis:6379", "GUARD_REDIS_URL=redis://redis:6379", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := LoadFrom(map[string]string{"GUARD_LOCK_BACKEND": "redis", "GUARD_REDIS_URL": tc.redisURL})
			if err != nil {
				t.Fatal(err)
			}
			s := c.String()
			if !strings.Contains(s, tc.want) {
				t.Errorf("String() lacks %q:\n%s", tc.want, s)
			}
			if tc.secret != "" && strings.Contains(s, tc.secret) {
				t.Errorf("String() leaks the secret:\n%s", s)
			}
			if c.Lock.RedisURL != tc.redisURL {
				t.Errorf("the usable URL must stay intact, got %q", c.Lock.RedisURL)
			}
		})
	}
	// An unparseable URL is masked whole, and every setting is listed.
	c := Config{Lock: lock.Settings{RedisURL: "redis://:pw@h:port\x7f"}}
	s := c.String()
	if strings.Contains(s, "pw") || !strings.Contains(s, "GUARD_REDIS_URL=xxxxx") {
		t.Errorf("unparseable URL not masked: %s", s)
	}
	for _, k := range []string{"GUARD_MODE=", "GUARD_SANDBOX_ALLOWED_SIZES=", "GUARD_SHUTDOWN_GRACE=0s", "GUARD_PPROF=false"} {
		if !strings.Contains(s, k) {
			t.Errorf("String() lacks %s: %s", k, s)
		}
	}
}

func TestUnknownKeys(t *testing.T) {
	got := UnknownKeys([]string{"GUARD_MODE=off", "GUARD_LOCK_BACKED=redis", "PATH=/bin", "GUARDIAN=x", "GUARD_FAILUREMODE=open"})
	want := []string{"GUARD_LOCK_BACKED", "GUARD_FAILUREMODE"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("UnknownKeys = %v, want %v", got, want)
	}
}

// GUARD_BODY_BUDGET_BYTES must hold one body of GUARD_MAX_BODY_BYTES. Only
// two explicit settings that contradict are refused: a default gives way to
// the one setting given, and the change is reported.
func TestBodyBudgetFitsBodyCap(t *testing.T) {
	tests := []struct {
		name        string
		env         map[string]string
		budget, max int64
		note        string // in Notes, "" for none
	}{
		{"defaults", map[string]string{}, 64 << 20, 1 << 20, ""},
		{"both set and consistent", map[string]string{"GUARD_MAX_BODY_BYTES": "4096", "GUARD_BODY_BUDGET_BYTES": "4096"}, 4096, 4096, ""},
		{"cap set below the default budget", map[string]string{"GUARD_MAX_BODY_BYTES": "8388608"}, 64 << 20, 8 << 20, ""},
		{"cap set above the default budget", map[string]string{"GUARD_MAX_BODY_BYTES": "134217728"}, 128 << 20, 128 << 20,
			"GUARD_BODY_BUDGET_BYTES raised from its default 67108864 to GUARD_MAX_BODY_BYTES (134217728)"},
		{"budget set below the default cap", map[string]string{"GUARD_BODY_BUDGET_BYTES": "65536"}, 65536, 65536,
			"GUARD_MAX_BODY_BYTES lowered from its default 1048576 to GUARD_BODY_BUDGET_BYTES (65536)"},
		{"budget set above the default cap", map[string]string{"GUARD_BODY_BUDGET_BYTES": "2097152"}, 2 << 20, 1 << 20, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := LoadFrom(tc.env)
			if err != nil {
				t.Fatalf("LoadFrom: %v", err)
			}
			if c.Guard.BodyBudgetBytes != tc.budget || c.Guard.MaxBodyBytes != tc.max {
				t.Errorf("budget %d, cap %d; want %d, %d", c.Guard.BodyBudgetBytes, c.Guard.MaxBodyBytes, tc.budget, tc.max)
			}
			wantNote(t, c, tc.note)
		})
	}
	// A Config built in code is checked as given.
	c, _ := LoadFrom(map[string]string{})
	c.Guard.MaxBodyBytes, c.Guard.BodyBudgetBytes = 2<<20, 1<<20
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "GUARD_BODY_BUDGET_BYTES") {
		t.Errorf("Validate: %v", err)
	}
}

// A parse error names only the Go field: field names must be unique across
// Config for varName to name the right variable.
func TestFieldNamesUnique(t *testing.T) {
	seen := map[string]string{}
	walk(reflect.ValueOf(Config{}), func(key string, sf reflect.StructField, _ reflect.Value) {
		if other, dup := seen[sf.Name]; dup {
			t.Errorf("field %s reads both %s and %s", sf.Name, other, key)
		}
		seen[sf.Name] = key
	})
	if len(seen) < 39 {
		t.Errorf("walk found %d settings", len(seen))
	}
	if got := varName("BreakerCooldown"); got != "GUARD_LOOKUP_BREAKER_COOLDOWN" {
		t.Errorf("varName = %s", got)
	}
}

// Each package's defaults come from its own envDefault tags, and they are
// what Config reads when nothing is set: one source of defaults.
func TestPackageDefaultsAreConfigDefaults(t *testing.T) {
	c, err := LoadFrom(map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	if d := server.DefaultSettings(); d != c.Server {
		t.Errorf("server defaults %+v, config %+v", d, c.Server)
	}
	if d := upstream.DefaultLookupSettings(); d != c.Lookup {
		t.Errorf("lookup defaults %+v, config %+v", d, c.Lookup)
	}
	if d := upstream.DefaultTransportSettings(); d != c.Transport {
		t.Errorf("transport defaults %+v, config %+v", d, c.Transport)
	}
	if d := lock.DefaultSettings(); d != c.Lock {
		t.Errorf("lock defaults %+v, config %+v", d, c.Lock)
	}
	for name, err := range map[string]error{
		"server": server.DefaultSettings().Validate(), "lookup": upstream.DefaultLookupSettings().Validate(),
		"transport": upstream.DefaultTransportSettings().Validate(), "lock": lock.DefaultSettings().Validate(),
	} {
		if err != nil {
			t.Errorf("%s defaults do not validate: %v", name, err)
		}
	}
}
