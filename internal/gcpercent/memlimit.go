package gcpercent

import (
	"bytes"
	"math"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
)

// Where the memory limit in force comes from.
const (
	LimitFromConfig = "pipeline.memory_limit_bytes"
	LimitFromEnv    = "GOMEMLIMIT"
	LimitFromCgroup = "cgroup memory limit"
	LimitNone       = "none"
)

// cgroupShare is the share of the cgroup's memory limit the heap is held
// under when nothing else sets a limit: the rest is left to what the Go
// runtime does not count (thread stacks, the binary) and to the kernel.
const cgroupShare = 0.9

// ApplyMemoryLimit sets the Go runtime's soft memory limit, under which
// the collector runs more often instead of letting the heap grow: to
// limit bytes when it is above zero, else to 90 % of the memory limit of
// the process's cgroup (v2 or v1) when there is one, so that an instance
// in a container with a memory limit collects harder before the kernel
// kills it. A GOMEMLIMIT environment variable wins over both, as the Go
// runtime documents it. It returns the limit in force (math.MaxInt64:
// none) and where it comes from, for the instance's start-up line.
func ApplyMemoryLimit(limit int64) (int64, string) {
	n, from := memoryLimit(limit, os.LookupEnv, os.ReadFile)
	if from == LimitFromConfig || from == LimitFromCgroup {
		debug.SetMemoryLimit(n)
	}
	return n, from
}

// memoryLimit decides the limit ApplyMemoryLimit sets, without setting
// it: the one in force for GOMEMLIMIT and for none.
func memoryLimit(limit int64, lookup func(string) (string, bool), read func(string) ([]byte, error)) (int64, string) {
	if v, ok := lookup("GOMEMLIMIT"); ok && v != "" {
		// The runtime read it at start; reading the limit back reports
		// what it made of it.
		return debug.SetMemoryLimit(-1), LimitFromEnv
	}
	if limit > 0 {
		return limit, LimitFromConfig
	}
	if cg, ok := cgroupMemoryMax(read); ok {
		return int64(float64(cg) * cgroupShare), LimitFromCgroup
	}
	return math.MaxInt64, LimitNone
}

// cgroupMemoryMax reads the memory limit of the process's cgroup: the
// group /proc/self/cgroup names, cgroup v2 (memory.max) or v1
// (memory.limit_in_bytes of the memory controller), else the root of the
// cgroup file system as a container sees it. The first file that reads
// decides: "max", v1's page-rounded maximum (no limit) or an unreadable
// number give false.
func cgroupMemoryMax(read func(string) ([]byte, error)) (int64, bool) {
	var paths []string
	if b, err := read("/proc/self/cgroup"); err == nil {
		for line := range strings.Lines(string(b)) {
			// hierarchy-ID:controllers:path
			f := strings.SplitN(strings.TrimSpace(line), ":", 3)
			switch {
			case len(f) != 3 || f[2] == "/":
			case f[0] == "0" && f[1] == "":
				paths = append(paths, "/sys/fs/cgroup"+f[2]+"/memory.max")
			case slices.Contains(strings.Split(f[1], ","), "memory"):
				paths = append(paths, "/sys/fs/cgroup/memory"+f[2]+"/memory.limit_in_bytes")
			}
		}
	}
	paths = append(paths, "/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
	for _, p := range paths {
		b, err := read(p)
		if err != nil {
			continue
		}
		v, err := strconv.ParseInt(string(bytes.TrimSpace(b)), 10, 64)
		return v, err == nil && v > 0 && v < unlimitedV1
	}
	return 0, false
}

// unlimitedV1 is where cgroup v1 limits mean none: it writes the largest
// int64 rounded down to a page (9223372036854771712).
const unlimitedV1 = 1 << 62

// LimitString formats a memory limit for the start-up line.
func LimitString(n int64) string {
	if n == math.MaxInt64 {
		return "none"
	}
	return strconv.FormatInt(n>>20, 10) + " MiB"
}
