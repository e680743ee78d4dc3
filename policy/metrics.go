package policy

import (
	"strconv"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the live registry's collectors.
type metrics struct {
	events *prometheus.CounterVec
	lag    prometheus.Histogram
	seq    prometheus.Gauge
	// snapshot is the event of the snapshot this instance stored or
	// started from last, snapshotBytes the size of the one it stored last,
	// snapshotFailures the snapshots it could not store.
	snapshot, snapshotBytes prometheus.Gauge
	snapshotFailures        prometheus.Counter
	// catchUpFailing is 1 while the instance's last catch-up with the
	// store failed: it decides with an older registry than the store's.
	catchUpFailing prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer, dates prometheus.Collector) *metrics {
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
		snapshot: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "clearance", Subsystem: "registry", Name: "snapshot_event",
			Help: "Number of the registry event of the snapshot this instance stored or started from last (0: none).",
		}),
		snapshotBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "clearance", Subsystem: "registry", Name: "snapshot_bytes",
			Help: "Size of the registry snapshot this instance stored last.",
		}),
		snapshotFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "clearance", Subsystem: "registry", Name: "snapshot_failures_total",
			Help: "Registry snapshots this instance could not store (a later start replays more events).",
		}),
		catchUpFailing: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "clearance", Subsystem: "registry", Name: "catch_up_failing",
			Help: "1 while this instance's last attempt to put the stored registry events in force failed (it decides with an older registry version), else 0.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.events, m.lag, m.seq, m.snapshot, m.snapshotBytes, m.snapshotFailures, m.catchUpFailing, dates)
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

// AgreementCollector exports, at each scrape, the dates of the agreements
// of the registry in force (registry, read then) as seen on now's UTC day,
// so that an alert can fire before transfers start to be refused:
//
//   - clearance_agreement_valid_days_left: whole days from today to the
//     last valid day (0: today is the last; negative: expired), as the
//     console's agreement list counts them;
//   - clearance_agreement_tia_review_days_left: the same for the review
//     day of an SCC or BCR agreement's transfer impact assessment (past it,
//     the agreement no longer holds);
//   - clearance_agreement_in_force: 1 while the agreement can carry a
//     transfer today (active, between its first and last valid day, its
//     assessment not overdue), else 0.
//
// Each has the labels agreement and version. Live registers one on its
// Registerer.
func AgreementCollector(registry func() *agreements.Registry, now func() time.Time) prometheus.Collector {
	labels := []string{"agreement", "version"}
	return &agreementCollector{registry: registry, now: now,
		validLeft: prometheus.NewDesc("clearance_agreement_valid_days_left",
			"Whole days from today (UTC) to the agreement's last valid day; 0 is its last day, negative expired.", labels, nil),
		tiaLeft: prometheus.NewDesc("clearance_agreement_tia_review_days_left",
			"Whole days from today (UTC) to the review day of the agreement's transfer impact assessment; negative overdue (the agreement then no longer holds).", labels, nil),
		inForce: prometheus.NewDesc("clearance_agreement_in_force",
			"1 while the agreement can carry a transfer today (active, within its validity, its transfer impact assessment not overdue), else 0.", labels, nil),
	}
}

type agreementCollector struct {
	registry                    func() *agreements.Registry
	now                         func() time.Time
	validLeft, tiaLeft, inForce *prometheus.Desc
}

func (c *agreementCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.validLeft
	ch <- c.tiaLeft
	ch <- c.inForce
}

func (c *agreementCollector) Collect(ch chan<- prometheus.Metric) {
	reg := c.registry()
	if reg == nil {
		return
	}
	now := c.now()
	for _, a := range reg.Agreements() {
		version := strconv.Itoa(a.Version)
		ch <- prometheus.MustNewConstMetric(c.validLeft, prometheus.GaugeValue, float64(agreements.DaysFrom(now, a.ValidUntil)), a.ID, version)
		if a.TIA != nil {
			ch <- prometheus.MustNewConstMetric(c.tiaLeft, prometheus.GaugeValue, float64(agreements.DaysFrom(now, a.TIA.ReviewBy)), a.ID, version)
		}
		in := 0.0
		if a.HoldsOn(now) {
			in = 1
		}
		ch <- prometheus.MustNewConstMetric(c.inForce, prometheus.GaugeValue, in, a.ID, version)
	}
}
