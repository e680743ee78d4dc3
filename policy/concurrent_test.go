package policy_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/broker/brokertest"
)

// TestConcurrentWriters changes the registry from two instances at once,
// each storing a snapshot every few events, while three more instances
// start: the store numbers the events without gaps and every instance ends
// on the same version, derived the same way, whether it started from a
// snapshot being replaced or from the first event.
func TestConcurrentWriters(t *testing.T) {
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			e := newEnv(t, st.dsn(t))
			e.snapshotEvery = 4
			a, b, srv, dir := e.startPair(t)
			const each = 15
			var wg sync.WaitGroup
			for w, n := range []*node{a, b} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range each {
						_, err := n.live.Change(t.Context(), agreements.Change{Consents: []agreements.Consent{{
							Subject: fmt.Sprintf("cust-%d-%d", w, i), Purpose: "marketing", GrantedAt: at}}})
						if err != nil {
							t.Error(err)
							return
						}
					}
				}()
			}
			var started []*node
			for range 3 {
				started = append(started, e.start(t, brokertest.Connect(t, srv), load(t, dir)))
			}
			wg.Wait()
			evs, err := e.store.Events(t.Context(), 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) != 1+2*each {
				t.Fatalf("%d events, want %d", len(evs), 1+2*each)
			}
			for i, ev := range evs {
				if ev.Seq != int64(i+1) {
					t.Fatalf("event %d numbered %d", i+1, ev.Seq)
				}
			}
			last := evs[len(evs)-1].Version
			for _, n := range append([]*node{a, b}, started...) {
				n.waitVersion(t, last)
			}
		})
	}
}
