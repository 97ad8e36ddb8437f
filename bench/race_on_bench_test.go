//go:build race

package bench

// The race detector adds allocations; budgets are asserted without it.
const raceEnabled = true
