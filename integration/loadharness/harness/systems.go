package harness

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/broker"
	"github.com/clearance-broker/clearance/connectors"
	"github.com/clearance-broker/clearance/connectors/natsregion"
	"github.com/clearance-broker/clearance/connectors/webhook"
	"github.com/clearance-broker/clearance/keys"
	"github.com/clearance-broker/clearance/policy"
	"github.com/nats-io/nats.go"
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
	vaultTrips() (pipeline, checkpoints uint64)
}

// subjectKey is the audit HMAC key of the harness (a fixed test value).
var subjectKey = []byte("loadharness-subject-hmac-key-001")

// brokers are k in-process broker instances, each with its own NATS
// connection, Vault clients, audit log connection and connectors, sharing
// the durable consumer, the Postgres schema and the Vault server.
type brokers struct {
	e *env
	k int
	// live: each instance has its own engine, kept on the registry of the
	// Postgres schema by a policy.Live.
	live  bool
	insts []*instance
}

type instance struct {
	nc     *nats.Conn
	keys   *keys.Vault
	signer *keys.Vault
	db     *bun.DB
	log    *audit.Log
	conns  broker.ConnectorMap
	// closers are the connectors themselves (conns may wrap them).
	closers []connectors.Connector
	b       *broker.Broker
	reg     *prometheus.Registry
	live    *policy.Live
	swaps   *swaps
}

func (s *brokers) start(ctx context.Context) error {
	engine := agreements.NewEngine(s.e.registry)
	for range s.k {
		eng := engine
		if s.live {
			eng = agreements.NewEngine(s.e.registry)
		}
		in, err := s.e.newInstance(ctx, eng)
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

func (e *env) newVault(ctx context.Context) (*keys.Vault, error) {
	v, err := keys.NewVault(ctx, keys.VaultConfig{
		Address: e.vault.addr, Auth: keys.VaultAuth{TokenFile: e.tokenFile},
	}, nil)
	if err != nil {
		return nil, fmt.Errorf("harness: vault client: %w", err)
	}
	return v, nil
}

func (e *env) newInstance(ctx context.Context, engine *agreements.Engine) (in *instance, err error) {
	in = &instance{conns: broker.ConnectorMap{}}
	defer func() {
		if err != nil {
			in.close(ctx)
		}
	}()
	if in.nc, err = nats.Connect(e.ingest, nats.Name("clearance-bench"), nats.MaxReconnects(-1)); err != nil {
		return in, fmt.Errorf("harness: nats: %w", err)
	}
	if in.keys, err = e.newVault(ctx); err != nil {
		return in, err
	}
	if in.signer, err = e.newVault(ctx); err != nil {
		return in, err
	}
	dsn := e.dsn
	if e.cfg.AuditAsyncCommit {
		dsn += "&synchronous_commit=off"
	}
	if in.db, err = audit.OpenDB(ctx, dsn); err != nil {
		return in, fmt.Errorf("harness: audit db: %w", err)
	}
	in.reg = prometheus.NewRegistry()
	metrics := broker.NewMetrics(in.reg)
	if in.log, err = audit.Open(ctx, in.db, audit.Options{
		SubjectKey: subjectKey, Signer: in.signer, CheckpointEvery: e.cfg.CheckpointEvery,
		OnCommit: metrics.ObserveAuditBatch,
	}); err != nil {
		return in, fmt.Errorf("harness: audit log: %w", err)
	}
	for _, name := range []string{"region-jp", "region-sg"} {
		cfg := natsregion.DefaultConfig()
		cfg.URLs, cfg.SubjectPrefix, cfg.Stream = []string{e.region}, regionPrefix, regionStream
		c, err := natsregion.New(ctx, name, cfg, connectors.Deps{Logger: e.cfg.Logger})
		if err != nil {
			return in, fmt.Errorf("harness: %w", err)
		}
		in.conns[name] = c
		in.closers = append(in.closers, c)
	}
	cfg := webhook.DefaultConfig()
	cfg.DefaultURL = e.partner.URL
	cfg.TLS.CAFile = e.partnerCA
	wh, err := webhook.New("partner-webhook", cfg, connectors.Deps{Logger: e.cfg.Logger})
	if err != nil {
		return in, fmt.Errorf("harness: %w", err)
	}
	in.closers = append(in.closers, wh)
	in.conns["partner-webhook"] = broker.RequiresPartyKey(wh)
	in.conns["authority-webhook"] = broker.RequiresPartyKey(wh)
	in.b, err = broker.New(broker.Options{
		NATS: in.nc, Concurrency: e.cfg.Concurrency, Stream: broker.StreamOptions{AckWait: e.cfg.AckWait},
		Decider: engine, Parties: broker.PartiesOf(engine), Keys: in.keys, Audit: in.log,
		Connectors: in.conns, Logger: e.cfg.Logger, Registerer: in.reg, Gatherer: in.reg, Metrics: metrics,
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
	var wg sync.WaitGroup
	for _, in := range s.insts {
		wg.Add(1)
		go func() { defer wg.Done(); in.close(ctx) }()
	}
	wg.Wait()
	s.insts = nil
}

// stages returns the mean time per pipeline stage (ms) and the mean audit
// group-commit size over every instance, from the brokers' own metrics.
func (s *brokers) stages() map[string]float64 {
	sum, count := map[string]float64{}, map[string]float64{}
	for _, in := range s.insts {
		mfs, err := in.reg.Gather()
		if err != nil {
			continue
		}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				h := m.GetHistogram()
				if h == nil {
					continue
				}
				key := ""
				switch mf.GetName() {
				case "clearance_stage_duration_seconds", "clearance_key_service_duration_seconds", "clearance_message_duration_seconds":
					for _, l := range m.GetLabel() {
						if l.GetName() == "stage" || l.GetName() == "op" || l.GetName() == "outcome" {
							key = strings.TrimPrefix(strings.TrimSuffix(mf.GetName(), "_duration_seconds"), "clearance_") + ":" + l.GetValue() + "_ms"
						}
					}
					sum[key] += h.GetSampleSum() * 1000
				case "clearance_audit_batch_size":
					key = "audit_batch_size"
					sum[key] += h.GetSampleSum()
				default:
					continue
				}
				count[key] += float64(h.GetSampleCount())
			}
		}
	}
	out := map[string]float64{}
	for k, v := range sum {
		if count[k] > 0 {
			out[k] = v / count[k]
		}
	}
	return out
}

func (s *brokers) vaultTrips() (p, c uint64) {
	for _, in := range s.insts {
		p += in.keys.RoundTrips()
		c += in.signer.RoundTrips()
	}
	return p, c
}

var _ system = (*brokers)(nil)
