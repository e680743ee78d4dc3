package broker

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the broker's Prometheus collectors. Each Broker registers its
// own on the registerer it is given, so tests and several brokers in one
// process do not collide.
type Metrics struct {
	decisions  *prometheus.CounterVec
	deliveries *prometheus.CounterVec
	outcomes   *prometheus.CounterVec
	latency    *prometheus.HistogramVec
	stage      *prometheus.HistogramVec
	keyTrips   *prometheus.HistogramVec
	auditBatch prometheus.Histogram
	auditTook  prometheus.Histogram
	inFlight   prometheus.Gauge

	// The children of stage and latency that every message observes,
	// resolved once: a vector's lookup hashes its label values and takes a
	// lock, several times per message.
	stages    [numStages]prometheus.Observer
	latencyBy [OutcomeSlow + 1]prometheus.Observer
}

// stage is a pipeline stage timed by clearance_stage_duration_seconds.
type stage int

const (
	stageDecide stage = iota
	stageSeal
	stageDeliver
	stageAudit
	numStages
)

var stageNames = [numStages]string{"decide", "seal", "deliver", "audit"}

// NewMetrics creates the collectors and registers them on reg (a nil reg
// leaves them unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "clearance", Name: "decisions_total",
			Help: "Decisions by outcome (allow, deny, reject) and reason.",
		}, []string{"outcome", "reason"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "clearance", Name: "deliveries_total",
			Help: "Delivery attempts by connector and result (delivered, transient, permanent).",
		}, []string{"connector", "result"}),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "clearance", Name: "messages_total",
			Help: "Messages by pipeline outcome and JetStream action.",
		}, []string{"outcome", "action"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "clearance", Name: "message_duration_seconds",
			Help:    "Time from receiving a message to acknowledging it, by outcome.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}, []string{"outcome"}),
		stage: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "clearance", Name: "stage_duration_seconds",
			Help:    "Time spent per pipeline stage (decide, seal, audit, deliver).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
		}, []string{"stage"}),
		keyTrips: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "clearance", Name: "key_service_duration_seconds",
			Help:    "Key service (Vault) operations by operation and result.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
		}, []string{"op", "result"}),
		auditBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "clearance", Name: "audit_batch_size",
			Help:    "Entries per audit log group commit.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12),
		}),
		auditTook: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "clearance", Name: "audit_commit_duration_seconds",
			Help:    "Time of one audit log group commit, from the writer sending the batch to the database's answer.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
		}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "clearance", Name: "messages_in_flight",
			Help: "Messages this instance is processing now.",
		}),
	}
	for st := range numStages {
		m.stages[st] = m.stage.WithLabelValues(stageNames[st])
	}
	for o := OutcomeDelivered; o <= OutcomeSlow; o++ {
		m.latencyBy[o] = m.latency.WithLabelValues(o.String())
	}
	if reg != nil {
		reg.MustRegister(m.decisions, m.deliveries, m.outcomes, m.latency, m.stage, m.keyTrips, m.auditBatch, m.auditTook, m.inFlight)
	}
	return m
}

// ObserveAuditBatch records the size and time of one audit group commit;
// pass it to the audit log as audit.Options.OnCommit.
func (m *Metrics) ObserveAuditBatch(n int, took time.Duration) {
	m.auditBatch.Observe(float64(n))
	m.auditTook.Observe(took.Seconds())
}

func (m *Metrics) decision(outcome string, reasons []string) {
	if len(reasons) == 0 {
		m.decisions.WithLabelValues(outcome, "").Inc()
		return
	}
	for _, r := range reasons {
		m.decisions.WithLabelValues(outcome, reasonLabel(r)).Inc()
	}
}

// reasonLabel bounds label cardinality: "invalid_request: subject.id"
// counts as "invalid_request".
func reasonLabel(r string) string {
	for i := 0; i < len(r); i++ {
		if r[i] == ':' {
			return r[:i]
		}
	}
	return r
}

func (m *Metrics) since(st stage, start time.Time) {
	m.stages[st].Observe(time.Since(start).Seconds())
}

// done observes the time from receiving a message to acknowledging it.
func (m *Metrics) done(o Outcome, start time.Time) {
	if o < OutcomeDelivered || o > OutcomeSlow {
		m.latency.WithLabelValues(o.String()).Observe(time.Since(start).Seconds())
		return
	}
	m.latencyBy[o].Observe(time.Since(start).Seconds())
}

// keyOp times one key service call.
func keyOp[T any](m *Metrics, op string, fn func() (T, error)) (T, error) {
	start := time.Now()
	v, err := fn()
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.keyTrips.WithLabelValues(op, result).Observe(time.Since(start).Seconds())
	return v, err
}

// instrumentedKeys wraps the key service so every call is timed.
type instrumentedKeys struct {
	k Keys
	m *Metrics
}

func (i instrumentedKeys) Seal(ctx context.Context, p []byte) ([]byte, error) {
	return keyOp(i.m, "seal", func() ([]byte, error) { return i.k.Seal(ctx, p) })
}

// SealAppend is Seal appending to dst when the key service can
// (SealAppender), and Seal otherwise.
func (i instrumentedKeys) SealAppend(ctx context.Context, dst, p []byte) ([]byte, error) {
	a, ok := i.k.(SealAppender)
	if !ok {
		return i.Seal(ctx, p)
	}
	return keyOp(i.m, "seal", func() ([]byte, error) { return a.SealAppend(ctx, dst, p) })
}

func (i instrumentedKeys) Open(ctx context.Context, s []byte) ([]byte, error) {
	return keyOp(i.m, "open", func() ([]byte, error) { return i.k.Open(ctx, s) })
}

func (i instrumentedKeys) SealFor(ctx context.Context, jwk []byte, p [][]byte) ([][]byte, error) {
	return keyOp(i.m, "seal_for", func() ([][]byte, error) { return i.k.SealFor(ctx, jwk, p) })
}

func (i instrumentedKeys) JWKS(ctx context.Context) ([]byte, error) {
	return keyOp(i.m, "jwks", func() ([]byte, error) { return i.k.JWKS(ctx) })
}

func (i instrumentedKeys) KeyRef() string { return i.k.KeyRef() }

var _ Keys = instrumentedKeys{}
