package harness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Run starts the environment, measures the baseline and the broker for
// every sink and instance count of cfg, and returns the report. It tears
// everything down (the Postgres schema included) before it returns.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg = cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	rep := newReport(cfg)
	e, err := newEnv(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer e.close()
	rep.RegistryVersion, rep.RegistryParties = e.registry.Version(), cfg.RegistryParties
	h := &harness{e: e, cfg: cfg}
	if err := h.observe(); err != nil {
		return nil, err
	}
	defer h.unobserve()
	for _, sink := range cfg.Sinks {
		w, err := newWorkload(sink, cfg.Size)
		if err != nil {
			return nil, err
		}
		reasons, err := w.check(agreementsEngine(e.registry), time.Now())
		if err != nil {
			return nil, err
		}
		rep.addMix(sink, w, reasons)
		n := cfg.N
		if sink == SinkWebhook {
			n = cfg.WebhookN
		}
		for _, k := range cfg.Instances {
			base, err := h.measure(ctx, sink, "baseline", k, n, w, &forwarder{e: e, k: k, sink: sink})
			if err != nil {
				return nil, err
			}
			rep.Runs = append(rep.Runs, base)
			br, err := h.measure(ctx, sink, "broker", k, n, w, &brokers{e: e, k: k})
			if err != nil {
				return nil, err
			}
			br.ratio(base)
			rep.Runs = append(rep.Runs, br)
		}
	}
	rep.finish()
	return rep, nil
}

// harness routes observations to the current measurement.
type harness struct {
	e   *env
	cfg Config
	run int
	cur atomic.Pointer[tracker]
	// viaSink: the current measurement finishes requests when they reach
	// the sink (baseline) rather than by their receipt (broker).
	viaSink atomic.Bool
	subs    []*nats.Subscription
}

// observe subscribes to receipts and to the baseline's destination, and
// hooks the HTTPS partner.
func (h *harness) observe() error {
	rs, err := h.e.nc.Subscribe("clearance.receipts.>", func(m *nats.Msg) {
		var r struct {
			ID     string `json:"request_id"`
			Status string `json:"status"`
		}
		if t := h.cur.Load(); t != nil && !h.viaSink.Load() && json.Unmarshal(m.Data, &r) == nil {
			t.finish(r.ID, r.Status)
		}
	})
	if err != nil {
		return fmt.Errorf("harness: subscribe receipts: %w", err)
	}
	ss, err := h.e.rnc.Subscribe(baselineTarget, func(m *nats.Msg) {
		if t := h.cur.Load(); t != nil && h.viaSink.Load() {
			t.finish(m.Header.Get(jetstream.MsgIDHeader), "forwarded")
		}
	})
	if err != nil {
		return fmt.Errorf("harness: subscribe baseline sink: %w", err)
	}
	h.subs = []*nats.Subscription{rs, ss}
	for _, s := range h.subs {
		_ = s.SetPendingLimits(-1, -1)
	}
	onPartner := func(id string) {
		if t := h.cur.Load(); t != nil && h.viaSink.Load() {
			t.finish(id, "forwarded")
		}
	}
	h.e.onPartner.Store(&onPartner)
	return nil
}

func (h *harness) unobserve() {
	for _, s := range h.subs {
		_ = s.Unsubscribe()
	}
	h.e.onPartner.Store(nil)
}

// measure runs one system: N requests preloaded into the stream and drained
// (throughput, resources, Vault round trips, audit entries), then paced
// runs at fractions of that throughput (latency).
func (h *harness) measure(ctx context.Context, sink, kind string, k, n int, w *workload, sys system) (*Measurement, error) {
	if err := h.e.reset(ctx); err != nil {
		return nil, err
	}
	m := &Measurement{Sink: sink, Kind: kind, Instances: k, Size: w.size, Requests: n,
		Name: fmt.Sprintf("%s/%s-%d", sink, kind, k), Expected: w.expected(n)}
	h.viaSink.Store(kind == "baseline")
	t := h.next(n)
	if err := h.publish(ctx, w, t, n, 0); err != nil {
		return nil, err
	}
	audit0 := h.e.auditEntries(ctx)
	u := startUsage(h.e.vault.pid())
	start := time.Now()
	if err := sys.start(ctx); err != nil {
		u.end()
		return nil, err
	}
	defer sys.stop(context.Background())
	p0, c0 := sys.vaultTrips()
	wctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
	err := t.wait(wctx)
	cancel()
	elapsed := time.Duration(t.lastDone() - start.UnixNano())
	res := u.end()
	p1, c1 := sys.vaultTrips()
	if b, ok := sys.(*brokers); ok {
		m.Stages = b.stages()
	}
	// Let the last audit appends land before counting.
	m.AuditEntries = h.e.auditEntries(ctx) - audit0
	m.account(t, n)
	if err != nil {
		return m, fmt.Errorf("harness: %s: %w", m.Name, err)
	}
	m.Seconds = elapsed.Seconds()
	m.Throughput = float64(n) / m.Seconds
	m.Resources = res
	m.CPUMicrosPerRequest = res.CPUSeconds / float64(n) * 1e6
	m.VaultTrips, m.VaultCheckpointTrips = p1-p0, c1-c0
	m.VaultTripsPer10k = float64(m.VaultTrips) / float64(n) * 10000
	m.VaultAllTripsPer10k = float64(m.VaultTrips+m.VaultCheckpointTrips) / float64(n) * 10000
	m.AuditPerSecond = float64(m.AuditEntries) / m.Seconds
	h.progress("%-22s %7d req in %6.1fs  %8.0f req/s  cpu %5.0f µs/req  rss %4d MiB", m.Name, n, m.Seconds, m.Throughput, m.CPUMicrosPerRequest, res.PeakRSSBytes>>20)
	if h.cfg.NoPaced {
		return m, nil
	}
	for _, f := range h.cfg.Rates {
		rate := f * m.Throughput
		pn := min(n, max(int(rate*h.cfg.PacedDuration.Seconds()), 1))
		t := h.next(pn)
		pstart := time.Now()
		if err := h.publish(ctx, w, t, pn, rate); err != nil {
			return m, err
		}
		pubSecs := time.Since(pstart).Seconds()
		wctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
		err := t.wait(wctx)
		cancel()
		p := Paced{Fraction: f, TargetRate: rate, AchievedRate: float64(pn) / pubSecs, Requests: pn, Latency: t.latency(),
			Missing: int(t.left.Load()), Duplicates: int(t.dups.Load())}
		m.Paced = append(m.Paced, p)
		if err != nil {
			return m, fmt.Errorf("harness: %s paced %.0f%%: %w", m.Name, f*100, err)
		}
		h.progress("%-22s   at %3.0f%% (%6.0f req/s): p50 %6.1f ms  p99 %7.1f ms  p99.9 %7.1f ms", m.Name, f*100, p.AchievedRate, p.Latency.P50, p.Latency.P99, p.Latency.P999)
	}
	return m, nil
}

// next starts a new measurement's tracker.
func (h *harness) next(n int) *tracker {
	h.run++
	t := newTracker(h.run, n)
	h.cur.Store(t)
	return t
}

// publish publishes n requests of w into the ingest stream, as fast as the
// stream acknowledges them (rate 0) or paced at rate per second, and waits
// for every acknowledgement.
func (h *harness) publish(ctx context.Context, w *workload, t *tracker, n int, rate float64) error {
	rng := rand.New(rand.NewPCG(uint64(t.run), 7))
	failed0 := h.e.pubErrs.Load()
	var buf []byte
	start := time.Now()
	for i := range n {
		if rate > 0 {
			due := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
			if d := time.Until(due); d > 200*time.Microsecond {
				time.Sleep(d)
			}
		}
		tpl, id, body := w.request(t.run, i, rng, buf)
		msg := nats.NewMsg("clearance.transfers." + tpl.source)
		msg.Data = append([]byte(nil), body...)
		buf = body
		msg.Header.Set(jetstream.MsgIDHeader, id)
		t.sentAt(i, time.Now().UnixNano())
		if _, err := h.e.js.PublishMsgAsync(msg); err != nil {
			return fmt.Errorf("harness: publish: %w", err)
		}
	}
	select {
	case <-h.e.js.PublishAsyncComplete():
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(2 * time.Minute):
		return errors.New("harness: publish: acknowledgements missing after 2 minutes")
	}
	if f := h.e.pubErrs.Load() - failed0; f > 0 {
		return fmt.Errorf("harness: publish: %d of %d requests not stored", f, n)
	}
	return nil
}

func (h *harness) progress(format string, args ...any) {
	if h.cfg.Progress != nil {
		fmt.Fprintf(h.cfg.Progress, format+"\n", args...)
	}
}

func agreementsEngine(r *agreements.Registry) *agreements.Engine { return agreements.NewEngine(r) }
