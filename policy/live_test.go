package policy_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/broker/brokertest"
	"github.com/clearance-broker/clearance/policy"
	"github.com/nats-io/nats.go/jetstream"
)

// stores are the dialects every store test runs on.
var stores = []struct {
	name string
	dsn  func(t *testing.T) string
}{
	{"sqlite", func(t *testing.T) string { return brokertest.SQLiteDSN(t) }},
	{"postgres", func(t *testing.T) string { return brokertest.PostgresDSN(t) }},
}

func TestApplyKeepsAgreementVersions(t *testing.T) {
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			e := newEnv(t, st.dsn(t))
			nc := brokertest.Connect(t, brokertest.StartNATS(t))
			dir := registryDir(t)
			n := e.start(t, nc, load(t, dir))

			first, applied, err := n.live.Apply(t.Context(), load(t, dir))
			if err != nil || !applied || first.Seq != 1 {
				t.Fatalf("first apply: %+v applied=%v err=%v", first, applied, err)
			}
			if _, applied, err := n.live.Apply(t.Context(), load(t, dir)); err != nil || applied {
				t.Fatalf("same content applied again: applied=%v err=%v", applied, err)
			}
			edit(t, dir, "40-agreements.yaml", "retention_days: 90", "retention_days: 30")
			if _, _, err := n.live.Apply(t.Context(), load(t, dir)); !errors.Is(err, policy.ErrAgreementEdited) {
				t.Fatalf("edit without a new version: err = %v, want ErrAgreementEdited", err)
			}
			edit(t, dir, "40-agreements.yaml", "version: 2\n    kind: dpa\n    parties: [swiftship-de]", "version: 3\n    kind: dpa\n    parties: [swiftship-de]")
			second, applied, err := n.live.Apply(t.Context(), load(t, dir))
			if err != nil || !applied || second.Seq != 2 {
				t.Fatalf("apply of a new version: %+v applied=%v err=%v", second, applied, err)
			}
			vs, err := e.store.AgreementVersions(t.Context(), "dpa-swiftship-de")
			if err != nil {
				t.Fatal(err)
			}
			if len(vs) != 2 || vs[0].Version != 2 || vs[0].RetentionDays != 90 || vs[1].Version != 3 || vs[1].RetentionDays != 30 {
				t.Fatalf("stored versions = %+v, want 2 (90 days) and 3 (30 days)", vs)
			}
			if got := n.engine.Registry().Version(); got != second.Version {
				t.Fatalf("engine at %s, want %s", got, second.Version)
			}
			if seq, v, err := e.store.Head(t.Context()); err != nil || seq != 2 || v != second.Version {
				t.Fatalf("head = %d %s %v", seq, v, err)
			}
			applies := events(t, e.audit, audit.EventRegistryApplied)
			// First apply: the base and every agreement; second: the base and one.
			if want := 1 + len(load(t, dir).Content().Agreements) + 2; len(applies) != want {
				t.Fatalf("%d registry_applied entries, want %d", len(applies), want)
			}
		})
	}
}

func TestChangeReachesEveryInstance(t *testing.T) {
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			e := newEnv(t, st.dsn(t))
			a, b, srv, dir := e.startPair(t)
			req := marketing(t)
			if d := b.engine.Decide(req, at); !d.Allowed() {
				t.Fatalf("before the withdrawal: %v", d.Reasons)
			}
			ev, err := a.live.Change(t.Context(), agreements.Change{
				Withdrawals: []agreements.Withdrawal{{Subject: "cust-7", Purpose: "marketing", At: at.Add(-time.Hour)}},
			})
			if err != nil {
				t.Fatal(err)
			}
			// Change returns once the other instance confirmed: no waiting.
			if ev.Sync.Confirmed != 2 || len(ev.Sync.Unconfirmed) != 0 {
				t.Fatalf("sync = %+v, want both instances confirmed", ev.Sync)
			}
			if got := b.engine.Registry().Version(); got != ev.Version {
				t.Fatalf("other instance at %s when Change returned, want %s", got, ev.Version)
			}
			if got := b.propagations(t); got != 2 { // the apply and the withdrawal
				t.Fatalf("%d propagation times measured on the other instance, want 2", got)
			}
			if d := b.engine.Decide(req, at); d.Allowed() || d.Reasons[0] != agreements.ReasonConsentWithdrawn {
				t.Fatalf("after the withdrawal on the other instance: %s %v", d.Decision, d.Reasons)
			}

			js, _ := jetstream.New(brokertest.Connect(t, srv))
			kv, err := js.KeyValue(t.Context(), policy.DefaultBucket)
			if err != nil {
				t.Fatal(err)
			}
			entry, err := kv.Get(t.Context(), fmt.Sprintf("event.%016d", ev.Seq))
			if err != nil || strings.Contains(string(entry.Value()), "cust-7") || !strings.Contains(string(entry.Value()), ev.Version) {
				t.Fatalf("published event %q (%v): want its version and no subject", entry.Value(), err)
			}

			_, err = b.live.Change(t.Context(), agreements.Change{Suspend: []string{"no-such-agreement"}})
			if !errors.Is(err, policy.ErrInvalidChange) {
				t.Fatalf("unknown agreement: err = %v, want ErrInvalidChange", err)
			}
			if seq, _, _ := e.store.Head(t.Context()); seq != ev.Seq {
				t.Fatalf("an invalid change moved the head to %d", seq)
			}

			late := e.start(t, brokertest.Connect(t, srv), load(t, dir))
			if got := late.engine.Registry().Version(); got != ev.Version {
				t.Fatalf("a later instance starts at %s, want %s", got, ev.Version)
			}
			rec := events(t, e.audit, audit.EventConsentRecorded)
			if len(rec) != 1 || rec[0].Reasons[0] != policy.ReasonConsentWithdrawn || rec[0].SubjectHMAC != audit.SubjectHMAC(brokertest.SubjectKey, "cust-7") || rec[0].RegistryVersion != ev.Version {
				t.Fatalf("consent entries = %+v", rec)
			}
		})
	}
}

func TestApplyCarriesRunTimeChanges(t *testing.T) {
	e := newEnv(t, brokertest.SQLiteDSN(t))
	nc := brokertest.Connect(t, brokertest.StartNATS(t))
	dir := registryDir(t)
	n := e.startApplied(t, nc, dir)
	_, err := n.live.Change(t.Context(), agreements.Change{
		Withdrawals: []agreements.Withdrawal{{Subject: "cust-7", Purpose: "marketing", At: at.Add(-time.Hour)}},
		Suspend:     []string{"dpa-swiftship-de"},
	})
	if err != nil {
		t.Fatal(err)
	}
	delivery, err := agreements.ParseRequest(brokertest.ExampleRequest(t, "01-delivery-eea-allow.json"))
	if err != nil {
		t.Fatal(err)
	}
	// A new apply that keeps the suspended version keeps the suspension.
	applyNewBase(t, n, dir)
	tests := []struct {
		name    string
		req     *agreements.Request
		allowed bool
	}{
		{"withdrawal carried", marketing(t), false},
		{"suspension carried", delivery, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if d := n.engine.Decide(tt.req, at); d.Allowed() != tt.allowed {
				t.Fatalf("allowed = %v (%v)", d.Allowed(), d.Reasons)
			}
		})
	}
	// A new version of the suspended agreement lifts the suspension.
	edit(t, dir, "40-agreements.yaml", "version: 2\n    kind: dpa\n    parties: [swiftship-de]", "version: 3\n    kind: dpa\n    parties: [swiftship-de]")
	if _, _, err := n.live.Apply(t.Context(), load(t, dir)); err != nil {
		t.Fatal(err)
	}
	if d := n.engine.Decide(delivery, at); !d.Allowed() {
		t.Fatalf("new agreement version still suspended: %v", d.Reasons)
	}
	if d := n.engine.Decide(marketing(t), at); d.Allowed() {
		t.Fatal("withdrawal lost by the apply")
	}
}
