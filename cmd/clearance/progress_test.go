package main

import (
	"io"
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

// TestProgressReader reads 30 MB through the verify-archive command's
// progress, a megabyte a second of its own clock: a line after 5 MB, none
// within the next interval, another after 10 MB, and what it read is what
// the file held.
func TestProgressReader(t *testing.T) {
	var out strings.Builder
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	src := strings.NewReader(strings.Repeat("x", 30_000_000))
	r := &progressReader{r: src, size: 30_000_000, p: newProgress("verify-archive", &out, func() time.Time { return now })}
	buf := make([]byte, 1_000_000)
	total := 0
	for range 10 {
		now = now.Add(time.Second)
		n, err := io.ReadFull(r, buf)
		if err != nil {
			t.Fatal(err)
		}
		total += n
	}
	want := "clearance audit verify-archive: 5 of about 30 MB read, 1 MB a second, about 25s left\n" +
		"clearance audit verify-archive: 10 of about 30 MB read, 1 MB a second, about 20s left\n"
	if out.String() != want {
		t.Fatalf("printed\n%s\nwant\n%s", out.String(), want)
	}
	rest, err := io.ReadAll(r)
	if err != nil || total+len(rest) != 30_000_000 {
		t.Fatalf("read %d bytes, %v", total+len(rest), err)
	}
}

// TestProgressWriter writes 12 MB through the export's progress, a
// megabyte a second of its own clock: no total, so the lines give what was
// written and the rate only, and every byte reaches the file.
func TestProgressWriter(t *testing.T) {
	var out, dst strings.Builder
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	w := &progressWriter{w: &dst, p: newProgress("export", &out, func() time.Time { return now })}
	chunk := strings.Repeat("y", 1_000_000)
	for range 12 {
		now = now.Add(time.Second)
		if _, err := io.WriteString(w, chunk); err != nil {
			t.Fatal(err)
		}
	}
	want := "clearance audit export: 5 MB written, 1 MB a second\n" +
		"clearance audit export: 10 MB written, 1 MB a second\n"
	if out.String() != want || dst.Len() != 12_000_000 {
		t.Fatalf("printed\n%s\nwant\n%s\nwrote %d bytes", out.String(), want, dst.Len())
	}
}
