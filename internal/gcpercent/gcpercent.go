// Package gcpercent applies an instance's garbage collector setting
// (pipeline.gc_percent) to its process.
package gcpercent

import (
	"os"
	"runtime/debug"
	"strconv"
)

// Where the percentage in force comes from.
const (
	FromConfig  = "pipeline.gc_percent"
	FromEnv     = "GOGC"
	FromRuntime = "runtime default"
)

// Apply sets the process's garbage collector percentage to pct unless the
// GOGC environment variable is set, which wins, as the Go runtime
// documents it; pct 0 leaves the runtime's own setting. It returns the
// percentage in force (-1: collection off, as GOGC=off makes it) and where
// it comes from, for the instance's start-up line.
func Apply(pct int) (int, string) {
	return apply(pct, os.LookupEnv)
}

func apply(pct int, lookup func(string) (string, bool)) (int, string) {
	if v, ok := lookup("GOGC"); ok && v != "" {
		// The runtime read it at start; reading the percentage back
		// reports what it made of it.
		return current(), FromEnv
	}
	if pct == 0 {
		return current(), FromRuntime
	}
	debug.SetGCPercent(pct)
	return pct, FromConfig
}

// current returns the percentage in force without changing it.
func current() int {
	pct := debug.SetGCPercent(-1)
	debug.SetGCPercent(pct)
	return pct
}

// String formats a percentage as GOGC writes it.
func String(pct int) string {
	if pct < 0 {
		return "off"
	}
	return strconv.Itoa(pct)
}
