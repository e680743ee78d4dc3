//go:build race

package agreements

// raceEnabled reports whether the tests run with the race detector.
const raceEnabled = true
