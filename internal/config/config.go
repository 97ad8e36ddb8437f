// Package config owns the proxy's settings: every GUARD_* environment
// variable, its default, its validation (all errors reported at once) and a
// redacted rendering that is safe to log.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v10"
	"github.com/redis/go-redis/v9"
)

// Prefix of every environment variable the proxy reads.
const Prefix = "GUARD_"

// Mode says what the guards do with their decisions.
type Mode string

// Guard modes.
const (
	ModeEnforce Mode = "enforce" // decide and act
	ModeShadow  Mode = "shadow"  // decide, log and count, but forward everything
	ModeOff     Mode = "off"     // pure pass-through: no lookup, no policy
)

// FailureMode says what happens when the guard cannot decide (lookup or
// lock backend failing).
type FailureMode string

// Failure modes.
const (
	FailureClosed FailureMode = "closed" // 503 with Retry-After, nothing forwarded
	FailureOpen   FailureMode = "open"   // forward, count, log at WARN
)

// PendingAction says how a repeated link is answered while the first one's
// account is still INITIATED.
type PendingAction string

// Pending-link actions.
const (
	PendingReplay PendingAction = "replay" // replay the first answer
	PendingReject PendingAction = "reject" // 409 ConnectedAccount_LinkPending
	PendingOff    PendingAction = "off"    // no lease: forward
)

// AllowMultiple says whether callers may opt in to several accounts.
type AllowMultiple string

// Opt-in policies.
const (
	AllowMultipleFlag  AllowMultiple = "flag"  // honour the header / query / body flag
	AllowMultipleNever AllowMultiple = "never" // ignore the flag (still stripped)
)

// LockBackend names the shared-state backend.
type LockBackend string

// Lock backends.
const (
	LockMemory LockBackend = "memory"
	LockRedis  LockBackend = "redis"
)

// LogLevel is the minimum level logged.
type LogLevel string

// Log levels.
const (
	LevelDebug LogLevel = "debug"
	LevelInfo  LogLevel = "info"
	LevelWarn  LogLevel = "warn"
	LevelError LogLevel = "error"
)

// SandboxSize is a Tool Router workbench tier.
type SandboxSize string

// Sandbox tiers, smallest first.
const (
	SandboxStandard SandboxSize = "standard"
	SandboxMedium   SandboxSize = "medium"
	SandboxLarge    SandboxSize = "large"
	SandboxXLarge   SandboxSize = "xlarge"
)

// SandboxSizes lists every tier, smallest first.
var SandboxSizes = []SandboxSize{SandboxStandard, SandboxMedium, SandboxLarge, SandboxXLarge}

// Rank orders tiers (standard 1 … xlarge 4); 0 for an unknown tier.
func (s SandboxSize) Rank() int {
	for i, v := range SandboxSizes {
		if s == v {
			return i + 1
		}
	}
	return 0
}

// Valid reports whether s is one of the four tiers.
func (s SandboxSize) Valid() bool { return s.Rank() > 0 }

// Config is every setting, read from GUARD_* variables. Field comments are
// the documentation; the README's "Settings" section mirrors them.
type Config struct {
	// Listeners.
	UpstreamURL       string        `env:"UPSTREAM_URL" envDefault:"https://backend.composio.dev"`
	ListenAddr        string        `env:"LISTEN_ADDR" envDefault:":8080"`
	AdminAddr         string        `env:"ADMIN_ADDR" envDefault:":9090"`
	ReadHeaderTimeout time.Duration `env:"READ_HEADER_TIMEOUT" envDefault:"10s"`
	IdleTimeout       time.Duration `env:"IDLE_TIMEOUT" envDefault:"120s"`
	MaxHeaderBytes    int           `env:"MAX_HEADER_BYTES" envDefault:"65536"`
	TrustForwarded    bool          `env:"TRUST_FORWARDED" envDefault:"false"`
	ShutdownGrace     time.Duration `env:"SHUTDOWN_GRACE" envDefault:"25s"`
	DrainDelay        time.Duration `env:"DRAIN_DELAY" envDefault:"5s"`
	LogLevel          LogLevel      `env:"LOG_LEVEL" envDefault:"info"`
	Pprof             bool          `env:"PPROF" envDefault:"false"`

	// Guard policy.
	Mode                Mode          `env:"MODE" envDefault:"enforce"`
	FailureMode         FailureMode   `env:"FAILURE_MODE" envDefault:"closed"`
	MaxBodyBytes        int64         `env:"MAX_BODY_BYTES" envDefault:"1048576"`
	BodyBudgetBytes     int64         `env:"BODY_BUDGET_BYTES" envDefault:"67108864"` // all guarded bodies held at once; >= MaxBodyBytes
	BodyReadTimeout     time.Duration `env:"BODY_READ_TIMEOUT" envDefault:"15s"`
	PendingAction       PendingAction `env:"PENDING_ACTION" envDefault:"replay"`
	PendingMaxTTL       time.Duration `env:"PENDING_MAX_TTL" envDefault:"15m"`
	AllowMultiple       AllowMultiple `env:"ALLOW_MULTIPLE" envDefault:"flag"`
	MultipleAuthConfigs []string      `env:"MULTIPLE_AUTH_CONFIGS" envSeparator:","`
	RetryAfter          time.Duration `env:"RETRY_AFTER" envDefault:"1s"`

	// The guard's connected-account lookup.
	LookupTimeout          time.Duration `env:"LOOKUP_TIMEOUT" envDefault:"5s"`
	LookupPageLimit        int           `env:"LOOKUP_PAGE_LIMIT" envDefault:"100"`
	LookupMaxPages         int           `env:"LOOKUP_MAX_PAGES" envDefault:"10"`
	LookupBreakerThreshold int           `env:"LOOKUP_BREAKER_THRESHOLD" envDefault:"5"`
	LookupBreakerCooldown  time.Duration `env:"LOOKUP_BREAKER_COOLDOWN" envDefault:"10s"`

	// Per-key lock and pending-link leases.
	LockBackend    LockBackend   `env:"LOCK_BACKEND" envDefault:"memory"`
	LockWait       time.Duration `env:"LOCK_WAIT" envDefault:"0s"` // 0: GuardBudget()
	RedisURL       string        `env:"REDIS_URL"`
	RedisKeyPrefix string        `env:"REDIS_KEY_PREFIX" envDefault:"composio-guard:"`
	RedisTimeout   time.Duration `env:"REDIS_TIMEOUT" envDefault:"500ms"`

	// Transport to Composio.
	UpstreamDialTimeout           time.Duration `env:"UPSTREAM_DIAL_TIMEOUT" envDefault:"5s"`
	UpstreamTLSHandshakeTimeout   time.Duration `env:"UPSTREAM_TLS_HANDSHAKE_TIMEOUT" envDefault:"5s"`
	UpstreamResponseHeaderTimeout time.Duration `env:"UPSTREAM_RESPONSE_HEADER_TIMEOUT" envDefault:"60s"`
	UpstreamIdleConnTimeout       time.Duration `env:"UPSTREAM_IDLE_CONN_TIMEOUT" envDefault:"90s"`
	UpstreamMaxIdleConnsPerHost   int           `env:"UPSTREAM_MAX_IDLE_CONNS_PER_HOST" envDefault:"256"`

	// Tool Router sandbox tier policy; empty means no restriction.
	SandboxMaxSize      SandboxSize   `env:"SANDBOX_MAX_SIZE"`
	SandboxAllowedSizes []SandboxSize `env:"SANDBOX_ALLOWED_SIZES" envSeparator:","`
	SandboxDefaultSize  SandboxSize   `env:"SANDBOX_DEFAULT_SIZE"`

	// What LoadFrom changed so that the settings given fit together (see
	// fitBodyBudget); Notes reports it.
	notes []string
}

// Load reads the process environment, then validates.
func Load() (Config, error) { return LoadFrom(nil) }

// LoadFrom reads the given variables instead of the process environment
// (nil means the process environment), then validates. Parse and validation
// errors come back together, joined.
func LoadFrom(environ map[string]string) (Config, error) {
	var c Config
	opts := env.Options{Prefix: Prefix}
	if environ != nil {
		opts.Environment = environ
	}
	var errs []error
	if err := env.ParseWithOptions(&c, opts); err != nil {
		errs = append(errs, parseErrors(err)...)
	}
	c.normalize()
	c.fitBodyBudget(func(name string) bool { return isSet(environ, name) })
	if err := c.Validate(); err != nil {
		// A variable that failed to parse holds its zero value: do not
		// report it a second time as out of range.
		for _, e := range unjoin(err) {
			if !mentionedFirst(errs, e) {
				errs = append(errs, e)
			}
		}
	}
	return c, errors.Join(errs...)
}

// isSet reports whether the variable name (without the prefix) is given.
func isSet(environ map[string]string, name string) bool {
	if environ == nil {
		_, ok := os.LookupEnv(Prefix + name)
		return ok
	}
	_, ok := environ[Prefix+name]
	return ok
}

// fitBodyBudget makes a default give way to the one of GUARD_MAX_BODY_BYTES
// and GUARD_BODY_BUDGET_BYTES that was set: the budget must hold one body of
// the largest size allowed, and a default must never make the only setting
// given invalid. When both are set and contradict, Validate refuses them.
func (c *Config) fitBodyBudget(set func(name string) bool) {
	if c.MaxBodyBytes <= 0 || c.BodyBudgetBytes <= 0 || c.BodyBudgetBytes >= c.MaxBodyBytes {
		return
	}
	switch maxSet, budgetSet := set("MAX_BODY_BYTES"), set("BODY_BUDGET_BYTES"); {
	case maxSet && !budgetSet:
		c.notes = append(c.notes, fmt.Sprintf("%sBODY_BUDGET_BYTES raised from its default %d to %sMAX_BODY_BYTES (%d), so that a body of the largest size allowed fits",
			Prefix, c.BodyBudgetBytes, Prefix, c.MaxBodyBytes))
		c.BodyBudgetBytes = c.MaxBodyBytes
	case budgetSet && !maxSet:
		c.notes = append(c.notes, fmt.Sprintf("%sMAX_BODY_BYTES lowered from its default %d to %sBODY_BUDGET_BYTES (%d), so that a body of the largest size allowed fits",
			Prefix, c.MaxBodyBytes, Prefix, c.BodyBudgetBytes))
		c.MaxBodyBytes = c.BodyBudgetBytes
	}
}

// Notes lists, one sentence each, the settings LoadFrom changed to make the
// ones given fit together; the proxy logs them at start-up.
func (c Config) Notes() []string { return c.notes }

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// mentionedFirst reports whether e concerns a variable already in errs.
func mentionedFirst(errs []error, e error) bool {
	name, _, _ := strings.Cut(e.Error(), ":")
	for _, p := range errs {
		if n, _, _ := strings.Cut(p.Error(), ":"); n == name {
			return true
		}
	}
	return false
}

// parseErrors names each parse failure by its variable, not its Go field.
func parseErrors(err error) []error {
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return []error{fmt.Errorf("config: %w", err)}
	}
	out := make([]error, 0, len(agg.Errors))
	for _, e := range agg.Errors {
		var pe env.ParseError
		if errors.As(e, &pe) {
			out = append(out, fmt.Errorf("%s: cannot parse: %w", varName(pe.Name), pe.Err))
			continue
		}
		out = append(out, fmt.Errorf("config: %w", e))
	}
	return out
}

// varName maps a Config field name to its environment variable.
func varName(field string) string {
	if f, ok := reflect.TypeFor[Config]().FieldByName(field); ok {
		if k := f.Tag.Get("env"); k != "" {
			return Prefix + k
		}
	}
	return field
}

// normalize trims list members and lower-cases enums, so "Enforce" and
// "a, b," read as meant. Auth config ids keep their case.
func (c *Config) normalize() {
	low := func(s string) string { return strings.ToLower(strings.TrimSpace(s)) }
	c.Mode = Mode(low(string(c.Mode)))
	c.FailureMode = FailureMode(low(string(c.FailureMode)))
	c.PendingAction = PendingAction(low(string(c.PendingAction)))
	c.AllowMultiple = AllowMultiple(low(string(c.AllowMultiple)))
	c.LockBackend = LockBackend(low(string(c.LockBackend)))
	c.LogLevel = LogLevel(low(string(c.LogLevel)))
	c.SandboxMaxSize = SandboxSize(low(string(c.SandboxMaxSize)))
	c.SandboxDefaultSize = SandboxSize(low(string(c.SandboxDefaultSize)))
	c.UpstreamURL = strings.TrimSpace(c.UpstreamURL)
	c.RedisURL = strings.TrimSpace(c.RedisURL)

	ids := c.MultipleAuthConfigs[:0]
	for _, id := range c.MultipleAuthConfigs {
		if id = strings.TrimSpace(id); id != "" {
			ids = append(ids, id)
		}
	}
	c.MultipleAuthConfigs = ids
	sizes := c.SandboxAllowedSizes[:0]
	for _, s := range c.SandboxAllowedSizes {
		if s = SandboxSize(low(string(s))); s != "" {
			sizes = append(sizes, s)
		}
	}
	c.SandboxAllowedSizes = sizes
}

// Validate checks every setting and reports every problem at once.
func (c Config) Validate() error {
	var errs []error
	bad := func(name, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s%s: %s", Prefix, name, fmt.Sprintf(format, a...)))
	}
	oneOf := func(name, got string, allowed ...string) {
		for _, a := range allowed {
			if got == a {
				return
			}
		}
		bad(name, "%q is not one of %s", got, strings.Join(allowed, "|"))
	}
	positive := func(name string, d time.Duration) {
		if d <= 0 {
			bad(name, "must be a positive duration, got %s", d)
		}
	}

	if err := checkUpstreamURL(c.UpstreamURL); err != nil {
		bad("UPSTREAM_URL", "%v", err)
	}
	lerr := checkAddr(c.ListenAddr)
	if lerr != nil {
		bad("LISTEN_ADDR", "%v", lerr)
	}
	aerr := checkAddr(c.AdminAddr)
	if aerr != nil {
		bad("ADMIN_ADDR", "%v", aerr)
	}
	if lerr == nil && aerr == nil && sameListener(c.ListenAddr, c.AdminAddr) {
		bad("ADMIN_ADDR", "must differ from GUARD_LISTEN_ADDR (%s): admin paths are never served on the proxy port", c.ListenAddr)
	}
	positive("READ_HEADER_TIMEOUT", c.ReadHeaderTimeout)
	positive("IDLE_TIMEOUT", c.IdleTimeout)
	if c.MaxHeaderBytes < 4096 {
		bad("MAX_HEADER_BYTES", "must be at least 4096, got %d", c.MaxHeaderBytes)
	}
	positive("SHUTDOWN_GRACE", c.ShutdownGrace)
	if c.DrainDelay < 0 {
		bad("DRAIN_DELAY", "must not be negative, got %s", c.DrainDelay)
	} else if c.ShutdownGrace > 0 && c.DrainDelay >= c.ShutdownGrace {
		bad("DRAIN_DELAY", "(%s) must be shorter than GUARD_SHUTDOWN_GRACE (%s), or in-flight requests get no time to finish", c.DrainDelay, c.ShutdownGrace)
	}
	oneOf("LOG_LEVEL", string(c.LogLevel), "debug", "info", "warn", "error")

	oneOf("MODE", string(c.Mode), "enforce", "shadow", "off")
	oneOf("FAILURE_MODE", string(c.FailureMode), "closed", "open")
	if c.MaxBodyBytes <= 0 {
		bad("MAX_BODY_BYTES", "must be positive, got %d", c.MaxBodyBytes)
	}
	if c.BodyBudgetBytes <= 0 {
		bad("BODY_BUDGET_BYTES", "must be positive, got %d", c.BodyBudgetBytes)
	} else if c.MaxBodyBytes > 0 && c.BodyBudgetBytes < c.MaxBodyBytes {
		bad("BODY_BUDGET_BYTES", "(%d) must be at least GUARD_MAX_BODY_BYTES (%d): the budget must hold one body of the largest size allowed", c.BodyBudgetBytes, c.MaxBodyBytes)
	}
	positive("BODY_READ_TIMEOUT", c.BodyReadTimeout)
	oneOf("PENDING_ACTION", string(c.PendingAction), "replay", "reject", "off")
	positive("PENDING_MAX_TTL", c.PendingMaxTTL)
	oneOf("ALLOW_MULTIPLE", string(c.AllowMultiple), "flag", "never")
	for _, id := range c.MultipleAuthConfigs {
		if strings.ContainsAny(id, " \t\r\n") {
			bad("MULTIPLE_AUTH_CONFIGS", "auth config id %q contains white space", id)
		}
	}
	positive("RETRY_AFTER", c.RetryAfter)

	positive("LOOKUP_TIMEOUT", c.LookupTimeout)
	if c.LookupPageLimit < 1 || c.LookupPageLimit > 1000 {
		bad("LOOKUP_PAGE_LIMIT", "must be between 1 and 1000, got %d", c.LookupPageLimit)
	}
	if c.LookupMaxPages < 1 || c.LookupMaxPages > 1000 {
		bad("LOOKUP_MAX_PAGES", "must be between 1 and 1000, got %d", c.LookupMaxPages)
	}
	if c.LookupBreakerThreshold < 0 {
		bad("LOOKUP_BREAKER_THRESHOLD", "must be 0 (breaker off) or more, got %d", c.LookupBreakerThreshold)
	}
	positive("LOOKUP_BREAKER_COOLDOWN", c.LookupBreakerCooldown)

	oneOf("LOCK_BACKEND", string(c.LockBackend), "memory", "redis")
	if c.LockWait < 0 {
		bad("LOCK_WAIT", "must not be negative (0 means the default), got %s", c.LockWait)
	}
	if c.LockBackend == LockRedis {
		if c.RedisURL == "" {
			bad("REDIS_URL", "is required when GUARD_LOCK_BACKEND=redis")
		} else if err := checkRedisURL(c.RedisURL); err != nil {
			bad("REDIS_URL", "%v", err)
		}
	} else if c.RedisURL != "" {
		if err := checkRedisURL(c.RedisURL); err != nil {
			bad("REDIS_URL", "%v", err)
		}
	}
	positive("REDIS_TIMEOUT", c.RedisTimeout)

	positive("UPSTREAM_DIAL_TIMEOUT", c.UpstreamDialTimeout)
	positive("UPSTREAM_TLS_HANDSHAKE_TIMEOUT", c.UpstreamTLSHandshakeTimeout)
	positive("UPSTREAM_RESPONSE_HEADER_TIMEOUT", c.UpstreamResponseHeaderTimeout)
	positive("UPSTREAM_IDLE_CONN_TIMEOUT", c.UpstreamIdleConnTimeout)
	if c.UpstreamMaxIdleConnsPerHost < 1 {
		bad("UPSTREAM_MAX_IDLE_CONNS_PER_HOST", "must be at least 1, got %d", c.UpstreamMaxIdleConnsPerHost)
	}

	sizes := "standard|medium|large|xlarge"
	if c.SandboxMaxSize != "" && !c.SandboxMaxSize.Valid() {
		bad("SANDBOX_MAX_SIZE", "%q is not one of %s", c.SandboxMaxSize, sizes)
	}
	allowedOK := true
	for _, s := range c.SandboxAllowedSizes {
		if !s.Valid() {
			bad("SANDBOX_ALLOWED_SIZES", "%q is not one of %s", s, sizes)
			allowedOK = false
		}
	}
	policyOK := allowedOK && (c.SandboxMaxSize == "" || c.SandboxMaxSize.Valid())
	if policyOK && len(c.SandboxAllowed()) == 0 {
		bad("SANDBOX_ALLOWED_SIZES", "together with GUARD_SANDBOX_MAX_SIZE=%s it allows no tier at all", c.SandboxMaxSize)
		policyOK = false
	}
	if c.SandboxDefaultSize != "" {
		if !c.SandboxDefaultSize.Valid() {
			bad("SANDBOX_DEFAULT_SIZE", "%q is not one of %s", c.SandboxDefaultSize, sizes)
		} else if policyOK && !c.SandboxAllows(c.SandboxDefaultSize) {
			bad("SANDBOX_DEFAULT_SIZE", "%q is not allowed by the sandbox policy (allowed: %s)", c.SandboxDefaultSize, joinSizes(c.SandboxAllowed()))
		}
	}
	return errors.Join(errs...)
}

// checkUpstreamURL wants an absolute http(s) URL with a host and nothing a
// reverse proxy base cannot carry. Its error never echoes user info.
func checkUpstreamURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("not a valid URL")
	}
	var problems []string
	if u.Scheme != "http" && u.Scheme != "https" {
		problems = append(problems, "scheme must be http or https")
	}
	if u.Host == "" {
		problems = append(problems, "a host is required")
	}
	if u.User != nil {
		problems = append(problems, "must not carry user info (credentials come from each caller)")
	}
	if u.RawQuery != "" || u.ForceQuery {
		problems = append(problems, "must not carry a query")
	}
	if u.Fragment != "" {
		problems = append(problems, "must not carry a fragment")
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// checkRedisURL accepts redis:// and rediss:// URLs that go-redis can use.
// url.Parse's own error quotes the URL (and its password): never wrap it.
func checkRedisURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("not a valid URL")
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return errors.New("scheme must be redis:// or rediss:// (TLS)")
	}
	if u.Host == "" {
		return errors.New("a host is required")
	}
	if _, err := redis.ParseURL(raw); err != nil {
		// After url.Parse succeeded, go-redis errors name only the scheme,
		// path, database or option names, never the password.
		return fmt.Errorf("rejected by the Redis client: %w", err)
	}
	return nil
}

func checkAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("want host:port, e.g. :8080 or 127.0.0.1:8080: %w", err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	return nil
}

// sameListener reports whether two valid addresses would collide. Port 0 is
// a fresh ephemeral port each time, so it never collides.
func sameListener(a, b string) bool {
	ha, pa, _ := net.SplitHostPort(a)
	hb, pb, _ := net.SplitHostPort(b)
	if pa != pb || pa == "0" {
		return false
	}
	wild := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	return ha == hb || wild(ha) || wild(hb)
}

// GuardBudget bounds the work done under a guard lock: the lookup, then the
// forwarded create until its response headers arrive.
func (c Config) GuardBudget() time.Duration {
	return c.LookupTimeout + c.UpstreamResponseHeaderTimeout
}

// lockTTLMargin keeps a self-expiring (Redis) lock alive a little past the
// guarded work's own deadline, so it never lapses while legitimately held.
const lockTTLMargin = 5 * time.Second

// LockTTL is how long a self-expiring lock may live. It is always longer
// than GuardBudget (plus two Redis round trips for take and release), so the
// guarded work, run under a context ending at GuardBudget, ends first.
func (c Config) LockTTL() time.Duration {
	return c.GuardBudget() + 2*c.RedisTimeout + lockTTLMargin
}

// EffectiveLockWait is how long a guarded request waits for the per-key
// lock: GUARD_LOCK_WAIT, or GuardBudget when unset (the longest a holder can
// legitimately keep it).
func (c Config) EffectiveLockWait() time.Duration {
	if c.LockWait > 0 {
		return c.LockWait
	}
	return c.GuardBudget()
}

// RetryAfterSeconds is the Retry-After value of the proxy's 503s: whole
// seconds, rounded up, at least 1.
func (c Config) RetryAfterSeconds() int {
	s := int((c.RetryAfter + time.Second - 1) / time.Second)
	return max(s, 1)
}

// UpstreamBase returns the parsed upstream URL; nil only when Validate fails.
func (c Config) UpstreamBase() *url.URL {
	u, err := url.Parse(c.UpstreamURL)
	if err != nil {
		return nil
	}
	return u
}

// MultipleAllowedFor reports whether authConfigID is listed in
// GUARD_MULTIPLE_AUTH_CONFIGS (several accounts per user always allowed).
func (c Config) MultipleAllowedFor(authConfigID string) bool {
	for _, id := range c.MultipleAuthConfigs {
		if id == authConfigID {
			return true
		}
	}
	return false
}

// SandboxPolicy reports whether any sandbox tier restriction is set.
func (c Config) SandboxPolicy() bool {
	return c.SandboxMaxSize != "" || len(c.SandboxAllowedSizes) > 0
}

// SandboxAllows reports whether tier s passes the policy: within the ceiling
// and in the allowed set, each when set.
func (c Config) SandboxAllows(s SandboxSize) bool {
	if !s.Valid() {
		return false
	}
	if c.SandboxMaxSize != "" && s.Rank() > c.SandboxMaxSize.Rank() {
		return false
	}
	if len(c.SandboxAllowedSizes) == 0 {
		return true
	}
	for _, a := range c.SandboxAllowedSizes {
		if a == s {
			return true
		}
	}
	return false
}

// SandboxAllowed lists the tiers the policy allows, smallest first (all four
// when there is no policy).
func (c Config) SandboxAllowed() []SandboxSize {
	out := make([]SandboxSize, 0, len(SandboxSizes))
	for _, s := range SandboxSizes {
		if c.SandboxAllows(s) {
			out = append(out, s)
		}
	}
	return out
}

func joinSizes(s []SandboxSize) string {
	parts := make([]string, len(s))
	for i, v := range s {
		parts[i] = string(v)
	}
	return strings.Join(parts, ",")
}

// String renders every setting as GUARD_NAME=value pairs, in declaration
// order, with secrets masked: safe to log at start-up.
func (c Config) String() string {
	var b strings.Builder
	v := reflect.ValueOf(c)
	t := v.Type()
	for i := range t.NumField() {
		key := t.Field(i).Tag.Get("env")
		if key == "" || key == "-" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(Prefix + key)
		b.WriteByte('=')
		f := v.Field(i)
		switch key {
		case "REDIS_URL":
			b.WriteString(RedactURL(c.RedisURL))
		case "UPSTREAM_URL":
			b.WriteString(RedactURL(c.UpstreamURL))
		default:
			b.WriteString(render(f))
		}
	}
	return b.String()
}

// RedactURL masks the user info of a URL ("redis://user:xxxxx@host"). A
// user name without password is masked too (some write the password
// there), and an unparseable URL is masked whole.
func RedactURL(raw string) string {
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "xxxxx"
	}
	if u.User != nil {
		if _, hasPass := u.User.Password(); hasPass {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		} else {
			u.User = url.User("xxxxx")
		}
	}
	return u.String()
}

func render(f reflect.Value) string {
	switch x := f.Interface().(type) {
	case time.Duration:
		return x.String()
	case []string:
		return strings.Join(x, ",")
	case []SandboxSize:
		return joinSizes(x)
	}
	return fmt.Sprint(f.Interface())
}

// UnknownKeys returns the GUARD_* names in environ ("KEY=value" pairs, as
// from os.Environ) that no setting reads: most likely typos, worth a warning.
func UnknownKeys(environ []string) []string {
	known := map[string]bool{}
	t := reflect.TypeFor[Config]()
	for i := range t.NumField() {
		if k := t.Field(i).Tag.Get("env"); k != "" {
			known[Prefix+k] = true
		}
	}
	var out []string
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, Prefix) && !known[k] {
			out = append(out, k)
		}
	}
	return out
}
