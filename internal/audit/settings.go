package audit

import (
	"time"

	"github.com/composio-guard/composio-guard/internal/settings"
)

// Settings configure the proxy's periodic audit (GUARD_AUDIT_*; the
// envDefault tags are the defaults). Off unless AuditInterval is set.
type Settings struct {
	// Time from the end of one audit to the start of the next, e.g. `1h`;
	// `0` turns the periodic audit off.
	AuditInterval time.Duration `env:"AUDIT_INTERVAL" envDefault:"0s"`
	// The audit's own credential: a project API key (sent as `x-api-key`)
	// of the project to audit, allowed to list connected accounts. Required
	// with `GUARD_AUDIT_INTERVAL`; masked in the printed configuration.
	AuditAPIKey string `env:"AUDIT_API_KEY"`
	// Most list calls per second the audit makes.
	AuditMaxRate float64 `env:"AUDIT_MAX_RATE" envDefault:"1"`
	// At or below this `X-RateLimit-Remaining`, the audit spreads its calls
	// over the rest of Composio's window, leaving the budget to request
	// traffic.
	AuditMinRemaining int `env:"AUDIT_MIN_REMAINING" envDefault:"200"`
	// Time limit for one audit; `0` means `GUARD_AUDIT_INTERVAL`.
	AuditTimeout time.Duration `env:"AUDIT_TIMEOUT" envDefault:"0s"`
	// Also count `INITIATED` accounts younger than `GUARD_PENDING_MAX_TTL`
	// (an ACTIVE and an INITIATED, or two INITIATED, make a duplicate), as
	// `audit --include-initiated` does.
	AuditIncludeInitiated bool `env:"AUDIT_INCLUDE_INITIATED" envDefault:"false"`
	// The API version listed: `/api/v3.1` (every account type) or
	// `/api/v3`.
	AuditAPIPrefix string `env:"AUDIT_API_PREFIX" envDefault:"/api/v3.1"`
}

// MinInterval is the shortest GUARD_AUDIT_INTERVAL accepted.
const MinInterval = time.Second

// DefaultSettings are Settings as their envDefault tags set them.
func DefaultSettings() Settings { return settings.Defaults[Settings]() }

// Enabled reports whether the periodic audit runs.
func (s Settings) Enabled() bool { return s.AuditInterval > 0 }

// Timeout is the bound of one audit.
func (s Settings) Timeout() time.Duration {
	if s.AuditTimeout > 0 {
		return s.AuditTimeout
	}
	return s.AuditInterval
}

// Validate reports every problem of s, one error per variable. Messages
// never hold the key.
func (s Settings) Validate() error {
	var p settings.Problems
	if s.AuditInterval < 0 || (s.AuditInterval > 0 && s.AuditInterval < MinInterval) {
		p.Add("AUDIT_INTERVAL", "must be 0 (off) or at least %s, got %s", MinInterval, s.AuditInterval)
	}
	if s.AuditInterval > 0 && s.AuditAPIKey == "" {
		p.Add("AUDIT_API_KEY", "is required when %sAUDIT_INTERVAL is set (the audit's own project key)", settings.Prefix)
	}
	if !(s.AuditMaxRate > 0 && s.AuditMaxRate <= 100) {
		p.Add("AUDIT_MAX_RATE", "must be more than 0 and at most 100 calls a second, got %g", s.AuditMaxRate)
	}
	if s.AuditMinRemaining < 0 {
		p.Add("AUDIT_MIN_REMAINING", "must not be negative, got %d", s.AuditMinRemaining)
	}
	if s.AuditTimeout < 0 {
		p.Add("AUDIT_TIMEOUT", "must not be negative (0 means the interval), got %s", s.AuditTimeout)
	}
	if s.AuditAPIPrefix != "/api/v3.1" && s.AuditAPIPrefix != "/api/v3" {
		p.Add("AUDIT_API_PREFIX", "must be /api/v3.1 or /api/v3, got %q", s.AuditAPIPrefix)
	}
	return p.Err()
}
