package harness

import (
	"encoding/json"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestStageQuantiles: stage histograms of two instances, merged, less an
// earlier reading and through the children's JSON, give the mean and the
// bucket that holds the 99th percentile of what was observed in between.
func TestStageQuantiles(t *testing.T) {
	regs := [2]*prometheus.Registry{prometheus.NewRegistry(), prometheus.NewRegistry()}
	hists := [2]*prometheus.HistogramVec{}
	for i, reg := range regs {
		hists[i] = prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "clearance", Name: "stage_duration_seconds",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
		}, []string{"stage"})
		reg.MustRegister(hists[i])
	}
	read := func() stageSums {
		sums := stageSums{}
		for _, reg := range regs {
			one := stageSums{}
			one.add(reg)
			b, err := json.Marshal(one)
			if err != nil {
				t.Fatal(err)
			}
			var back stageSums
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			sums.merge(back)
		}
		return sums
	}
	// Before: slow appends that the difference must leave out.
	for range 50 {
		hists[0].WithLabelValues("audit").Observe(1.0)
	}
	before := read()
	// Between: 990 appends of 3 ms over both instances and 10 of 90 ms.
	for i := range 990 {
		hists[i%2].WithLabelValues("audit").Observe(0.003)
	}
	for range 10 {
		hists[1].WithLabelValues("audit").Observe(0.090)
	}
	d := read().minus(before)
	if got := d["stage:audit_ms"].Count; got != 1000 {
		t.Fatalf("count %v, want 1000", got)
	}
	if got, want := d.means()["stage:audit_ms"], (990*3.0+10*90)/1000; got < want-1e-6 || got > want+1e-6 {
		t.Errorf("mean %v ms, want %v", got, want)
	}
	// 3 ms lies in the bucket up to 3.2 ms; the 99th observation is one of
	// them, the 99.5th one of the 90 ms ones (bucket up to 102.4 ms).
	if got := d.quantiles(0.99)["stage:audit_ms"]; got < 3.2-1e-9 || got > 3.2+1e-9 {
		t.Errorf("p99 at most %v ms, want 3.2", got)
	}
	if got := d.quantiles(0.995)["stage:audit_ms"]; got < 102.4-1e-9 || got > 102.4+1e-9 {
		t.Errorf("p99.5 at most %v ms, want 102.4", got)
	}
	// Beyond the last bucket: twice the last bound.
	hists[0].WithLabelValues("audit").Observe(100)
	if got, want := read().minus(before).quantiles(1)["stage:audit_ms"], 0.1*(1<<17)*2; got < want-1e-6 || got > want+1e-6 {
		t.Errorf("p100 at most %v ms, want %v", got, want)
	}
}
