package intercept

import "github.com/composio-guard/composio-guard/internal/settings"

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

// UnmarshalText reads a tier case- and space-insensitively; Validate
// refuses an unknown one.
func (s *SandboxSize) UnmarshalText(b []byte) error {
	*s = SandboxSize(settings.Fold(b))
	return nil
}

// SandboxRules are the tier policy: a ceiling and an allowed set, each
// empty for no restriction.
type SandboxRules struct {
	Max     SandboxSize
	Allowed []SandboxSize
}

// Active reports whether the rules restrict anything.
func (p SandboxRules) Active() bool { return p.Max != "" || len(p.Allowed) > 0 }

// Allows reports whether tier s passes: within the ceiling and in the
// allowed set, each when set.
func (p SandboxRules) Allows(s SandboxSize) bool {
	if !s.Valid() {
		return false
	}
	if p.Max != "" && s.Rank() > p.Max.Rank() {
		return false
	}
	if len(p.Allowed) == 0 {
		return true
	}
	for _, a := range p.Allowed {
		if a == s {
			return true
		}
	}
	return false
}

// AllowedSizes lists the tiers the rules allow, smallest first (all four
// when there are none).
func (p SandboxRules) AllowedSizes() []SandboxSize {
	out := make([]SandboxSize, 0, len(SandboxSizes))
	for _, s := range SandboxSizes {
		if p.Allows(s) {
			out = append(out, s)
		}
	}
	return out
}
