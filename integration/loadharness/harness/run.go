package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
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
	defer quietGC(cfg)()
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
	h.prefault()
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
			base, br, err := h.pair(ctx, sink, k, n, w)
			if base != nil {
				rep.Runs = append(rep.Runs, base, br)
			}
			if err != nil {
				rep.finish()
				return rep, err
			}
		}
		if cfg.Propagation > 0 && sink == cfg.Sinks[0] {
			p, err := h.propagation(ctx, sink, slices.Max(cfg.Instances), n, w)
			rep.Propagation = p
			if err != nil {
				rep.finish()
				return rep, err
			}
		}
	}
	rep.finish()
	return rep, nil
}

// prefault touches cfg.Prefault bytes of fresh heap and frees them, so
// that the harness's heap has its size before anything is measured. Its
// collector runs only near the heap limit, so the heap grew in the first
// measurement to what one measurement leaves, a new page at a time, and on
// this machine a page touched for the first time cost about 11 µs: the
// first baseline ran a quarter to a half slower than the same measurement
// later, which raised the broker's ratio (finding 61). Later measurements
// reuse the freed memory.
func (h *harness) prefault() {
	if h.cfg.Prefault <= 0 {
		return
	}
	start := time.Now()
	b := make([]byte, h.cfg.Prefault)
	for i := 0; i < len(b); i += os.Getpagesize() {
		b[i] = 1
	}
	runtime.GC()
	h.progress("heap prefaulted: %d MiB in %.1fs (not measured)", h.cfg.Prefault>>20, time.Since(start).Seconds())
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

// quietGC sets the harness process's garbage collector to run only near
// cfg.HarnessHeapLimit, and returns what puts back the collector's
// settings as they were.
func quietGC(cfg Config) (restore func()) {
	if !cfg.quietGC() {
		return func() {}
	}
	pct := debug.SetGCPercent(-1)
	limit := debug.SetMemoryLimit(cfg.HarnessHeapLimit)
	return func() {
		debug.SetMemoryLimit(limit)
		debug.SetGCPercent(pct)
	}
}

// observe subscribes to receipts and to the baseline's destination, and
// hooks the HTTPS partner.
func (h *harness) observe() error {
	rs, err := h.e.nc.Subscribe("clearance.receipts.>", func(m *nats.Msg) {
		if t := h.cur.Load(); t != nil && !h.viaSink.Load() {
			if id, status, ok := receiptFields(m.Data); ok {
				t.finish(id, status)
			}
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

// pair measures the baseline and the broker with k instances on a sink:
// their throughput in alternating rounds (baseline, broker, baseline, ...)
// so that both see the same machine load, then their latency.
func (h *harness) pair(ctx context.Context, sink string, k, n int, w *workload) (base, br *Measurement, err error) {
	newM := func(kind string) *Measurement {
		return &Measurement{Sink: sink, Kind: kind, Instances: k, Size: w.size, Requests: n,
			Name: fmt.Sprintf("%s/%s-%d", sink, kind, k), Expected: map[Class]int{}, Outcomes: map[string]int{}}
	}
	base, br = newM("baseline"), newM("broker")
	systems := map[*Measurement]func() system{
		base: func() system { return &forwarder{e: h.e, k: k, sink: sink} },
		br:   func() system { return &brokers{e: h.e, k: k} },
	}
	if !h.cfg.KeepAudit {
		if err := h.e.emptySchema(ctx); err != nil {
			return base, br, err
		}
	}
	rounds := min(h.cfg.Rounds, n)
	for r := range rounds {
		rn := n / rounds
		if r < n%rounds {
			rn++
		}
		for _, m := range []*Measurement{base, br} {
			if err := h.throughput(ctx, m, systems[m](), w, rn); err != nil {
				return base, br, err
			}
		}
	}
	for _, m := range []*Measurement{base, br} {
		m.summarise()
		inst := "instances in-process"
		if len(m.Resources.PerInstance) > 0 {
			inst = fmt.Sprintf("instances cpu %5.0f µs/req, rss %4d MiB", m.InstancesCPUMicrosPerRequest, m.Resources.InstancePeakRSSBytes>>20)
		}
		h.progress("%-22s %7d req in %6.1fs  %8.0f req/s  %s  process cpu %5.0f µs/req, rss %4d MiB, new %4d MiB  postgres %4.0f µs/req  machine %4.0f µs/req, %3.0f%% busy",
			m.Name, n, m.Seconds, m.Throughput, inst, m.CPUMicrosPerRequest, m.Resources.PeakRSSBytes>>20, m.NewMemoryBytes>>20,
			m.PostgresCPUMicrosPerRequest, m.MachineCPUMicrosPerRequest, m.MachineBusy*100)
	}
	br.ratio(base)
	if h.cfg.NoPaced {
		return base, br, nil
	}
	for _, m := range []*Measurement{base, br} {
		if err := h.latency(ctx, m, systems[m](), w); err != nil {
			return base, br, err
		}
	}
	return base, br, nil
}

// throughput runs one round of n requests through sys, which it starts and
// stops: the requests are published as fast as the stream takes them while
// sys consumes. Figures add up in m.
func (h *harness) throughput(ctx context.Context, m *Measurement, sys system, w *workload, n int) error {
	if err := h.e.reset(ctx); err != nil {
		return err
	}
	h.viaSink.Store(m.Kind == "baseline")
	t := h.next(n)
	audit0 := h.e.auditEntries(ctx)
	if err := sys.start(ctx); err != nil {
		return err
	}
	defer sys.stop(context.Background())
	p0, c0, err := sys.vaultTrips(ctx)
	if err != nil {
		return err
	}
	u, err := startUsage(ctx, h.e.vault.Pid(), sys.children())
	if err != nil {
		return err
	}
	start := time.Now()
	if err := h.publish(ctx, w, t, 0, n, 0); err != nil {
		_, _ = u.end(ctx)
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
	err = t.wait(wctx)
	cancel()
	elapsed := time.Duration(t.lastDone() - start.UnixNano())
	res, uerr := u.end(ctx)
	p1, c1, terr := sys.vaultTrips(ctx)
	if b, ok := sys.(*brokers); ok {
		stages, serr := b.stages(ctx)
		m.Stages, terr = stages.means(), errors.Join(terr, serr)
	}
	if err == nil {
		err = errors.Join(uerr, terr)
	}
	m.AuditEntries += h.e.auditEntries(ctx) - audit0
	m.add(t, n, w)
	if err != nil {
		return fmt.Errorf("harness: %s: %w", m.Name, err)
	}
	m.Seconds += elapsed.Seconds()
	m.Resources.add(res)
	m.VaultTrips += p1 - p0
	m.VaultCheckpointTrips += c1 - c0
	m.Rounds++
	return nil
}

// latency starts sys and publishes at each fraction of m's throughput.
func (h *harness) latency(ctx context.Context, m *Measurement, sys system, w *workload) error {
	if err := h.e.reset(ctx); err != nil {
		return err
	}
	h.viaSink.Store(m.Kind == "baseline")
	if err := sys.start(ctx); err != nil {
		return err
	}
	defer sys.stop(context.Background())
	for _, f := range h.cfg.Rates {
		rate := f * m.Throughput
		pn := min(m.Requests, max(int(rate*h.cfg.PacedDuration.Seconds()), 1))
		wn := max(int(rate*h.cfg.Warmup.Seconds()), 0)
		var ckFirstMS float64
		var ckFirstErr error
		if !h.cfg.NoPostgresCheckpoint {
			if ckFirstMS, ckFirstErr = h.e.checkpoint(ctx); ckFirstErr != nil && ctx.Err() != nil {
				return ckFirstErr
			}
		}
		t := h.next(wn + pn)
		// The warm-up runs straight into the measured requests, at the
		// same rate: a pause between them would let the instances idle.
		if err := h.publish(ctx, w, t, 0, wn, rate); err != nil {
			return err
		}
		pu, err := startUsage(ctx, h.e.vault.Pid(), sys.children())
		if err != nil {
			return err
		}
		b, _ := sys.(*brokers)
		var stages0 stageSums
		if b != nil {
			if stages0, err = b.stages(ctx); err != nil {
				return err
			}
		}
		ck0, err := h.e.checkpoints(ctx)
		if err != nil {
			return err
		}
		cs := startContentionSampler(sys.children().pids(), h.e.vault.Pid())
		pstart := time.Now()
		if err := h.publish(ctx, w, t, wn, wn+pn, rate); err != nil {
			cs.end()
			return err
		}
		pubSecs := time.Since(pstart).Seconds()
		wctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
		err = t.wait(wctx)
		cancel()
		pend := time.Now()
		samples := cs.end()
		pres, uerr := pu.end(ctx)
		if err == nil {
			err = uerr
		}
		ck1, cerr := h.e.checkpoints(ctx)
		if err == nil {
			err = cerr
		}
		started := t.firstSent(wn, wn+pn)
		p := Paced{Resources: pres, Fraction: f, TargetRate: rate, AchievedRate: float64(pn) / pubSecs, Requests: pn, Latency: t.latency(wn, wn+pn),
			Windows: t.windows(wn, wn+pn, started, windowWidth), Started: started.UTC(), WarmupRequests: wn, WarmupLatency: t.latency(0, wn), Missing: int(t.left.Load()), Duplicates: int(t.dups.Load()),
			PostgresCheckpoints: ck1.began - ck0.began, PostgresCheckpointSyncMS: ck1.syncMS - ck0.syncMS,
			PostgresWALBytes: ck1.wal - ck0.wal, CheckpointFirstMS: ckFirstMS}
		if ckFirstErr != nil {
			p.CheckpointFirstError = ckFirstErr.Error()
		}
		addContention(&p, samples, started, pstart, pend)
		if b != nil && err == nil {
			stages1, serr := b.stages(ctx)
			d := stages1.minus(stages0)
			p.Stages, p.StagesP99, err = d.means(), d.quantiles(0.99), serr
		}
		m.Paced = append(m.Paced, p)
		if err != nil {
			return fmt.Errorf("harness: %s paced %.0f%%: %w", m.Name, f*100, err)
		}
		inst := ""
		if len(pres.PerInstance) > 0 {
			inst = fmt.Sprintf("  instance rss %4d MiB", pres.InstancePeakRSSBytes>>20)
		}
		if p.Stages != nil {
			inst += fmt.Sprintf("  audit append %.1f ms (p99 ≤ %.1f, batch %.0f committed in %.1f ms), deliver %.1f ms (p99 ≤ %.1f)",
				p.Stages["stage:audit_ms"], p.StagesP99["stage:audit_ms"], p.Stages["audit_batch_size"], p.Stages["audit_commit_ms"],
				p.Stages["stage:deliver_ms"], p.StagesP99["stage:deliver_ms"])
		}
		if w := worstWindow(p.Windows); w.Count > 0 {
			inst += fmt.Sprintf("  worst 100 ms: p50 %.1f ms at %.1f s", w.P50, w.StartMS/1000)
			if ws := p.WorstContention; ws != nil {
				inst += " (until its median answer: " + ws.String() + ")"
			}
		}
		if wn > 0 {
			inst += fmt.Sprintf("  (warm-up: p50 %.1f ms, p99 %.1f ms)", p.WarmupLatency.P50, p.WarmupLatency.P99)
		}
		inst += fmt.Sprintf("  postgres wal %d MiB", p.PostgresWALBytes>>20)
		if p.PostgresCheckpoints > 0 || p.PostgresCheckpointSyncMS > 0 {
			inst += fmt.Sprintf(", checkpoints begun %d, data-file fsync %.0f ms", p.PostgresCheckpoints, p.PostgresCheckpointSyncMS)
		}
		switch {
		case p.CheckpointFirstError != "":
			inst += " (no checkpoint before it: " + p.CheckpointFirstError + ")"
		case !h.cfg.NoPostgresCheckpoint:
			inst += fmt.Sprintf(" (after a checkpoint of %.0f ms)", p.CheckpointFirstMS)
		}
		h.progress("%-22s   at %3.0f%% (%6.0f req/s): p50 %6.1f ms  p99 %7.1f ms  p99.9 %7.1f ms  process rss %4d MiB%s", m.Name, f*100, p.AchievedRate, p.Latency.P50, p.Latency.P99, p.Latency.P999, pres.PeakRSSBytes>>20, inst)
	}
	return nil
}

// next starts a new measurement's tracker.
func (h *harness) next(n int) *tracker {
	h.run++
	if h.cfg.quietGC() {
		// The last measurement's garbage goes now, not in this one.
		runtime.GC()
	}
	t := newTracker(h.run, n)
	h.cur.Store(t)
	return t
}

// publish publishes requests from to to (exclusive) of t's measurement,
// drawn from w, into the ingest stream, as fast as the stream acknowledges
// them (rate 0) or paced at rate per second, and waits for every
// acknowledgement.
func (h *harness) publish(ctx context.Context, w *workload, t *tracker, from, to int, rate float64) error {
	rng := rand.New(rand.NewPCG(uint64(t.run), 7+uint64(from)))
	failed0 := h.e.pubErrs.Load()
	var buf []byte
	start := time.Now()
	for i := from; i < to; i++ {
		if i%1024 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		if rate > 0 {
			due := start.Add(time.Duration(float64(i-from) / rate * float64(time.Second)))
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
		if _, err := h.e.js.PublishMsgAsync(msg, jetstream.WithStallWait(time.Minute)); err != nil {
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
		return fmt.Errorf("harness: publish: %d of %d requests not stored", f, to-from)
	}
	return nil
}

func (h *harness) progress(format string, args ...any) {
	if h.cfg.Progress != nil {
		fmt.Fprintf(h.cfg.Progress, format+"\n", args...)
	}
}

func agreementsEngine(r *agreements.Registry) *agreements.Engine { return agreements.NewEngine(r) }

// receiptFields returns a receipt's request id and status. The harness
// reads one receipt per request while the broker runs on the same cores, so
// it looks the two plain string values up rather than decoding the whole
// receipt (about 1.5 µs a receipt); a value with an escape in it, or a
// receipt it cannot read so, is decoded with encoding/json.
func receiptFields(data []byte) (id, status string, ok bool) {
	id, idOK := plainString(data, `"request_id":"`)
	status, stOK := plainString(data, `"status":"`)
	if idOK && stOK {
		return id, status, true
	}
	var r struct {
		ID     string `json:"request_id"`
		Status string `json:"status"`
	}
	if json.Unmarshal(data, &r) != nil {
		return "", "", false
	}
	return r.ID, r.Status, true
}

// plainString returns the string value that follows key in data, if it has
// no escape in it.
func plainString(data []byte, key string) (string, bool) {
	i := bytes.Index(data, []byte(key))
	if i < 0 {
		return "", false
	}
	v := data[i+len(key):]
	j := bytes.IndexByte(v, '"')
	if j < 0 || bytes.IndexByte(v[:j], '\\') >= 0 {
		return "", false
	}
	return string(v[:j]), true
}
