package intercept

import (
	"strings"
	"time"

	"github.com/composio-guard/composio-guard/internal/lock"
	"github.com/composio-guard/composio-guard/internal/settings"
	"github.com/composio-guard/composio-guard/internal/upstream"
)

// Config is the guard's settings (GUARD_*; the envDefault tags are the one
// source of defaults: DefaultConfig), plus the timing the assembly derives
// from the lookup, upstream and lock settings (see Timing).
type Config struct {
	// `enforce`: act on decisions. `shadow`: decide, log and count, but
	// forward everything. `off`: pure pass-through, with no lookup and no
	// policy.
	Mode Mode `env:"MODE" envDefault:"enforce"`
	// What happens when the guard cannot decide (lookup failing, lock
	// backend down). `closed`: `503` with `Retry-After`, nothing forwarded.
	// `open`: forward, count it, and log it at WARN. A check the caller's
	// own input makes impossible is refused with `422` in both.
	FailureMode FailureMode `env:"FAILURE_MODE" envDefault:"closed"`
	// Limit on the body of a guarded request, on the wire and after
	// decompression; larger bodies get `413`. Pass-through bodies stream
	// and are not limited.
	MaxBodyBytes int64 `env:"MAX_BODY_BYTES" envDefault:"1048576"`
	// Limit on the guarded bodies held in memory at once, all requests
	// together. A body's buffer grows with the bytes that arrive and is
	// reserved from this budget as it grows. A body the budget cannot cover
	// gets `503` `ComposioGuard_ProxyBusy` with `Retry-After`; a request
	// alone is never refused. At least `GUARD_MAX_BODY_BYTES`: when only one
	// of the two is set, the other's default gives way.
	BodyBudgetBytes int64 `env:"BODY_BUDGET_BYTES" envDefault:"67108864"`
	// Time allowed to receive the whole body of a guarded request once its
	// headers are in; a client that dribbles its body gets `408` and the
	// connection is closed. Pass-through bodies have no such bound.
	BodyReadTimeout time.Duration `env:"BODY_READ_TIMEOUT" envDefault:"15s"`
	// A repeated link while the first link's account is still `INITIATED`:
	// `replay` sends back the first answer (`X-Composio-Guard: replayed`),
	// `reject` answers `409` `ConnectedAccount_LinkPending`, `off` forwards
	// it.
	PendingAction PendingAction `env:"PENDING_ACTION" envDefault:"replay"`
	// Upper limit on how long a pending-link lease is kept (else until the
	// link's `expires_at`), and the lifetime of an `INITIATED` account the
	// proxy holds no lease for: it blocks new links until its `created_at`
	// plus this.
	PendingMaxTTL time.Duration `env:"PENDING_MAX_TTL" envDefault:"15m"`
	// `flag`: honour the opt-in (`X-Composio-Allow-Multiple: true`,
	// `?allow_multiple=true` or a body member `"allow_multiple": true`).
	// `never`: ignore it. Either way it is removed before the forward.
	AllowMultiple AllowMultiple `env:"ALLOW_MULTIPLE" envDefault:"flag"`
	// Comma-separated auth config ids on which a user may always hold
	// several accounts.
	MultipleAuthConfigs []string `env:"MULTIPLE_AUTH_CONFIGS" envSeparator:","`
	// `Retry-After` sent on the proxy's own `503`s, in whole seconds rounded
	// up (at least 1).
	RetryAfter time.Duration `env:"RETRY_AFTER" envDefault:"1s"`
	// How long a Tool Router session's config (whose accounts its links
	// create) is reused. `0`: read on every guarded session link, so a
	// `PATCH` made anywhere (another replica, the dashboard, Composio
	// directly) counts at once. A longer time saves one call to Composio
	// per session link, but a `PATCH` not made through this replica is seen
	// only when the time runs out, and a link in between is checked against
	// the old auth config: a duplicate can pass (docs/security.md).
	SessionCacheTTL time.Duration `env:"SESSION_CACHE_TTL" envDefault:"0s"`

	// Tool Router session policies (see sessionrules.go); off by default.

	// `deny` refuses (`403`) a session create or `PATCH` that turns
	// `multi_account.enable` on; `allow` lets it through.
	SessionMultiAccount SessionMultiAccount `env:"SESSION_MULTI_ACCOUNT" envDefault:"allow"`
	// Largest `max_accounts_per_toolkit` a session create or `PATCH` may ask
	// for (`403` above it; `multi_account.enable` without a maximum asks for
	// Composio's 5); `0` sets no limit.
	SessionMaxAccountsPerToolkit int `env:"SESSION_MAX_ACCOUNTS_PER_TOOLKIT" envDefault:"0"`
	// `disable` turns the in-session connection tool off: a session that
	// enables `manage_connections` is refused (`403`), and a create that
	// does not set it gets `"manage_connections":{"enable":false}` inserted.
	// `keep` leaves it alone.
	SessionManageConnections SessionManage `env:"SESSION_MANAGE_CONNECTIONS" envDefault:"keep"`

	// Tool Router sandbox tier policy; empty means no restriction.

	// The largest workbench tier a session may ask for
	// (`standard` < `medium` < `large` < `xlarge`); a larger one gets `403`.
	SandboxMaxSize SandboxSize `env:"SANDBOX_MAX_SIZE"`
	// Comma-separated tiers allowed. With `GUARD_SANDBOX_MAX_SIZE` too, both
	// must allow a tier, and they must allow at least one between them.
	SandboxAllowedSizes []SandboxSize `env:"SANDBOX_ALLOWED_SIZES" envSeparator:","`
	// Tier filled in on session create when the workbench is on and no size
	// was sent. The policy itself must allow it.
	SandboxDefaultSize SandboxSize `env:"SANDBOX_DEFAULT_SIZE"`

	// Not settings of their own: the assembly sets them from the lookup and
	// lock settings (Timing). Zero takes the defaults' timing.
	LookupTimeout time.Duration // bounds the whole lookup (all pages)
	LockWait      time.Duration // longest wait for the per-key lock
	LockTTL       time.Duration // > LookupTimeout + upstream timeout; a forward under a lock that lapses (Redis) ends before it
}

// DefaultConfig is Config as its envDefault tags set it, with the timing
// of the default lookup, upstream and lock settings: what the binary runs
// with when nothing is set.
func DefaultConfig() Config {
	c := settings.Defaults[Config]()
	c.LookupTimeout, c.LockWait, c.LockTTL = DefaultTiming()
	return c
}

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
	FailClosed FailureMode = "closed" // 503 with Retry-After, nothing forwarded
	FailOpen   FailureMode = "open"   // forward, count, log at WARN
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

// SessionMultiAccount says whether sessions may turn multi-account on.
type SessionMultiAccount string

// Session multi-account policies.
const (
	SessionAllow SessionMultiAccount = "allow"
	SessionDeny  SessionMultiAccount = "deny"
)

// SessionManage says whether sessions keep the in-session connection tool.
type SessionManage string

// Session manage-connections policies.
const (
	SessionManageKeep    SessionManage = "keep"
	SessionManageDisable SessionManage = "disable"
)

// UnmarshalText: see Mode.UnmarshalText.
func (a *SessionMultiAccount) UnmarshalText(b []byte) error {
	*a = SessionMultiAccount(settings.Fold(b))
	return nil
}

// UnmarshalText: see Mode.UnmarshalText.
func (a *SessionManage) UnmarshalText(b []byte) error {
	*a = SessionManage(settings.Fold(b))
	return nil
}

// UnmarshalText reads a mode case- and space-insensitively ("Enforce " is
// enforce); Validate refuses an unknown one. So do the other enums'.
func (m *Mode) UnmarshalText(b []byte) error {
	*m = Mode(settings.Fold(b))
	return nil
}

// UnmarshalText: see Mode.UnmarshalText.
func (m *FailureMode) UnmarshalText(b []byte) error {
	*m = FailureMode(settings.Fold(b))
	return nil
}

// UnmarshalText: see Mode.UnmarshalText.
func (a *PendingAction) UnmarshalText(b []byte) error {
	*a = PendingAction(settings.Fold(b))
	return nil
}

// UnmarshalText: see Mode.UnmarshalText.
func (a *AllowMultiple) UnmarshalText(b []byte) error {
	*a = AllowMultiple(settings.Fold(b))
	return nil
}

// Normalize trims the auth config ids and drops empty ones ("a, b," reads
// as meant); the ids keep their case.
func (g *Config) Normalize() {
	ids := g.MultipleAuthConfigs[:0]
	for _, id := range g.MultipleAuthConfigs {
		if id = strings.TrimSpace(id); id != "" {
			ids = append(ids, id)
		}
	}
	g.MultipleAuthConfigs = ids
	sizes := g.SandboxAllowedSizes[:0]
	for _, s := range g.SandboxAllowedSizes {
		if s != "" {
			sizes = append(sizes, s)
		}
	}
	g.SandboxAllowedSizes = sizes
}

// Validate reports every problem of g, one error per variable.
func (g Config) Validate() error {
	var p settings.Problems
	settings.OneOf(&p, "MODE", g.Mode, ModeEnforce, ModeShadow, ModeOff)
	settings.OneOf(&p, "FAILURE_MODE", g.FailureMode, FailClosed, FailOpen)
	if g.MaxBodyBytes <= 0 {
		p.Add("MAX_BODY_BYTES", "must be positive, got %d", g.MaxBodyBytes)
	}
	if g.BodyBudgetBytes <= 0 {
		p.Add("BODY_BUDGET_BYTES", "must be positive, got %d", g.BodyBudgetBytes)
	} else if g.MaxBodyBytes > 0 && g.BodyBudgetBytes < g.MaxBodyBytes {
		p.Add("BODY_BUDGET_BYTES", "(%d) must be at least %sMAX_BODY_BYTES (%d): the budget must hold one body of the largest size allowed", g.BodyBudgetBytes, settings.Prefix, g.MaxBodyBytes)
	}
	p.Positive("BODY_READ_TIMEOUT", g.BodyReadTimeout)
	settings.OneOf(&p, "PENDING_ACTION", g.PendingAction, PendingReplay, PendingReject, PendingOff)
	p.Positive("PENDING_MAX_TTL", g.PendingMaxTTL)
	settings.OneOf(&p, "ALLOW_MULTIPLE", g.AllowMultiple, AllowMultipleFlag, AllowMultipleNever)
	for _, id := range g.MultipleAuthConfigs {
		if strings.ContainsAny(id, " \t\r\n") {
			p.Add("MULTIPLE_AUTH_CONFIGS", "auth config id %q contains white space", id)
		}
	}
	p.Positive("RETRY_AFTER", g.RetryAfter)
	if g.SessionCacheTTL < 0 {
		p.Add("SESSION_CACHE_TTL", "must not be negative (0 reads the session on every link), got %s", g.SessionCacheTTL)
	}
	settings.OneOf(&p, "SESSION_MULTI_ACCOUNT", g.SessionMultiAccount, SessionAllow, SessionDeny)
	if g.SessionMaxAccountsPerToolkit < 0 || g.SessionMaxAccountsPerToolkit > 1000 {
		p.Add("SESSION_MAX_ACCOUNTS_PER_TOOLKIT", "must be 0 (no cap) to 1000, got %d", g.SessionMaxAccountsPerToolkit)
	}
	settings.OneOf(&p, "SESSION_MANAGE_CONNECTIONS", g.SessionManageConnections, SessionManageKeep, SessionManageDisable)
	g.validateSandbox(&p)
	return p.Err()
}

// RetryAfterSeconds is the Retry-After value of the proxy's 503s: whole
// seconds, rounded up, at least 1.
func (g Config) RetryAfterSeconds() int {
	s := int((g.RetryAfter + time.Second - 1) / time.Second)
	return max(s, 1)
}

// MultipleAllowedFor reports whether authConfigID is listed in
// GUARD_MULTIPLE_AUTH_CONFIGS (several accounts per user always allowed).
func (g Config) MultipleAllowedFor(authConfigID string) bool {
	for _, id := range g.MultipleAuthConfigs {
		if id == authConfigID {
			return true
		}
	}
	return false
}

// validateSandbox checks the sandbox tier policy.
func (g Config) validateSandbox(p *settings.Problems) {
	const sizes = "standard|medium|large|xlarge"
	if g.SandboxMaxSize != "" && !g.SandboxMaxSize.Valid() {
		p.Add("SANDBOX_MAX_SIZE", "%q is not one of %s", g.SandboxMaxSize, sizes)
	}
	allowedOK := true
	for _, s := range g.SandboxAllowedSizes {
		if !s.Valid() {
			p.Add("SANDBOX_ALLOWED_SIZES", "%q is not one of %s", s, sizes)
			allowedOK = false
		}
	}
	policyOK := allowedOK && (g.SandboxMaxSize == "" || g.SandboxMaxSize.Valid())
	if policyOK && len(g.SandboxRules().AllowedSizes()) == 0 {
		p.Add("SANDBOX_ALLOWED_SIZES", "together with %sSANDBOX_MAX_SIZE=%s it allows no tier at all", settings.Prefix, g.SandboxMaxSize)
		policyOK = false
	}
	if g.SandboxDefaultSize != "" {
		if !g.SandboxDefaultSize.Valid() {
			p.Add("SANDBOX_DEFAULT_SIZE", "%q is not one of %s", g.SandboxDefaultSize, sizes)
		} else if policyOK && !g.SandboxRules().Allows(g.SandboxDefaultSize) {
			p.Add("SANDBOX_DEFAULT_SIZE", "%q is not allowed by the sandbox policy (%s; allowed: %s)", g.SandboxDefaultSize, g.policyVars(), joinSizes(g.SandboxRules().AllowedSizes()))
		}
	}
}

// policyVars names the settings that make the sandbox policy, as given.
func (g Config) policyVars() string {
	var parts []string
	if g.SandboxMaxSize != "" {
		parts = append(parts, settings.Prefix+"SANDBOX_MAX_SIZE="+string(g.SandboxMaxSize))
	}
	if len(g.SandboxAllowedSizes) > 0 {
		parts = append(parts, settings.Prefix+"SANDBOX_ALLOWED_SIZES="+joinSizes(g.SandboxAllowedSizes))
	}
	return strings.Join(parts, ", ")
}

// SandboxRules is the tier policy the settings ask for.
func (g Config) SandboxRules() SandboxRules {
	return SandboxRules{Max: g.SandboxMaxSize, Allowed: g.SandboxAllowedSizes}
}

func joinSizes(s []SandboxSize) string {
	parts := make([]string, len(s))
	for i, v := range s {
		parts[i] = string(v)
	}
	return strings.Join(parts, ",")
}

// lockTTLMargin keeps a self-expiring (Redis) lock alive a little past the
// guarded work's own deadline, so it never lapses while legitimately held.
const lockTTLMargin = 5 * time.Second

// Timing derives the guard's timing from other packages' settings. The
// guarded work's budget is the lookup's timeout plus the upstream's response
// header timeout; the lock wait is lockWait (GUARD_LOCK_WAIT), or that
// budget when 0 (the longest a holder can legitimately keep the lock); a
// lock that lapses (Redis) lives the budget plus two calls to the backend
// plus a margin, so the work, bounded by the budget, always ends first.
func Timing(lookup, responseHeader, lockCall, lockWait time.Duration) (wait, ttl time.Duration) {
	budget := lookup + responseHeader
	if wait = lockWait; wait <= 0 {
		wait = budget
	}
	return wait, budget + 2*lockCall + lockTTLMargin
}

// DefaultTiming is the timing of the default lookup, upstream and lock
// settings.
func DefaultTiming() (lookup, wait, ttl time.Duration) {
	l, t, k := upstream.DefaultLookupSettings(), upstream.DefaultTransportSettings(), lock.DefaultSettings()
	wait, ttl = Timing(l.Timeout, t.ResponseHeaderTimeout, k.RedisTimeout, k.Wait)
	return l.Timeout, wait, ttl
}
