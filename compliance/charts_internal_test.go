package compliance

import (
	"fmt"
	"testing"
	"time"
)

// TestChartBuckets checks that a chart's buckets are bounded whatever the
// window, cover it, and are the shortest unit that keeps them bounded.
func TestChartBuckets(t *testing.T) {
	day := func(s string) time.Time {
		d, err := time.Parse(time.DateOnly, s)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	tests := []struct {
		name, from, to string
		unit, column   string
		rows           int // 0: not checked beyond the bound
		first, last    string
	}{
		{"a day", "2026-11-28", "2026-11-29", "day", "Day", 1, "2026-11-28", "2026-11-28"},
		{"30 days", "2026-10-29", "2026-11-28", "day", "Day", 30, "2026-10-29", "2026-11-27"},
		{"120 days", "2026-08-01", "2026-11-29", "day", "Day", 120, "2026-08-01", "2026-11-28"},
		{"121 days", "2026-08-01", "2026-11-30", "week", "Week from", 18, "2026-07-27", "2026-11-23"},
		{"a year", "2025-11-28", "2026-11-28", "week", "Week from", 53, "2025-11-24", "2026-11-23"},
		{"five years", "2021-11-28", "2026-11-28", "month", "Month", 61, "2021-11", "2026-11"},
		{"twenty years", "2006-11-28", "2026-11-28", "year", "Year", 21, "2006", "2026"},
		{"a thousand years", "1026-01-01", "2026-01-01", "9 years", "Years", 112, "1026–1034", "2025–2033"},
		{"every date", "0001-01-02", "9999-12-31", "84 years", "Years", 120, "0000–0083", "9996–10079"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			from, to := day(tt.from), day(tt.to)
			b := buckets(from, to)
			if b.Unit != tt.unit || b.Column != tt.column {
				t.Fatalf("unit %q, column %q; want %q, %q", b.Unit, b.Column, tt.unit, tt.column)
			}
			n := len(b.labels)
			if n == 0 || n > maxChartRows || len(b.starts) != n || len(b.ticks) != n {
				t.Fatalf("%d labels, %d starts, %d ticks (at most %d)", n, len(b.starts), len(b.ticks), maxChartRows)
			}
			if tt.rows != 0 && n != tt.rows {
				t.Errorf("%d buckets, want %d", n, tt.rows)
			}
			if b.labels[0] != tt.first || b.labels[n-1] != tt.last {
				t.Errorf("buckets %s … %s, want %s … %s", b.labels[0], b.labels[n-1], tt.first, tt.last)
			}
			if b.starts[0].After(from) || !b.starts[n-1].Before(to) {
				t.Errorf("buckets from %s to %s do not cover [%s, %s)", b.starts[0], b.starts[n-1], from, to)
			}
			seen := map[string]bool{}
			for i, l := range b.labels {
				if seen[l] || i > 0 && !b.starts[i-1].Before(b.starts[i]) {
					t.Fatalf("bucket %d (%s) repeats or is out of order", i, l)
				}
				seen[l] = true
			}
			for _, d := range []time.Time{from, to.AddDate(0, 0, -1), from.Add(to.Sub(from) / 2)} {
				if got := b.of(d.Format(time.DateOnly)); !seen[got] {
					t.Errorf("day %s in no bucket (%q)", d.Format(time.DateOnly), got)
				}
			}
		})
	}
}

// TestChartKeepsCounts checks that grouping days into longer buckets adds
// every count to one bucket, and that a day maps to the bucket holding it.
func TestChartKeepsCounts(t *testing.T) {
	from := time.Date(2024, 11, 28, 0, 0, 0, 0, time.UTC)
	to := from.AddDate(2, 0, 0)
	ov := &Overview{From: from, To: to}
	var total int64
	for d, i := from, 0; d.Before(to); d, i = d.AddDate(0, 0, 5), i+1 {
		n := int64(i%7 + 1)
		ov.Days = append(ov.Days,
			DayCount{Day: d.Format(time.DateOnly), Country: fmt.Sprintf("C%d", i%9), Decision: "allow", Count: n},
			DayCount{Day: d.Format(time.DateOnly), Country: "DE", Decision: "deny", Count: 1})
		total += n + 1
	}
	for _, c := range []*Chart{outcomeChart(ov), countryChart(ov)} {
		if len(c.Rows) > maxChartRows {
			t.Fatalf("%s: %d rows", c.Title, len(c.Rows))
		}
		var sum int64
		for _, r := range c.Rows {
			for _, v := range r.Values {
				sum += v
			}
		}
		if sum != total {
			t.Errorf("%s: rows sum to %d, want %d", c.Title, sum, total)
		}
	}
	if c := outcomeChart(ov); c.Title != "Transfers per week by outcome" || c.Column != "Week from" {
		t.Errorf("title %q, column %q", c.Title, c.Column)
	}
	b := buckets(from, to)
	if got := b.of("2026-11-25"); got != "2026-11-23" { // a Wednesday, in the week from Monday 23rd
		t.Errorf("2026-11-25 in bucket %q, want 2026-11-23", got)
	}
}
