//go:build !race

package intercept

const raceDetector = false
