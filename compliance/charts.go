package compliance

import (
	"fmt"
	"sort"
	"time"
)

// Chart is a stacked bar chart drawn as inline SVG by the console's
// templates (no script, no external library). Table holds the same figures
// for screen readers and for reading exact values.
type Chart struct {
	Title  string
	Width  int
	Height int
	Bars   []Bar
	Ticks  []Tick
	Legend []LegendItem
	Max    int64
	// Column heads the table's first column (the bucket: "Day", "Month").
	Column  string
	Columns []string
	Rows    []ChartRow
}

// Bar is one rectangle of a chart.
type Bar struct {
	X, Y, W, H float64
	Color      string
	Label      string
}

// Tick is an axis label.
type Tick struct {
	X, Y float64
	Text string
}

// LegendItem names a series colour.
type LegendItem struct{ Color, Text string }

// ChartRow is one row of a chart's data table.
type ChartRow struct {
	Label  string
	Values []int64
}

var palette = []string{"#1f5fa8", "#d9822b", "#2b8a6e", "#8e44ad", "#b8860b", "#c0392b", "#5d6d7e"}

const (
	chartW, chartH   = 760, 220
	chartPadL        = 40
	chartPadB        = 28
	colorAllow       = "#2e7d32"
	colorDeny        = "#c62828"
	maxCountrySeries = 6
)

// maxChartRows bounds a chart's bars (and its table's rows) whatever the
// window: the bucket (a day, a week, a month, a year, or several years) is
// the shortest that covers the window in at most this many.
const maxChartRows = 120

// chartBuckets are the bars of a chart over a window: UTC days, weeks
// (from Monday), months, years or runs of years, each with its label.
type chartBuckets struct {
	// Unit names one bucket for titles ("day", "week", "10 years") and
	// Column the table's first column ("Day", "Week from", "Years").
	Unit, Column string
	starts       []time.Time // each bucket's first day, ascending
	labels       []string    // each bucket's label, as the table shows it
	ticks        []string    // each bucket's axis label
}

// buckets lists the buckets of [from, to): the first holds from, the last
// ends at or after to, so the first and last may be partly outside the
// window. The bucket is the shortest of a day, a week, a month and a year
// that keeps the window within maxChartRows buckets, or else the shortest
// run of years that does.
func buckets(from, to time.Time) *chartBuckets {
	day := from.UTC().Truncate(24 * time.Hour)
	end := to.UTC()
	year := time.Date(day.Year(), 1, 1, 0, 0, 0, 0, time.UTC)
	units := []struct {
		unit, column string
		start        time.Time
		next         func(time.Time) time.Time
	}{
		{"day", "Day", day, func(t time.Time) time.Time { return t.AddDate(0, 0, 1) }},
		// Weeks start on Monday (ISO 8601).
		{"week", "Week from", day.AddDate(0, 0, -(int(day.Weekday())+6)%7), func(t time.Time) time.Time { return t.AddDate(0, 0, 7) }},
		{"month", "Month", time.Date(day.Year(), day.Month(), 1, 0, 0, 0, 0, time.UTC), func(t time.Time) time.Time { return t.AddDate(0, 1, 0) }},
		{"year", "Year", year, func(t time.Time) time.Time { return t.AddDate(1, 0, 0) }},
	}
	b := &chartBuckets{}
	var start time.Time
	var next func(time.Time) time.Time
	for _, u := range units {
		if fits(u.start, end, u.next) {
			b.Unit, b.Column, start, next = u.unit, u.column, u.start, u.next
			break
		}
	}
	if next == nil {
		// Runs of n years, each starting on a multiple of n (2020–2029).
		for n := max(2, (end.Year()-day.Year()+1)/maxChartRows); ; n++ {
			start = time.Date(day.Year()-day.Year()%n, 1, 1, 0, 0, 0, 0, time.UTC)
			next = func(t time.Time) time.Time { return t.AddDate(n, 0, 0) }
			if fits(start, end, next) {
				b.Unit, b.Column = fmt.Sprintf("%d years", n), "Years"
				break
			}
		}
	}
	for t := start; t.Before(end); t = next(t) {
		b.starts = append(b.starts, t)
		var label, tick string
		switch b.Unit {
		case "day":
			label, tick = t.Format(time.DateOnly), t.Format("01-02")
		case "week":
			label = t.Format(time.DateOnly)
			tick = label
		case "month":
			label = t.Format("2006-01")
			tick = label
		case "year":
			label = t.Format("2006")
			tick = label
		default:
			label = t.Format("2006") + "–" + next(t).AddDate(-1, 0, 0).Format("2006")
			tick = t.Format("2006")
		}
		b.labels = append(b.labels, label)
		b.ticks = append(b.ticks, tick)
	}
	return b
}

// fits says whether buckets from start, each ending where next says, reach
// end within maxChartRows buckets. It steps at most that many times.
func fits(start, end time.Time, next func(time.Time) time.Time) bool {
	t := start
	for range maxChartRows {
		if !t.Before(end) {
			return true
		}
		t = next(t)
	}
	return !t.Before(end)
}

// of returns the label of the bucket holding day (a date as DayCount
// writes it), or "" when day is not a date or lies outside every bucket.
func (b *chartBuckets) of(day string) string {
	t, err := time.Parse(time.DateOnly, day)
	if err != nil || len(b.starts) == 0 || t.Before(b.starts[0]) {
		return ""
	}
	// The last bucket starting at or before t.
	i := sort.Search(len(b.starts), func(i int) bool { return b.starts[i].After(t) }) - 1
	return b.labels[i]
}

// stacked draws series (name -> bucket label -> count) as stacked bars per
// bucket.
func stacked(title string, bk *chartBuckets, names []string, colors []string, val func(series, bucket string) int64) *Chart {
	c := &Chart{Title: title, Width: chartW, Height: chartH, Columns: names, Column: bk.Column}
	totals := map[string]int64{}
	for _, d := range bk.labels {
		row := ChartRow{Label: d}
		for _, n := range names {
			v := val(n, d)
			totals[d] += v
			row.Values = append(row.Values, v)
		}
		c.Rows = append(c.Rows, row)
	}
	for _, t := range totals {
		c.Max = max(c.Max, t)
	}
	for i, n := range names {
		c.Legend = append(c.Legend, LegendItem{Color: colors[i], Text: n})
	}
	if len(bk.labels) == 0 {
		return c
	}
	plotW := float64(chartW - chartPadL - 10)
	plotH := float64(chartH - chartPadB - 10)
	slot := plotW / float64(len(bk.labels))
	bw := slot * 0.75
	scale := 0.0
	if c.Max > 0 {
		scale = plotH / float64(c.Max)
	}
	every := max(1, len(bk.labels)/8)
	prefix := "" // a bar's title names its bucket as the table does
	if bk.Unit == "week" {
		prefix = "week from "
	}
	for i, row := range c.Rows {
		x := float64(chartPadL) + float64(i)*slot + (slot-bw)/2
		y := float64(chartH - chartPadB)
		for j, v := range row.Values {
			if v == 0 {
				continue
			}
			h := float64(v) * scale
			y -= h
			c.Bars = append(c.Bars, Bar{X: x, Y: y, W: bw, H: h, Color: colors[j],
				Label: fmt.Sprintf("%s%s, %s: %d", prefix, row.Label, names[j], v)})
		}
		if i%every == 0 {
			c.Ticks = append(c.Ticks, Tick{X: x + bw/2, Y: float64(chartH - 8), Text: bk.ticks[i]})
		}
	}
	return c
}

func outcomeChart(ov *Overview) *Chart {
	bk := buckets(ov.From, ov.To)
	counts := map[[2]string]int64{}
	for _, d := range ov.Days {
		counts[[2]string{d.Decision, bk.of(d.Day)}] += d.Count
	}
	return stacked("Transfers per "+bk.Unit+" by outcome", bk, []string{"allow", "deny"},
		[]string{colorAllow, colorDeny}, func(s, b string) int64 { return counts[[2]string{s, b}] })
}

func countryChart(ov *Overview) *Chart {
	totals := map[string]int64{}
	for _, d := range ov.Days {
		totals[countryName(d.Country)] += d.Count
	}
	names := make([]string, 0, len(totals))
	for n := range totals {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		return totals[names[i]] > totals[names[j]] || totals[names[i]] == totals[names[j]] && names[i] < names[j]
	})
	series := names
	other := false
	if len(names) > maxCountrySeries {
		series, other = append(names[:maxCountrySeries:maxCountrySeries], "other"), true
	}
	inTop := map[string]bool{}
	for _, n := range series {
		inTop[n] = true
	}
	bk := buckets(ov.From, ov.To)
	counts := map[[2]string]int64{}
	for _, d := range ov.Days {
		n := countryName(d.Country)
		if other && !inTop[n] {
			n = "other"
		}
		counts[[2]string{n, bk.of(d.Day)}] += d.Count
	}
	return stacked("Transfers per "+bk.Unit+" by destination country", bk, series,
		palette[:len(series)], func(s, b string) int64 { return counts[[2]string{s, b}] })
}

func countryName(c string) string {
	if c == "" {
		return "unknown"
	}
	return c
}

// ReasonBar is one horizontal bar of the top refusal reasons.
type ReasonBar struct {
	ReasonCount
	Percent float64
}

func reasonBars(ov *Overview) []ReasonBar {
	var top int64
	for _, r := range ov.TopReasons {
		top = max(top, r.Count)
	}
	out := make([]ReasonBar, 0, len(ov.TopReasons))
	for _, r := range ov.TopReasons {
		out = append(out, ReasonBar{ReasonCount: r, Percent: float64(r.Count) * 100 / float64(max(top, 1))})
	}
	return out
}
