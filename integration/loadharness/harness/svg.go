package harness

import (
	"bufio"
	"fmt"
	"html"
	"io"
	"math"
)

// WriteSVG draws two bar charts: throughput of every measurement (baseline
// grey, broker blue) and p50/p99/p99.9 latency at each paced fraction on a
// logarithmic scale.
func (r *Report) WriteSVG(w io.Writer) error {
	const (
		width, height = 960, 720
		left, right   = 80, 20
		top1, h1      = 50, 250
		top2, h2      = 400, 250
	)
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">`+"\n", width, height)
	fmt.Fprintf(bw, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(bw, `<text x="%d" y="22" font-size="15">Clearance vs bare forwarder: throughput (requests/s), %d B requests, nproc %d</text>`+"\n", left, r.Settings.Size, r.Machine.CPUs)
	color := func(m *Measurement) string {
		if m.Kind == "baseline" {
			return "#9e9e9e"
		}
		return "#1f5fa8"
	}
	n := max(len(r.Runs), 1)
	slot := float64(width-left-right) / float64(n)
	maxT := 1.0
	for _, m := range r.Runs {
		maxT = math.Max(maxT, m.Throughput)
	}
	axis(bw, left, top1, width-right, h1, 0, maxT, false)
	for i, m := range r.Runs {
		x := float64(left) + float64(i)*slot + slot*0.15
		bh := m.Throughput / maxT * h1
		fmt.Fprintf(bw, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n", x, float64(top1+h1)-bh, slot*0.7, bh, color(m))
		label := fmt.Sprintf("%.0f", m.Throughput)
		if m.RatioToBaseline > 0 {
			label += fmt.Sprintf(" (%.2fx)", m.RatioToBaseline)
		}
		fmt.Fprintf(bw, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", x+slot*0.35, float64(top1+h1)-bh-4, label)
		fmt.Fprintf(bw, `<text x="%.1f" y="%d" text-anchor="middle" font-size="9">%s</text>`+"\n", x+slot*0.35, top1+h1+16, html.EscapeString(m.Name))
	}

	fmt.Fprintf(bw, `<text x="%d" y="%d" font-size="15">End-to-end latency (ms, log scale): p50, p99, p99.9 at each fraction of the maximum rate</text>`+"\n", left, top2-28)
	lo, hi := math.Inf(1), 1.0
	for _, m := range r.Runs {
		for _, p := range m.Paced {
			for _, v := range []float64{p.Latency.P50, p.Latency.P99, p.Latency.P999} {
				if v > 0 {
					lo, hi = math.Min(lo, v), math.Max(hi, v)
				}
			}
		}
	}
	if math.IsInf(lo, 1) {
		lo = 0.1
	}
	lo = math.Pow(10, math.Floor(math.Log10(lo)))
	hi = math.Pow(10, math.Ceil(math.Log10(hi)))
	axis(bw, left, top2, width-right, h2, lo, hi, true)
	shades := []string{"0.45", "0.75", "1"}
	for i, m := range r.Runs {
		k := max(len(m.Paced)*3, 1)
		sub := slot * 0.8 / float64(k)
		for j, p := range m.Paced {
			for q, v := range []float64{p.Latency.P50, p.Latency.P99, p.Latency.P999} {
				if v <= 0 {
					continue
				}
				bh := (math.Log10(v) - math.Log10(lo)) / (math.Log10(hi) - math.Log10(lo)) * h2
				x := float64(left) + float64(i)*slot + slot*0.1 + float64(j*3+q)*sub
				fmt.Fprintf(bw, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s" fill-opacity="%s"><title>%s at %.0f%%: %.2f ms</title></rect>`+"\n",
					x, float64(top2+h2)-bh, sub*0.9, bh, color(m), shades[q], html.EscapeString(m.Name), p.Fraction*100, v)
			}
			fmt.Fprintf(bw, `<text x="%.1f" y="%d" text-anchor="middle" font-size="9">%.0f%%</text>`+"\n", float64(left)+float64(i)*slot+slot*0.1+float64(j*3)*sub+1.5*sub, top2+h2+12, p.Fraction*100)
		}
		fmt.Fprintf(bw, `<text x="%.1f" y="%d" text-anchor="middle" font-size="9">%s</text>`+"\n", float64(left)+float64(i)*slot+slot/2, top2+h2+26, html.EscapeString(m.Name))
	}
	fmt.Fprintf(bw, `<text x="%d" y="%d" fill="#555">grey: bare forwarder (baseline); blue: Clearance broker; shades: p50, p99, p99.9</text>`+"\n", left, height-12)
	fmt.Fprintln(bw, "</svg>")
	return bw.Flush()
}

// axis draws a y axis with gridlines from lo to hi over height h.
func axis(w io.Writer, x0, top, x1, h int, lo, hi float64, logScale bool) {
	fmt.Fprintf(w, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", x0, top, x0, top+h)
	fmt.Fprintf(w, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", x0, top+h, x1, top+h)
	var ticks []float64
	if logScale {
		for v := lo; v <= hi*1.001; v *= 10 {
			ticks = append(ticks, v)
		}
	} else {
		step := math.Pow(10, math.Floor(math.Log10(hi)))
		if hi/step < 3 {
			step /= 2
		}
		for v := 0.0; v <= hi*1.001; v += step {
			ticks = append(ticks, v)
		}
	}
	for _, v := range ticks {
		var y float64
		if logScale {
			y = float64(top+h) - (math.Log10(v)-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo))*float64(h)
		} else {
			y = float64(top+h) - v/hi*float64(h)
		}
		fmt.Fprintf(w, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`+"\n", x0, y, x1, y)
		fmt.Fprintf(w, `<text x="%d" y="%.1f" text-anchor="end">%g</text>`+"\n", x0-4, y+4, v)
	}
}
