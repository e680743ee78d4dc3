package harness

import (
	"runtime/debug"
	"slices"
	"testing"
	"time"
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

// TestWindows: requests fall into windows by publish time; a window's
// median and maximum are its own requests', unfinished requests and empty
// windows are left out, and the worst window is the one with the highest
// median.
func TestWindows(t *testing.T) {
	tr := newTracker(1, 7)
	ms := int64(time.Millisecond)
	base := int64(1_000_000) * ms
	for i, c := range []struct{ sent, lat int64 }{
		{0, 2}, {10, 4}, {20, 6}, // window 0: p50 4, max 6
		{250, 30}, {260, 40}, // window 2: p50 30, max 40
		{270, 0}, // unfinished
		{120, 5}, // window 1
	} {
		tr.sentAt(i, base+c.sent*ms)
		if c.lat > 0 {
			tr.done[i] = base + (c.sent+c.lat)*ms
		}
	}
	got := tr.windows(0, 7, tr.firstSent(0, 7), 100*time.Millisecond)
	want := []Window{{StartMS: 0, Count: 3, P50: 4, Max: 6}, {StartMS: 100, Count: 1, P50: 5, Max: 5}, {StartMS: 200, Count: 2, P50: 30, Max: 40}}
	if !slices.Equal(got, want) {
		t.Fatalf("windows %+v, want %+v", got, want)
	}
	if w := worstWindow(got); w != want[2] {
		t.Errorf("worst window %+v, want %+v", w, want[2])
	}
	if got := tr.firstSent(0, 7); !got.Equal(time.Unix(0, base)) {
		t.Errorf("first sent %v, want %v", got, time.Unix(0, base))
	}
	if got := newTracker(2, 3).firstSent(0, 3); !got.IsZero() {
		t.Errorf("first sent of nothing sent: %v", got)
	}
	if w := worstWindow(nil); w.Count != 0 {
		t.Errorf("worst of none %+v", w)
	}
	// The windows start at the first publish, not at request from.
	if got := tr.windows(3, 5, tr.firstSent(3, 5), 100*time.Millisecond); len(got) != 1 || got[0].StartMS != 0 || got[0].Count != 2 {
		t.Errorf("windows of requests 3-4: %+v", got)
	}
}
