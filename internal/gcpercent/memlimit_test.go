package gcpercent

import (
	"errors"
	"io/fs"
	"math"
	"runtime/debug"
	"testing"
)

func TestMemoryLimit(t *testing.T) {
	orig := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(orig) })
	noEnv := func(string) (string, bool) { return "", false }
	env := func(v string) func(string) (string, bool) {
		return func(k string) (string, bool) { return v, k == "GOMEMLIMIT" }
	}
	// files returns a reader of the given files; any other is missing.
	files := func(m map[string]string) func(string) ([]byte, error) {
		return func(p string) ([]byte, error) {
			if v, ok := m[p]; ok {
				return []byte(v), nil
			}
			return nil, fs.ErrNotExist
		}
	}
	const gib = 1 << 30
	nested := map[string]string{
		"/proc/self/cgroup": "0::/system.slice/clearance.service\n",
		"/sys/fs/cgroup/system.slice/clearance.service/memory.max": "1073741824\n",
		"/sys/fs/cgroup/memory.max":                                "max\n",
	}
	for _, tc := range []struct {
		name     string
		limit    int64
		lookup   func(string) (string, bool)
		read     func(string) ([]byte, error)
		want     int64
		wantFrom string
	}{
		{"configured", 512 << 20, noEnv, files(nested), 512 << 20, LimitFromConfig},
		{"the process's cgroup", 0, noEnv, files(nested), gib * 9 / 10, LimitFromCgroup},
		{"a container's root cgroup", 0, noEnv, files(map[string]string{"/proc/self/cgroup": "0::/\n", "/sys/fs/cgroup/memory.max": "2147483648"}), 2 * gib * 9 / 10, LimitFromCgroup},
		{"no cgroup limit", 0, noEnv, files(map[string]string{"/proc/self/cgroup": "0::/\n", "/sys/fs/cgroup/memory.max": "max\n"}), math.MaxInt64, LimitNone},
		{"cgroup v1", 0, noEnv, files(map[string]string{"/proc/self/cgroup": "5:devices:/\n4:memory:/x\n0::/\n", "/sys/fs/cgroup/memory/x/memory.limit_in_bytes": "1073741824\n"}), gib * 9 / 10, LimitFromCgroup},
		{"cgroup v1 without a limit", 0, noEnv, files(map[string]string{"/proc/self/cgroup": "4:cpu,memory:/x\n", "/sys/fs/cgroup/memory/x/memory.limit_in_bytes": "9223372036854771712\n"}), math.MaxInt64, LimitNone},
		{"no cgroup files", 0, noEnv, files(map[string]string{"/proc/self/cgroup": "4:memory:/x\n"}), math.MaxInt64, LimitNone},
		{"unreadable", 0, noEnv, func(string) ([]byte, error) { return nil, errors.New("denied") }, math.MaxInt64, LimitNone},
		{"GOMEMLIMIT wins", 512 << 20, env("1GiB"), files(nested), orig, LimitFromEnv},
		{"empty GOMEMLIMIT is unset", 0, env(""), files(nested), gib * 9 / 10, LimitFromCgroup},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, from := memoryLimit(tc.limit, tc.lookup, tc.read)
			if got != tc.want || from != tc.wantFrom {
				t.Errorf("memoryLimit(%d) = %d, %q; want %d, %q", tc.limit, got, from, tc.want, tc.wantFrom)
			}
		})
	}
}

func TestApplyMemoryLimitSets(t *testing.T) {
	orig := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(orig) })
	t.Setenv("GOMEMLIMIT", "")
	got, from := ApplyMemoryLimit(300 << 20)
	if got != 300<<20 || from != LimitFromConfig {
		t.Fatalf("ApplyMemoryLimit = %d, %q", got, from)
	}
	if in := debug.SetMemoryLimit(-1); in != 300<<20 {
		t.Errorf("limit in force %d, want %d", in, 300<<20)
	}
}

func TestLimitString(t *testing.T) {
	if got := LimitString(math.MaxInt64); got != "none" {
		t.Errorf("LimitString(none) = %q", got)
	}
	if got := LimitString(966367641); got != "921 MiB" {
		t.Errorf("LimitString = %q", got)
	}
}
