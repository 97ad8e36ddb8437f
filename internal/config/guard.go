package config

import "github.com/composio-guard/composio-guard/internal/intercept"

// GuardSettings are the guard's own settings, owned by internal/intercept
// (their env tags, defaults and validation live there); these names keep
// config's readers short.
type GuardSettings = intercept.Config

// Enums of the guard's settings.
type (
	Mode          = intercept.Mode
	FailureMode   = intercept.FailureMode
	PendingAction = intercept.PendingAction
	AllowMultiple = intercept.AllowMultiple
	SandboxSize   = intercept.SandboxSize
)

// Their values.
const (
	ModeEnforce        = intercept.ModeEnforce
	ModeShadow         = intercept.ModeShadow
	ModeOff            = intercept.ModeOff
	FailureClosed      = intercept.FailClosed
	FailureOpen        = intercept.FailOpen
	PendingReplay      = intercept.PendingReplay
	PendingReject      = intercept.PendingReject
	PendingOff         = intercept.PendingOff
	AllowMultipleFlag  = intercept.AllowMultipleFlag
	AllowMultipleNever = intercept.AllowMultipleNever
)

// The sandbox tiers.
const (
	SandboxStandard = intercept.SandboxStandard
	SandboxMedium   = intercept.SandboxMedium
	SandboxLarge    = intercept.SandboxLarge
	SandboxXLarge   = intercept.SandboxXLarge
)

// SandboxSizes lists every tier, smallest first.
var SandboxSizes = intercept.SandboxSizes
