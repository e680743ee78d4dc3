package policy_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/broker/brokertest"
	"github.com/clearance-broker/clearance/policy"
)

// series gathers g and returns the value of each series of metric name, by
// "agreement vN".
func series(t *testing.T, g prometheus.Gatherer, name string) map[string]float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var id, v string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "agreement":
					id = l.GetValue()
				case "version":
					v = l.GetValue()
				}
			}
			out[id+" v"+v] = m.GetGauge().GetValue()
		}
	}
	return out
}

// TestAgreementCollector reads the example registry's dates on two days:
// days left to the last valid day and to a transfer impact assessment's
// review, and which agreements can carry a transfer (not an expired, a
// suspended or an overdue one).
func TestAgreementCollector(t *testing.T) {
	reg := load(t, registryDir(t))
	now := time.Date(2026, 12, 1, 15, 0, 0, 0, time.UTC)
	r := prometheus.NewRegistry()
	r.MustRegister(policy.AgreementCollector(func() *agreements.Registry { return reg }, func() time.Time { return now }))

	check := func(name string, want map[string]float64) {
		t.Helper()
		got := series(t, r, name)
		for k, w := range want {
			if g, ok := got[k]; !ok || g != w {
				t.Errorf("%s{%s} = %v (present %v), want %v", name, k, g, ok, w)
			}
		}
	}
	check("clearance_agreement_valid_days_left", map[string]float64{
		"dpa-swiftship-de v2":           395,  // 2027-12-31
		"sharing-promoreach v1":         30,   // 2026-12-31
		"dpa-swiftship-returns-2023 v1": -335, // 2025-12-31
	})
	check("clearance_agreement_tia_review_days_left", map[string]float64{
		"scc-cargolink-us v1": 30,   // 2026-12-31
		"scc-shipfast-in v1":  -154, // 2026-06-30
	})
	check("clearance_agreement_in_force", map[string]float64{
		"dpa-swiftship-de v2":           1,
		"scc-cargolink-us v1":           1,
		"scc-shipfast-in v1":            0, // assessment overdue
		"dpa-swiftship-returns-2023 v1": 0, // expired
		"dpa-fastfreight-returns v1":    0, // suspended
	})
	if got := series(t, r, "clearance_agreement_tia_review_days_left"); len(got) != 3 {
		t.Errorf("%d assessments, want the 3 of the example's SCC and BCR agreements: %v", len(got), got)
	}

	// The last valid day still carries transfers; the day after does not.
	now = time.Date(2026, 12, 31, 23, 59, 0, 0, time.UTC)
	check("clearance_agreement_valid_days_left", map[string]float64{"sharing-promoreach v1": 0})
	check("clearance_agreement_in_force", map[string]float64{"sharing-promoreach v1": 1, "scc-cargolink-us v1": 1})
	now = now.Add(time.Minute)
	check("clearance_agreement_valid_days_left", map[string]float64{"sharing-promoreach v1": -1})
	check("clearance_agreement_in_force", map[string]float64{"sharing-promoreach v1": 0, "scc-cargolink-us v1": 0})
}

// TestLiveExportsAgreementDates: a live registry's Registerer gets the
// dates of the registry in force, which follow an applied version.
func TestLiveExportsAgreementDates(t *testing.T) {
	e := newEnv(t, brokertest.SQLiteDSN(t))
	nc := brokertest.Connect(t, brokertest.StartNATS(t))
	dir := registryDir(t)
	n := e.start(t, nc, load(t, dir))
	if got := series(t, n.metrics, "clearance_agreement_in_force"); len(got) != len(load(t, dir).Content().Agreements) {
		t.Fatalf("%d agreements exported, want every one: %v", len(got), got)
	}
	edit(t, dir, "40-agreements.yaml", "version: 2\n    kind: dpa\n    parties: [swiftship-de]", "version: 3\n    kind: dpa\n    parties: [swiftship-de]")
	if _, applied, err := n.live.Apply(t.Context(), load(t, dir)); err != nil || !applied {
		t.Fatalf("apply: applied=%v err=%v", applied, err)
	}
	got := series(t, n.metrics, "clearance_agreement_in_force")
	if _, ok := got["dpa-swiftship-de v3"]; !ok {
		t.Fatalf("the applied version is not exported: %v", got)
	}
	if _, ok := got["dpa-swiftship-de v2"]; ok {
		t.Fatalf("the replaced version is still exported: %v", got)
	}
}

// TestCatchUpFailureExported: an instance that cannot put a stored event
// in force (here one whose stored version is not the one its change
// derives) keeps deciding with the registry it has, and says so in
// clearance_registry_catch_up_failing and in Ready (/readyz) until it
// catches up.
func TestCatchUpFailureExported(t *testing.T) {
	e := newEnv(t, brokertest.SQLiteDSN(t))
	nc := brokertest.Connect(t, brokertest.StartNATS(t))
	dir := registryDir(t)
	n := e.startApplied(t, nc, dir)
	ch := agreements.Change{Consents: []agreements.Consent{{Subject: "cust-90", Purpose: "marketing", GrantedAt: time.Now().UTC().Truncate(time.Second)}}}
	next, err := n.engine.Registry().With(ch)
	if err != nil {
		t.Fatal(err)
	}
	body, err := json.Marshal(map[string]any{"change": ch})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.Exec("INSERT INTO policy_events (seq, kind, base, change, version, at) VALUES (2, 'change', '', ?, 'sha256:0000', ?)",
		string(body), time.Now().UTC()); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.Exec("UPDATE policy_head SET seq = 2, version = 'sha256:0000' WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(t.Context(), policy.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	announce := func(t *testing.T) {
		t.Helper()
		if _, err := kv.Put(t.Context(), "event.0000000000000002", []byte(`{"seq":2,"kind":"change"}`)); err != nil {
			t.Fatal(err)
		}
	}
	waitGauge := func(t *testing.T, want float64) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for gauge(t, n.metrics, "clearance_registry_catch_up_failing") != want {
			if time.Now().After(deadline) {
				t.Fatalf("clearance_registry_catch_up_failing never %v", want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitGauge(t, 0)
	if err := n.live.Ready(t.Context()); err != nil {
		t.Fatalf("Ready while caught up: %v", err)
	}
	announce(t)
	waitGauge(t, 1)
	if n.live.Seq() != 1 {
		t.Fatalf("in force at event %d, want 1", n.live.Seq())
	}
	if err := n.live.Ready(t.Context()); err == nil {
		t.Fatal("Ready while the catch-up fails: nil")
	}
	if _, err := e.db.Exec("UPDATE policy_events SET version = ? WHERE seq = 2", next.Version()); err != nil {
		t.Fatal(err)
	}
	announce(t)
	waitGauge(t, 0)
	n.waitVersion(t, next.Version())
	if err := n.live.Ready(t.Context()); err != nil {
		t.Fatalf("Ready once caught up again: %v", err)
	}
}
