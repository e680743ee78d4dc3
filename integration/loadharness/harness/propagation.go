package harness

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/policy"
)

// propagationTarget is issue 7's bound on a registry change reaching every
// instance (p99).
const propagationTarget = time.Second

// probeSubject is the data subject whose consent the propagation
// measurement records and withdraws; the workload never names it.
const probeSubject = "loadharness-probe"

// Propagation is how long a registry change applied on one broker instance
// took to be in force on each instance, measured while the instances work
// through a load.
type Propagation struct {
	Sink      string `json:"sink"`
	Instances int    `json:"instances"`
	// Changes is how many changes were applied (alternately a consent and
	// its withdrawal), all through instance 0.
	Changes int `json:"changes"`
	// UnderLoad counts the changes applied while requests were waiting.
	UnderLoad int `json:"changes_under_load"`
	// Confirmed counts the changes whose Change call returned with every
	// instance confirming it in force (policy's confirmation mechanism).
	Confirmed int `json:"changes_confirmed_everywhere"`
	// Requests is the load the instances decided meanwhile.
	Requests int `json:"requests"`
	// PerInstance is the time from the Change call on instance 0 to the
	// change being in force on each instance (policy.Options.OnSwap).
	PerInstance []Latency `json:"per_instance"`
	// P99 is the largest per-instance p99 (ms); Met: P99 <= 1000 ms.
	P99 float64 `json:"p99_ms"`
	Met bool    `json:"met"`
}

// swaps records when an instance put each registry event in force.
type swaps struct {
	mu sync.Mutex
	at map[int64]time.Time
}

func (s *swaps) record(ev policy.Event) {
	now := time.Now()
	s.mu.Lock()
	s.at[ev.Seq] = now
	s.mu.Unlock()
}

// wait returns when event seq was put in force, polling up to limit.
func (s *swaps) wait(seq int64, limit time.Duration) (time.Time, bool) {
	deadline := time.Now().Add(limit)
	for {
		s.mu.Lock()
		at, ok := s.at[seq]
		s.mu.Unlock()
		if ok || time.Now().After(deadline) {
			return at, ok
		}
		time.Sleep(time.Millisecond)
	}
}

// startLive keeps in's engine on the registry of the harness's Postgres
// schema through a policy.Live on the ingest NATS server; the first
// instance stores the harness registry when the schema holds none yet.
func (e *env) startLive(ctx context.Context, in *instance, engine *agreements.Engine) error {
	store, err := policy.OpenStore(ctx, in.db)
	if err != nil {
		return fmt.Errorf("harness: policy store: %w", err)
	}
	in.swaps = &swaps{at: map[int64]time.Time{}}
	if in.live, err = policy.Start(ctx, policy.Options{
		Store: store, Engine: engine, NATS: in.nc, Audit: in.log, Bucket: e.schema,
		Logger: e.cfg.Logger, OnSwap: in.swaps.record,
	}); err != nil {
		return fmt.Errorf("harness: %w", err)
	}
	if in.live.Seq() == 0 {
		if _, _, err := in.live.Apply(ctx, e.registry); err != nil {
			return fmt.Errorf("harness: apply registry: %w", err)
		}
	}
	return nil
}

// propagation starts k broker instances on policy.Live, keeps them loaded
// with rounds of n requests of w, and applies cfg.Propagation changes
// through instance 0, timing each until it is in force on every instance.
func (h *harness) propagation(ctx context.Context, sink string, k, n int, w *workload) (*Propagation, error) {
	if err := h.e.reset(ctx); err != nil {
		return nil, err
	}
	h.viaSink.Store(false)
	sys := &brokers{e: h.e, k: k, live: true}
	if err := sys.start(ctx); err != nil {
		return nil, err
	}
	defer sys.stop(context.Background())
	p := &Propagation{Sink: sink, Instances: k}
	done := make(chan struct{})
	loadErr := make(chan error, 1)
	started := make(chan struct{})
	go func() {
		var err error
		for first := true; err == nil; first = false {
			t := h.next(n)
			if first {
				close(started)
			}
			if err = h.publish(ctx, w, t, 0, n, 0); err == nil {
				wctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
				err = t.wait(wctx)
				cancel()
				p.Requests += n
			}
			select {
			case <-done:
				loadErr <- err
				return
			default:
			}
		}
		loadErr <- err
	}()
	<-started
	time.Sleep(200 * time.Millisecond) // the instances are busy
	lags := make([][]time.Duration, k)
	err := h.changes(ctx, sys, p, lags)
	close(done)
	if lerr := <-loadErr; err == nil && lerr != nil {
		err = fmt.Errorf("harness: propagation load: %w", lerr)
	}
	for _, l := range lags {
		p.PerInstance = append(p.PerInstance, summarise(l))
		p.P99 = max(p.P99, p.PerInstance[len(p.PerInstance)-1].P99)
	}
	p.Met = p.Changes > 0 && p.P99 <= float64(propagationTarget.Milliseconds())
	h.progress("propagation %s-%d: %d changes (%d under load, %d confirmed everywhere): p99 %.1f ms", sink, k, p.Changes, p.UnderLoad, p.Confirmed, p.P99)
	return p, err
}

// changes applies the changes and records, per instance, the time until
// each was in force there.
func (h *harness) changes(ctx context.Context, sys *brokers, p *Propagation, lags [][]time.Duration) error {
	from := sys.insts[0].live
	for i := range h.cfg.Propagation {
		var ch agreements.Change
		start := time.Now()
		if i%2 == 0 {
			ch.Consents = []agreements.Consent{{Subject: probeSubject, Purpose: "marketing", GrantedAt: start.Add(-time.Second)}}
		} else {
			ch.Withdrawals = []agreements.Withdrawal{{Subject: probeSubject, Purpose: "marketing", At: start}}
		}
		if t := h.cur.Load(); t != nil && t.left.Load() > 0 {
			p.UnderLoad++
		}
		ev, err := from.Change(ctx, ch)
		if err != nil {
			return fmt.Errorf("harness: propagation change %d: %w", i, err)
		}
		p.Changes++
		if len(ev.Sync.Unconfirmed) == 0 && ev.Sync.Confirmed == len(sys.insts) {
			p.Confirmed++
		}
		for j, in := range sys.insts {
			if at, ok := in.swaps.wait(ev.Seq, 10*time.Second); ok {
				lags[j] = append(lags[j], at.Sub(start))
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// summarise returns the distribution of ds (count, p50, p99, max in ms).
func summarise(ds []time.Duration) Latency {
	if len(ds) == 0 {
		return Latency{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	q := func(p float64) float64 {
		k := int(p*float64(len(s))+0.5) - 1
		return float64(s[min(max(k, 0), len(s)-1)]) / 1e6
	}
	return Latency{Count: len(s), P50: q(0.5), P99: q(0.99), P999: q(0.999), Max: float64(s[len(s)-1]) / 1e6}
}
