package config

import (
	"strings"

	"github.com/composio-guard/composio-guard/internal/settings"
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

// UnmarshalText reads a tier case- and space-insensitively; Validate
// refuses an unknown one.
func (s *SandboxSize) UnmarshalText(b []byte) error {
	*s = SandboxSize(settings.Fold(b))
	return nil
}

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

// validateSandbox checks the sandbox tier policy.
func (g GuardSettings) validateSandbox(p *settings.Problems) {
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
	if policyOK && len(g.SandboxAllowed()) == 0 {
		p.Add("SANDBOX_ALLOWED_SIZES", "together with %sSANDBOX_MAX_SIZE=%s it allows no tier at all", Prefix, g.SandboxMaxSize)
		policyOK = false
	}
	if g.SandboxDefaultSize != "" {
		if !g.SandboxDefaultSize.Valid() {
			p.Add("SANDBOX_DEFAULT_SIZE", "%q is not one of %s", g.SandboxDefaultSize, sizes)
		} else if policyOK && !g.SandboxAllows(g.SandboxDefaultSize) {
			p.Add("SANDBOX_DEFAULT_SIZE", "%q is not allowed by the sandbox policy (allowed: %s)", g.SandboxDefaultSize, joinSizes(g.SandboxAllowed()))
		}
	}
}

// SandboxPolicy reports whether any sandbox tier restriction is set.
func (g GuardSettings) SandboxPolicy() bool {
	return g.SandboxMaxSize != "" || len(g.SandboxAllowedSizes) > 0
}

// SandboxAllows reports whether tier s passes the policy: within the ceiling
// and in the allowed set, each when set.
func (g GuardSettings) SandboxAllows(s SandboxSize) bool {
	if !s.Valid() {
		return false
	}
	if g.SandboxMaxSize != "" && s.Rank() > g.SandboxMaxSize.Rank() {
		return false
	}
	if len(g.SandboxAllowedSizes) == 0 {
		return true
	}
	for _, a := range g.SandboxAllowedSizes {
		if a == s {
			return true
		}
	}
	return false
}

// SandboxAllowed lists the tiers the policy allows, smallest first (all four
// when there is no policy).
func (g GuardSettings) SandboxAllowed() []SandboxSize {
	out := make([]SandboxSize, 0, len(SandboxSizes))
	for _, s := range SandboxSizes {
		if g.SandboxAllows(s) {
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
