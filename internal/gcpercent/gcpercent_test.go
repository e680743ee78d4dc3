package gcpercent

import (
	"runtime/debug"
	"testing"
)

func TestApply(t *testing.T) {
	orig := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(orig) })
	noEnv := func(string) (string, bool) { return "", false }
	gogc := func(v string) func(string) (string, bool) {
		return func(k string) (string, bool) { return v, k == "GOGC" }
	}
	for _, tc := range []struct {
		name     string
		pct      int
		lookup   func(string) (string, bool)
		want     int
		wantFrom string
	}{
		{"config", 200, noEnv, 200, FromConfig},
		{"zero leaves the runtime's", 0, noEnv, 100, FromRuntime},
		{"GOGC wins", 200, gogc("150"), 100, FromEnv},
		{"empty GOGC is unset", 300, gogc(""), 300, FromConfig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			debug.SetGCPercent(100)
			got, from := apply(tc.pct, tc.lookup)
			if got != tc.want || from != tc.wantFrom {
				t.Errorf("apply(%d) = %d, %q; want %d, %q", tc.pct, got, from, tc.want, tc.wantFrom)
			}
			if in := Current(); in != tc.want {
				t.Errorf("Current() = %d, want %d", in, tc.want)
			}
			if in := debug.SetGCPercent(100); in != tc.want {
				t.Errorf("percentage in force %d, want %d", in, tc.want)
			}
		})
	}
}

func TestCurrentOff(t *testing.T) {
	orig := debug.SetGCPercent(-1)
	got := Current()
	debug.SetGCPercent(orig)
	if got != -1 {
		t.Errorf("Current() with collection off = %d, want -1", got)
	}
}

func TestString(t *testing.T) {
	if got := String(-1); got != "off" {
		t.Errorf("String(-1) = %q", got)
	}
	if got := String(200); got != "200" {
		t.Errorf("String(200) = %q", got)
	}
}
