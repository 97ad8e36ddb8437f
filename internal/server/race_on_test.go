//go:build race

package server

// The race detector adds allocations; budgets are asserted without it.
const raceEnabled = true
