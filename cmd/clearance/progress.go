package main

import (
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/clearance-broker/clearance/audit"
)

// progressEvery is how often a long audit command prints how far it has
// come, on standard error. A variable so that a test can see every report.
var progressEvery = 5 * time.Second

// verifyProgress returns the Progress function of audit.VerifyOptions for
// the command name: it prints a line to w at most every progressEvery, the
// first after progressEvery, so that a log checked within it prints none.
func verifyProgress(name string, w io.Writer, now func() time.Time) func(audit.Progress) {
	start := now()
	last := start
	return func(p audit.Progress) {
		t := now()
		if t.Sub(last) < progressEvery || p.Entries == 0 {
			return
		}
		last = t
		elapsed := t.Sub(start)
		rate := float64(p.Entries) / elapsed.Seconds()
		line := fmt.Sprintf("clearance audit %s: %s of about %s entries checked (to sequence %d), %s a second",
			name, thousands(p.Entries), thousands(max(p.Total, p.Entries)), p.Sequence, thousands(int64(rate)))
		if left := p.Total - p.Entries; left > 0 && rate > 0 {
			line += fmt.Sprintf(", about %s left", time.Duration(float64(left)/rate*float64(time.Second)).Round(time.Second))
		}
		fmt.Fprintln(w, line)
	}
}

// thousands writes n with a comma between each group of three digits.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := n < 0
	if neg {
		s = s[1:]
	}
	out := make([]byte, 0, len(s)+len(s)/3+1)
	if neg {
		out = append(out, '-')
	}
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}
