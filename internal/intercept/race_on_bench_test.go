//go:build race

package intercept

// raceDetector: the race detector adds allocations; budgets are asserted
// without it.
const raceDetector = true
