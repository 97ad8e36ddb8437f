package config

import (
	"strings"
	"time"

	"github.com/composio-guard/composio-guard/internal/settings"
)

// GuardSettings are the guard's policy (GUARD_*; the envDefault tags are the
// defaults). They stay here, in one struct, until internal/intercept owns
// them; the assembly (internal/app) maps them into intercept.Config.
type GuardSettings struct {
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

	// Tool Router sandbox tier policy; empty means no restriction.
	SandboxMaxSize      SandboxSize   `env:"SANDBOX_MAX_SIZE"`
	SandboxAllowedSizes []SandboxSize `env:"SANDBOX_ALLOWED_SIZES" envSeparator:","`
	SandboxDefaultSize  SandboxSize   `env:"SANDBOX_DEFAULT_SIZE"`
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

// normalize trims the auth config ids and drops empty ones ("a, b," reads
// as meant); the ids keep their case.
func (g *GuardSettings) normalize() {
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
func (g GuardSettings) Validate() error {
	var p settings.Problems
	settings.OneOf(&p, "MODE", g.Mode, ModeEnforce, ModeShadow, ModeOff)
	settings.OneOf(&p, "FAILURE_MODE", g.FailureMode, FailureClosed, FailureOpen)
	if g.MaxBodyBytes <= 0 {
		p.Add("MAX_BODY_BYTES", "must be positive, got %d", g.MaxBodyBytes)
	}
	if g.BodyBudgetBytes <= 0 {
		p.Add("BODY_BUDGET_BYTES", "must be positive, got %d", g.BodyBudgetBytes)
	} else if g.MaxBodyBytes > 0 && g.BodyBudgetBytes < g.MaxBodyBytes {
		p.Add("BODY_BUDGET_BYTES", "(%d) must be at least %sMAX_BODY_BYTES (%d): the budget must hold one body of the largest size allowed", g.BodyBudgetBytes, Prefix, g.MaxBodyBytes)
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
	g.validateSandbox(&p)
	return p.Err()
}

// RetryAfterSeconds is the Retry-After value of the proxy's 503s: whole
// seconds, rounded up, at least 1.
func (g GuardSettings) RetryAfterSeconds() int {
	s := int((g.RetryAfter + time.Second - 1) / time.Second)
	return max(s, 1)
}

// MultipleAllowedFor reports whether authConfigID is listed in
// GUARD_MULTIPLE_AUTH_CONFIGS (several accounts per user always allowed).
func (g GuardSettings) MultipleAllowedFor(authConfigID string) bool {
	for _, id := range g.MultipleAuthConfigs {
		if id == authConfigID {
			return true
		}
	}
	return false
}
