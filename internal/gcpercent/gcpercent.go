// Package gcpercent applies an instance's garbage collector settings
// (pipeline.gc_percent, pipeline.memory_limit_bytes) to its process.
package gcpercent

import (
	"math"
	"os"
	"runtime/debug"
	"runtime/metrics"
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
		return Current(), FromEnv
	}
	if pct == 0 {
		return Current(), FromRuntime
	}
	debug.SetGCPercent(pct)
	return pct, FromConfig
}

// Current returns the process's percentage in force (-1: off), read from
// the runtime's metrics without changing it.
func Current() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	if v := s[0].Value.Uint64(); v <= math.MaxInt32 {
		return int(v)
	}
	return -1
}

// String formats a percentage as GOGC writes it.
func String(pct int) string {
	if pct < 0 {
		return "off"
	}
	return strconv.Itoa(pct)
}
