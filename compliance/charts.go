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
	Title   string
	Width   int
	Height  int
	Bars    []Bar
	Ticks   []Tick
	Legend  []LegendItem
	Max     int64
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

// days lists the UTC days of [from, to).
func days(from, to time.Time) []string {
	var out []string
	for d := from.UTC().Truncate(24 * time.Hour); d.Before(to); d = d.AddDate(0, 0, 1) {
		out = append(out, d.Format(time.DateOnly))
	}
	return out
}

// stacked draws series (name -> day -> count) as stacked bars per day.
func stacked(title string, dayList []string, names []string, colors []string, val func(series, day string) int64) *Chart {
	c := &Chart{Title: title, Width: chartW, Height: chartH, Columns: names}
	totals := map[string]int64{}
	for _, d := range dayList {
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
	if len(dayList) == 0 {
		return c
	}
	plotW := float64(chartW - chartPadL - 10)
	plotH := float64(chartH - chartPadB - 10)
	slot := plotW / float64(len(dayList))
	bw := slot * 0.75
	scale := 0.0
	if c.Max > 0 {
		scale = plotH / float64(c.Max)
	}
	every := max(1, len(dayList)/8)
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
				Label: fmt.Sprintf("%s, %s: %d", row.Label, names[j], v)})
		}
		if i%every == 0 {
			c.Ticks = append(c.Ticks, Tick{X: x + bw/2, Y: float64(chartH - 8), Text: row.Label[5:]})
		}
	}
	return c
}

func outcomeChart(ov *Overview) *Chart {
	counts := map[[2]string]int64{}
	for _, d := range ov.Days {
		counts[[2]string{d.Decision, d.Day}] += d.Count
	}
	return stacked("Transfers per day by outcome", days(ov.From, ov.To), []string{"allow", "deny"},
		[]string{colorAllow, colorDeny}, func(s, d string) int64 { return counts[[2]string{s, d}] })
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
	counts := map[[2]string]int64{}
	for _, d := range ov.Days {
		n := countryName(d.Country)
		if other && !inTop[n] {
			n = "other"
		}
		counts[[2]string{n, d.Day}] += d.Count
	}
	return stacked("Transfers per day by destination country", days(ov.From, ov.To), series,
		palette[:len(series)], func(s, d string) int64 { return counts[[2]string{s, d}] })
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
