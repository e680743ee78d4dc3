package main

import (
	"strings"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/audit"
)

func TestThousands(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 7: "7", 999: "999", 1000: "1,000", 25_000: "25,000",
		1_234_567: "1,234,567", -1_234_567: "-1,234,567", 100_000_000: "100,000,000"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestVerifyProgressLines drives the verify command's progress with a clock
// of its own: nothing within the first interval, then at most a line an
// interval, with the rate and the time left.
func TestVerifyProgressLines(t *testing.T) {
	var out strings.Builder
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	report := verifyProgress("verify", &out, clock)
	step := func(d time.Duration, entries int64) {
		now = now.Add(d)
		report(audit.Progress{Entries: entries, Sequence: entries + 100, Total: 1_000_000})
	}
	step(time.Second, 10_000)
	step(3*time.Second, 40_000) // 4 s: within the first interval
	if out.Len() != 0 {
		t.Fatalf("printed within the first interval: %q", out.String())
	}
	step(time.Second, 50_000) // 5 s: 10,000 a second, 95 s left
	step(time.Second, 60_000) // 6 s: within the next interval
	step(4*time.Second, 100_000)
	want := "clearance audit verify: 50,000 of about 1,000,000 entries checked (to sequence 50100), 10,000 a second, about 1m35s left\n" +
		"clearance audit verify: 100,000 of about 1,000,000 entries checked (to sequence 100100), 10,000 a second, about 1m30s left\n"
	if out.String() != want {
		t.Fatalf("printed\n%s\nwant\n%s", out.String(), want)
	}
}
