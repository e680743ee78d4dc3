package policy

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the live registry's collectors.
type metrics struct {
	events *prometheus.CounterVec
	lag    prometheus.Histogram
	seq    prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "clearance", Subsystem: "registry", Name: "events_total",
			Help: "Registry events put in force on this instance, by kind (apply, change).",
		}, []string{"kind"}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "clearance", Subsystem: "registry", Name: "propagation_seconds",
			Help:    "Time from a registry event being stored (on any instance) to it being in force on this one.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		seq: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "clearance", Subsystem: "registry", Name: "event_sequence",
			Help: "Number of the latest registry event in force on this instance.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.events, m.lag, m.seq)
	}
	return m
}

// swapped counts ev; its propagation time is observed once the instance
// has started (events read from the store at start are history).
func (m *metrics) swapped(ev Event, now time.Time, started bool) {
	m.events.WithLabelValues(string(ev.Kind)).Inc()
	m.seq.Set(float64(ev.Seq))
	if started && !ev.At.IsZero() {
		m.lag.Observe(max(0, now.Sub(ev.At).Seconds()))
	}
}
