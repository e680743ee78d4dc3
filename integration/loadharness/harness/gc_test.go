package harness

import (
	"runtime/debug"
	"testing"
)

// gcSettings returns the process's GC percent and memory limit without
// changing them.
func gcSettings() (pct int, limit int64) {
	pct = debug.SetGCPercent(100)
	debug.SetGCPercent(pct)
	return pct, debug.SetMemoryLimit(-1)
}

func TestQuietGC(t *testing.T) {
	pct0, limit0 := gcSettings()
	if got, want := (Config{}).Defaults().HarnessHeapLimit, DefaultHarnessHeapLimit(); got != want || want <= 0 || want > 8<<30 {
		t.Fatalf("default heap limit %d, want %d, at most 8 GiB", got, want)
	}
	for _, tc := range []struct {
		name  string
		cfg   Config
		quiet bool
	}{
		{"default", Config{}.Defaults(), true},
		{"own limit", Config{HarnessHeapLimit: 1 << 30}.Defaults(), true},
		{"runtime pace", Config{HarnessHeapLimit: -1}.Defaults(), false},
		{"in process", Config{InProcess: true}.Defaults(), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			restore := quietGC(tc.cfg)
			pct, limit := gcSettings()
			restore()
			if tc.quiet && (pct != -1 || limit != tc.cfg.HarnessHeapLimit) {
				t.Errorf("GC percent %d, limit %d; want off, %d", pct, limit, tc.cfg.HarnessHeapLimit)
			}
			if !tc.quiet && (pct != pct0 || limit != limit0) {
				t.Errorf("GC percent %d, limit %d; want them untouched (%d, %d)", pct, limit, pct0, limit0)
			}
			if p, l := gcSettings(); p != pct0 || l != limit0 {
				t.Errorf("after restore: GC percent %d, limit %d; want %d, %d", p, l, pct0, limit0)
			}
			if r := newReport(tc.cfg); (r.Settings.HarnessHeapLimit != 0) != tc.quiet {
				t.Errorf("report's heap limit %d, quiet %v", r.Settings.HarnessHeapLimit, tc.quiet)
			}
		})
	}
}
