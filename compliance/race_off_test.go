//go:build !race

package compliance_test

// raceDetector is true when the tests run with the race detector.
const raceDetector = false
