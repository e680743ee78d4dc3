package main

import (
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/clearance-broker/clearance/audit"
)

// progressEvery is how often a long audit command prints how far it has
// come, on standard error.
var progressEvery = 5 * time.Second

// progress prints a long audit command's progress lines: at most one every
// progressEvery, the first after progressEvery, so that a command done
// within it prints none.
type progress struct {
	name        string
	w           io.Writer
	now         func() time.Time
	start, last time.Time
}

func newProgress(name string, w io.Writer, now func() time.Time) *progress {
	t := now()
	return &progress{name: name, w: w, now: now, start: t, last: t}
}

// report prints, when a line is due, "clearance audit NAME: DONE of about
// TOTAL UNITVERB DETAIL, RATE RATEUNIT a second, about T left", with the
// counts written by format; without a total (0), "DONE UNITVERB DETAIL,
// RATE RATEUNIT a second".
func (p *progress) report(done, total int64, format func(int64) string, unitVerb, detail, rateUnit string) {
	t := p.now()
	if t.Sub(p.last) < progressEvery || done <= 0 {
		return
	}
	p.last = t
	rate := float64(done) / t.Sub(p.start).Seconds()
	of := ""
	if total > 0 {
		of = " of about " + format(max(total, done))
	}
	line := fmt.Sprintf("clearance audit %s: %s%s %s%s, %s%s a second",
		p.name, format(done), of, unitVerb, detail, format(int64(rate)), rateUnit)
	if left := total - done; left > 0 && rate > 0 {
		line += fmt.Sprintf(", about %s left", time.Duration(float64(left)/rate*float64(time.Second)).Round(time.Second))
	}
	fmt.Fprintln(p.w, line)
}

// verifyProgress returns the Progress function of audit.VerifyOptions for
// the command name.
func verifyProgress(name string, w io.Writer, now func() time.Time) func(audit.Progress) {
	p := newProgress(name, w, now)
	return func(v audit.Progress) {
		p.report(v.Entries, v.Total, thousands, "entries checked", fmt.Sprintf(" (to sequence %d)", v.Sequence), "")
	}
}

// progressReader reads r, of size bytes, reporting how much it has read.
type progressReader struct {
	r    io.Reader
	size int64
	read int64
	p    *progress
}

func (r *progressReader) Read(b []byte) (int, error) {
	n, err := r.r.Read(b)
	r.read += int64(n)
	r.p.report(r.read, r.size, megabytes, "MB read", "", " MB")
	return n, err
}

// progressWriter writes to w, reporting how much it has written (an export,
// whose size is not known before it ends).
type progressWriter struct {
	w       io.Writer
	written int64
	p       *progress
}

func (w *progressWriter) Write(b []byte) (int, error) {
	n, err := w.w.Write(b)
	w.written += int64(n)
	w.p.report(w.written, 0, megabytes, "MB written", "", " MB")
	return n, err
}

// megabytes writes n bytes as whole megabytes (10^6 bytes).
func megabytes(n int64) string { return thousands(n / 1_000_000) }

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
