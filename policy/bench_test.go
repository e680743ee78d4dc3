package policy_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/broker/brokertest"
	"github.com/nats-io/nats.go/jetstream"
)

// BenchmarkPropagation measures how long a registry change made on one
// instance takes to be in force on another (stored in Postgres, audited,
// published, read back from the store and derived), against the bare
// baseline of a NATS KV put reaching a watcher on the same server, measured
// in the same run. It reports remote_ms/op (the change in force on the
// other instance) and x_baseline (the ratio).
func BenchmarkPropagation(b *testing.B) {
	srv := brokertest.StartNATS(b)
	e := newEnv(b, brokertest.PostgresDSN(b))
	dir := registryDir(b)
	a := e.start(b, brokertest.Connect(b, srv), load(b, dir))
	o := e.start(b, brokertest.Connect(b, srv), load(b, dir))
	if _, _, err := a.live.Apply(b.Context(), load(b, dir)); err != nil {
		b.Fatal(err)
	}

	js, _ := jetstream.New(brokertest.Connect(b, srv))
	kv, err := js.CreateKeyValue(b.Context(), jetstream.KeyValueConfig{Bucket: "baseline"})
	if err != nil {
		b.Fatal(err)
	}
	w, err := kv.Watch(b.Context(), ">", jetstream.UpdatesOnly())
	if err != nil {
		b.Fatal(err)
	}
	defer w.Stop()
	var base time.Duration
	b.Run("baseline_kv_put_to_watcher", func(b *testing.B) {
		start := time.Now()
		for i := 0; b.Loop(); i++ {
			if _, err := kv.Put(b.Context(), fmt.Sprintf("k.%d", i), []byte("x")); err != nil {
				b.Fatal(err)
			}
			<-w.Updates()
		}
		base = time.Since(start) / time.Duration(b.N)
	})
	b.Run("change_in_force_on_other_instance", func(b *testing.B) { changeInForce(b, a, o, base) })

	// The same with 100,000 consents in the registry, as a shop recording
	// its customers' consents gathers: a change must not cost with the
	// registry's size (agreements/people.go).
	reg := withConsents(b, load(b, dir), 100_000)
	// A server of their own: instances on one KV bucket wait for each other.
	lsrv := brokertest.StartNATS(b)
	el := newEnv(b, brokertest.PostgresDSN(b))
	la := el.start(b, brokertest.Connect(b, lsrv), reg)
	lo := el.start(b, brokertest.Connect(b, lsrv), reg)
	if _, _, err := la.live.Apply(b.Context(), reg); err != nil {
		b.Fatal(err)
	}
	b.Run("change_in_force_on_other_instance_100k_consents", func(b *testing.B) { changeInForce(b, la, lo, base) })
}

// changeInForce makes consent changes on a and reports how long each took
// to be in force on o (remote_ms/op), and that as a multiple of base.
func changeInForce(b *testing.B, a, o *node, base time.Duration) {
	var total time.Duration
	for i := 0; b.Loop(); i++ {
		start := time.Now()
		ev, err := a.live.Change(b.Context(), agreements.Change{Consents: []agreements.Consent{{
			Subject: fmt.Sprintf("bench-%d-%d", b.N, i), Purpose: "marketing", GrantedAt: at}}})
		if err != nil {
			b.Fatal(err)
		}
		swapped, ok := o.swapAt(ev.Seq)
		if !ok {
			b.Fatal("not in force on the other instance when Change returned")
		}
		total += swapped.Sub(start)
	}
	per := total / time.Duration(b.N)
	b.ReportMetric(float64(per)/float64(time.Millisecond), "remote_ms/op")
	if base > 0 {
		b.ReportMetric(float64(per)/float64(base), "x_baseline")
	}
}

// BenchmarkStart measures how long an instance takes to start on a store
// of 100,000 consents applied and 2,000 run-time changes since: replaying
// every event (the baseline, and what a store without a snapshot costs)
// against resuming from the snapshot stored after the last change,
// measured in the same run. It reports start_ms/op and, for the snapshot,
// x_replay (its time over the replay's).
func BenchmarkStart(b *testing.B) {
	srv := brokertest.StartNATS(b)
	e := newEnv(b, brokertest.PostgresDSN(b))
	e.snapshotEvery = -1
	dir := registryDir(b)
	reg := withConsents(b, load(b, dir), 100_000)
	w := e.start(b, brokertest.Connect(b, srv), reg)
	if _, _, err := w.live.Apply(b.Context(), reg); err != nil {
		b.Fatal(err)
	}
	const changes = 2_000
	for i := range changes {
		if _, err := w.live.Change(b.Context(), agreements.Change{Consents: []agreements.Consent{{
			Subject: fmt.Sprintf("cust-start-%d", i), Purpose: "marketing", GrantedAt: at}}}); err != nil {
			b.Fatal(err)
		}
	}
	want := w.engine.Registry().Version()
	start := func(b *testing.B) time.Duration {
		var total time.Duration
		for b.Loop() {
			t0 := time.Now()
			n := e.start(b, brokertest.Connect(b, srv), reg)
			total += time.Since(t0)
			if got := n.engine.Registry().Version(); got != want {
				b.Fatalf("started on %s, want %s", got, want)
			}
			n.live.Stop()
		}
		per := total / time.Duration(b.N)
		b.ReportMetric(float64(per)/float64(time.Millisecond), "start_ms/op")
		return per
	}
	var replay time.Duration
	b.Run("replay_every_event", func(b *testing.B) { replay = start(b) })

	// An instance that snapshots stores one after catching up.
	e.snapshotEvery = changes
	e.start(b, brokertest.Connect(b, srv), reg).live.Stop()
	e.snapshotEvery = -1
	b.Run("from_snapshot", func(b *testing.B) {
		if per := start(b); replay > 0 {
			b.ReportMetric(float64(per)/float64(replay), "x_replay")
		}
	})
}

// withConsents returns reg with n more consents to marketing, one per
// customer, as a shop recording its customers' consents gathers.
func withConsents(b *testing.B, reg *agreements.Registry, n int) *agreements.Registry {
	b.Helper()
	c := reg.Content()
	for i := range n {
		c.Consents = append(c.Consents, agreements.Consent{Subject: fmt.Sprintf("cust-bench-%d", i), Purpose: "marketing", GrantedAt: at})
	}
	large, err := agreements.New(c)
	if err != nil {
		b.Fatal(err)
	}
	return large
}
