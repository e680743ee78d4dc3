package broker

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestMetricsResolvedChildren: the stage and latency observers resolved at
// start land in the series their stage and outcome name, and an outcome out
// of range still counts, as "unknown".
func TestMetricsResolvedChildren(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	start := time.Now()
	m.since(stageSeal, start)
	m.since(stageAudit, start)
	m.since(stageAudit, start)
	m.done(OutcomeDenied, start)
	m.done(OutcomeSlow, start)
	m.done(Outcome(0), start)
	m.done(Outcome(99), start)

	counts := map[string]uint64{}
	stages := 0
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, s := range mf.GetMetric() {
			if h := s.GetHistogram(); h != nil && len(s.GetLabel()) == 1 {
				counts[mf.GetName()+"/"+s.GetLabel()[0].GetValue()] = h.GetSampleCount()
				if mf.GetName() == "clearance_stage_duration_seconds" {
					stages++
				}
			}
		}
	}
	want := map[string]uint64{
		"clearance_stage_duration_seconds/decide": 0, "clearance_stage_duration_seconds/seal": 1,
		"clearance_stage_duration_seconds/deliver": 0, "clearance_stage_duration_seconds/audit": 2,
		"clearance_message_duration_seconds/delivered": 0, "clearance_message_duration_seconds/denied": 1,
		"clearance_message_duration_seconds/slow": 1, "clearance_message_duration_seconds/unknown": 2,
	}
	for k, n := range want {
		if counts[k] != n {
			t.Errorf("%s: %d observations, want %d (all: %v)", k, counts[k], n, counts)
		}
	}
	if stages != int(numStages) {
		t.Errorf("%d stage series, want %d", stages, numStages)
	}
}
