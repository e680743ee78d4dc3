package harness

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/audit/mirror"
	"github.com/clearance-broker/clearance/broker"
	"github.com/clearance-broker/clearance/connectors"
	"github.com/clearance-broker/clearance/connectors/natsregion"
	"github.com/clearance-broker/clearance/connectors/webhook"
	"github.com/clearance-broker/clearance/keys"
	"github.com/clearance-broker/clearance/policy"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/uptrace/bun"
)

// system is what is measured: broker instances or the bare forwarder.
type system interface {
	// start begins consuming the ingest stream.
	start(ctx context.Context) error
	// stop stops consuming and releases everything.
	stop(ctx context.Context)
	// vaultTrips returns Vault round trips so far: the pipeline's key
	// service and the audit logs' checkpoint signers.
	vaultTrips(ctx context.Context) (pipeline, checkpoints uint64, err error)
	// children returns the instances' child processes (none in-process).
	children() *children
}

// subjectKey is the audit HMAC key of the harness (a fixed test value).
var subjectKey = []byte("loadharness-subject-hmac-key-001")

// brokers are k broker instances, each with its own NATS connection, Vault
// clients, audit log connection and connectors, sharing the durable
// consumer, the Postgres schema and the Vault server. Each runs in a child
// process of its own, unless the run is in-process or the instances are
// live (the propagation measurement observes their registry swaps
// in-process).
type brokers struct {
	e *env
	k int
	// live: each instance has its own engine, kept on the registry of the
	// Postgres schema by a policy.Live (always in-process).
	live  bool
	insts []*instance
	procs children
}

type instance struct {
	nc     *nats.Conn
	keys   *keys.Vault
	signer *keys.Vault
	db     *bun.DB
	log    *audit.Log
	mirror *mirror.Publisher
	conns  broker.ConnectorMap
	// closers are the connectors themselves (conns may wrap them).
	closers []connectors.Connector
	b       *broker.Broker
	reg     *prometheus.Registry
	live    *policy.Live
	swaps   *swaps
}

// inChildren says whether the instances run in child processes.
func (s *brokers) inChildren() bool { return !s.live && !s.e.cfg.InProcess }

func (s *brokers) start(ctx context.Context) error {
	if s.inChildren() {
		for i := range s.k {
			spec := s.e.spec(kindBroker, "", fmt.Sprintf("broker %d/%d", i+1, s.k))
			if err := s.procs.spawn(ctx, spec); err != nil {
				s.stop(ctx)
				return err
			}
		}
		return nil
	}
	spec := s.e.spec(kindBroker, "", "")
	engine := agreements.NewEngine(s.e.registry)
	for range s.k {
		eng := engine
		if s.live {
			eng = agreements.NewEngine(s.e.registry)
		}
		in, err := newInstance(ctx, spec, eng, s.e.cfg.Logger)
		if err != nil {
			s.stop(ctx)
			return err
		}
		s.insts = append(s.insts, in)
		if s.live {
			if err := s.e.startLive(ctx, in, eng); err != nil {
				s.stop(ctx)
				return err
			}
		}
	}
	for _, in := range s.insts {
		if err := in.b.Start(ctx); err != nil {
			s.stop(ctx)
			return fmt.Errorf("harness: broker start: %w", err)
		}
	}
	return nil
}

func newVault(ctx context.Context, spec instanceSpec) (*keys.Vault, error) {
	v, err := keys.NewVault(ctx, keys.VaultConfig{
		Address: spec.VaultAddr, Auth: keys.VaultAuth{TokenFile: spec.TokenFile},
	}, nil)
	if err != nil {
		return nil, fmt.Errorf("harness: vault client: %w", err)
	}
	return v, nil
}

// newInstance builds one broker instance from spec (not started), in the
// harness's process or in a child's.
func newInstance(ctx context.Context, spec instanceSpec, engine *agreements.Engine, logger *slog.Logger) (in *instance, err error) {
	in = &instance{conns: broker.ConnectorMap{}}
	defer func() {
		if err != nil {
			in.close(ctx)
		}
	}()
	if in.nc, err = nats.Connect(spec.Ingest, nats.Name("clearance-bench"), nats.MaxReconnects(-1)); err != nil {
		return in, fmt.Errorf("harness: nats: %w", err)
	}
	if in.keys, err = newVault(ctx, spec); err != nil {
		return in, err
	}
	if in.signer, err = newVault(ctx, spec); err != nil {
		return in, err
	}
	dsn := spec.DSN
	if spec.AuditAsyncCommit {
		dsn += "&synchronous_commit=off"
	}
	if in.db, err = audit.OpenDB(ctx, dsn); err != nil {
		return in, fmt.Errorf("harness: audit db: %w", err)
	}
	in.reg = prometheus.NewRegistry()
	metrics := broker.NewMetrics(in.reg)
	js, err := jetstream.New(in.nc)
	if err != nil {
		return in, fmt.Errorf("harness: nats: %w", err)
	}
	// Its checkpoints are mirrored as clearance serve mirrors them.
	in.mirror = mirror.NewPublisher(js, mirror.DefaultStream, logger)
	if in.log, err = audit.Open(ctx, in.db, audit.Options{
		SubjectKey: subjectKey, Signer: in.signer, CheckpointEvery: spec.CheckpointEvery,
		Chains: spec.AuditChains, GatherWindow: spec.AuditGatherWindow, OnCommit: metrics.ObserveAuditBatch,
		OnCheckpoint: in.mirror.Checkpoints,
	}); err != nil {
		return in, fmt.Errorf("harness: audit log: %w", err)
	}
	for _, name := range []string{"region-jp", "region-sg"} {
		cfg := natsregion.DefaultConfig()
		cfg.URLs, cfg.SubjectPrefix, cfg.Stream = []string{spec.Region}, regionPrefix, regionStream
		c, err := natsregion.New(ctx, name, cfg, connectors.Deps{Logger: logger})
		if err != nil {
			return in, fmt.Errorf("harness: %w", err)
		}
		in.conns[name] = c
		in.closers = append(in.closers, c)
	}
	cfg := webhook.DefaultConfig()
	cfg.DefaultURL = spec.PartnerURL
	cfg.TLS.CAFile = spec.PartnerCA
	wh, err := webhook.New("partner-webhook", cfg, connectors.Deps{Logger: logger})
	if err != nil {
		return in, fmt.Errorf("harness: %w", err)
	}
	in.closers = append(in.closers, wh)
	in.conns["partner-webhook"] = broker.RequiresPartyKey(wh)
	in.conns["authority-webhook"] = broker.RequiresPartyKey(wh)
	in.b, err = broker.New(broker.Options{
		NATS: in.nc, Concurrency: spec.Concurrency, Stream: broker.StreamOptions{AckWait: spec.AckWait},
		Decider: engine, Parties: broker.PartiesOf(engine), Keys: in.keys, Audit: in.log,
		Connectors: in.conns, Logger: logger, Registerer: in.reg, Gatherer: in.reg, Metrics: metrics,
	})
	if err != nil {
		return in, fmt.Errorf("harness: %w", err)
	}
	return in, nil
}

func (in *instance) close(ctx context.Context) {
	if in.b != nil {
		_ = in.b.Stop(ctx)
	}
	if in.live != nil {
		in.live.Stop()
	}
	for _, c := range in.closers {
		_ = c.Close(ctx)
	}
	if in.log != nil {
		_ = in.log.Close(ctx)
	}
	if in.mirror != nil {
		_ = in.mirror.Close(ctx)
	}
	if in.db != nil {
		_ = in.db.Close()
	}
	for _, v := range []*keys.Vault{in.keys, in.signer} {
		if v != nil {
			_ = v.Close(ctx)
		}
	}
	if in.nc != nil {
		in.nc.Close()
	}
}

func (s *brokers) stop(ctx context.Context) {
	s.procs.stop()
	var wg sync.WaitGroup
	for _, in := range s.insts {
		wg.Add(1)
		go func() { defer wg.Done(); in.close(ctx) }()
	}
	wg.Wait()
	s.insts = nil
}

// stageSums are the broker's stage histograms (sums, counts and buckets),
// by stage key: what stages averages over instances and takes percentiles
// of.
type stageSums map[string]stageHist

// stageHist is one histogram: the sum and count of its observations, in the
// key's unit, and its buckets' upper bounds with the cumulative count of
// observations at or below each.
type stageHist struct {
	Sum    float64   `json:"sum"`
	Count  float64   `json:"count"`
	Bounds []float64 `json:"bounds,omitempty"`
	Cum    []float64 `json:"cumulative,omitempty"`
}

// add adds the stage histograms of reg.
func (sums stageSums) add(reg prometheus.Gatherer) {
	mfs, err := reg.Gather()
	if err != nil {
		return
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			h := m.GetHistogram()
			if h == nil {
				continue
			}
			key, scale := "", 1.0
			switch mf.GetName() {
			case "clearance_audit_commit_duration_seconds":
				key, scale = "audit_commit_ms", 1000
			case "clearance_stage_duration_seconds", "clearance_key_service_duration_seconds", "clearance_message_duration_seconds":
				for _, l := range m.GetLabel() {
					if l.GetName() == "stage" || l.GetName() == "op" || l.GetName() == "outcome" {
						key = strings.TrimPrefix(strings.TrimSuffix(mf.GetName(), "_duration_seconds"), "clearance_") + ":" + l.GetValue() + "_ms"
					}
				}
				scale = 1000
			case "clearance_audit_batch_size":
				key = "audit_batch_size"
			default:
				continue
			}
			o := stageHist{Sum: h.GetSampleSum() * scale, Count: float64(h.GetSampleCount())}
			for _, b := range h.GetBucket() {
				o.Bounds = append(o.Bounds, b.GetUpperBound()*scale)
				o.Cum = append(o.Cum, float64(b.GetCumulativeCount()))
			}
			sums[key] = sums[key].plus(o, 1)
		}
	}
}

// merge adds o to sums. Histograms of one key have the same buckets in
// every instance (the broker's metrics fix them).
func (sums stageSums) merge(o stageSums) {
	for k, v := range o {
		sums[k] = sums[k].plus(v, 1)
	}
}

// minus returns sums less o: the sums of what was observed since o.
func (sums stageSums) minus(o stageSums) stageSums {
	out := stageSums{}
	for k, v := range sums {
		out[k] = v.plus(o[k], -1)
	}
	return out
}

// plus returns h plus sign times o, bucket by bucket.
func (h stageHist) plus(o stageHist, sign float64) stageHist {
	out := stageHist{Sum: h.Sum + sign*o.Sum, Count: h.Count + sign*o.Count}
	bounds := h.Bounds
	if len(bounds) == 0 {
		bounds = o.Bounds
	}
	out.Bounds = slices.Clone(bounds)
	out.Cum = make([]float64, len(bounds))
	for i := range bounds {
		if i < len(h.Cum) {
			out.Cum[i] += h.Cum[i]
		}
		if i < len(o.Cum) {
			out.Cum[i] += sign * o.Cum[i]
		}
	}
	return out
}

// means returns sum/count of every key with a count.
func (sums stageSums) means() map[string]float64 {
	out := map[string]float64{}
	for k, v := range sums {
		if v.Count > 0 {
			out[k] = v.Sum / v.Count
		}
	}
	return out
}

// quantiles returns, for every key with a count, the upper bound of the
// bucket that holds its q quantile: the q quantile is at most that. A
// quantile above the last bound is given as the last bound, doubled (the
// stage buckets double).
func (sums stageSums) quantiles(q float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range sums {
		if v.Count <= 0 || len(v.Bounds) == 0 {
			continue
		}
		want := q * v.Count
		i := sort.Search(len(v.Cum), func(i int) bool { return v.Cum[i] >= want })
		if i < len(v.Bounds) {
			out[k] = v.Bounds[i]
		} else {
			out[k] = 2 * v.Bounds[len(v.Bounds)-1]
		}
	}
	return out
}

// stages returns the sums behind the mean time per pipeline stage (ms) and
// the mean audit group-commit size over every instance, from the brokers'
// own metrics since they started.
func (s *brokers) stages(ctx context.Context) (stageSums, error) {
	sums := stageSums{}
	for _, in := range s.insts {
		sums.add(in.reg)
	}
	st, err := s.procs.stats(ctx)
	if err != nil {
		return nil, err
	}
	for _, c := range st {
		sums.merge(c.Stages)
	}
	return sums, nil
}

func (s *brokers) vaultTrips(ctx context.Context) (p, c uint64, err error) {
	for _, in := range s.insts {
		p += in.keys.RoundTrips()
		c += in.signer.RoundTrips()
	}
	st, err := s.procs.stats(ctx)
	for _, x := range st {
		p += x.KeyTrips
		c += x.SignerTrips
	}
	return p, c, err
}

func (s *brokers) children() *children { return &s.procs }

var _ system = (*brokers)(nil)
