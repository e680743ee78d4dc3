package livepolicy

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/broker"
	"github.com/clearance-broker/clearance/broker/brokertest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestChangesStopQueuedTransfersEverywhere queues 5,000 requests for two
// instances behind a slow, flaky partner; while they are worked on, a
// consent withdrawal is applied on one instance and an agreement
// suspension on the other. No affected transfer decided after a change
// returned may reach the partner, and registry changes made under this load
// must be in force on the other instance within one second (p99).
func TestChangesStopQueuedTransfersEverywhere(t *testing.T) {
	if testing.Short() {
		t.Skip("5,000 transfers: not in -short")
	}
	const total = 5000
	srv := brokertest.StartNATS(t)
	partner := newRecipient(t, 40*time.Millisecond)
	reg := brokertest.ExampleRegistry(t, partner.key.PublicJWK)
	c := &cluster{natsURL: srv.ClientURL(), dsn: brokertest.PostgresDSN(t), ring: devRing(t), reg: reg,
		conns: broker.ConnectorMap{"partner-webhook": brokertest.Webhook(t, partner.URL)}}
	a, b := c.start(t, "a"), c.start(t, "b")
	if _, _, err := a.live.Apply(t.Context(), reg); err != nil {
		t.Fatal(err)
	}

	nc := brokertest.Connect(t, srv)
	receipts := make(chan *nats.Msg, 2*total)
	sub, err := nc.ChanSubscribe("clearance.receipts.*", receipts)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	_ = sub.SetPendingLimits(-1, -1)
	js, _ := jetstream.New(nc)
	kindOf := map[string]string{}
	kinds := []string{"marketing", "marketing", "swiftship", "swiftship", "fastfreight"}
	for i := range total {
		id := fmt.Sprintf("lp-%05d", i)
		kindOf[id] = kinds[i%len(kinds)]
		subj, body := transfer(kindOf[id], id)
		msg := nats.NewMsg(subj)
		msg.Data = body
		msg.Header.Set(jetstream.MsgIDHeader, id)
		if _, err := js.PublishMsgAsync(msg); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		t.Fatal("publishing did not complete")
	}
	waitArrivals(t, partner, 200)

	// Propagation under load: small changes, alternately on each instance,
	// until each is in force on the other.
	var lags, returns []time.Duration
	for i := range 100 {
		from, to := a, b
		if i%2 == 1 {
			from, to = b, a
		}
		start := time.Now()
		ev, err := from.live.Change(t.Context(), agreements.Change{Consents: []agreements.Consent{{
			Subject: fmt.Sprintf("probe-%d", i), Purpose: "marketing", GrantedAt: start.Add(-time.Minute)}}})
		if err != nil {
			t.Fatal(err)
		}
		returns = append(returns, time.Since(start))
		at, ok := to.swapAt(ev.Seq)
		if !ok {
			t.Fatalf("probe %d: not in force on the other instance when Change returned (%+v)", i, ev.Sync)
		}
		lags = append(lags, at.Sub(start))
	}

	// The withdrawal, on a.
	ev1, err := a.live.Change(t.Context(), agreements.Change{Withdrawals: []agreements.Withdrawal{{Subject: "cust-7", Purpose: "marketing", At: time.Now()}}})
	m1 := time.Now()
	if err != nil || ev1.Sync.Confirmed != 2 {
		t.Fatalf("withdrawal: %+v %v", ev1.Sync, err)
	}
	waitArrivals(t, partner, len(partner.received())+200)
	// The suspension, on b.
	ev2, err := b.live.Change(t.Context(), agreements.Change{Suspend: []string{"dpa-swiftship-de"}})
	m2 := time.Now()
	if err != nil || ev2.Sync.Confirmed != 2 {
		t.Fatalf("suspension: %+v %v", ev2.Sync, err)
	}

	status := map[string]string{}
	deadline := time.After(4 * time.Minute)
	for len(status) < total {
		select {
		case m := <-receipts:
			var rc broker.Receipt
			if json.Unmarshal(m.Data, &rc) == nil && strings.HasPrefix(rc.RequestID, "lp-") {
				status[rc.RequestID] = string(rc.Status)
			}
		case <-deadline:
			t.Fatalf("%d of %d receipts after 4 minutes", len(status), total)
		}
	}

	// What the audit says each request was decided with, in order.
	type decided struct{ decision, version string }
	decisions := map[string][]decided{}
	err = a.audit.Scan(context.Background(), audit.Filter{Event: audit.EventDecided}, func(e *audit.Entry) error {
		if strings.HasPrefix(e.RequestID, "lp-") {
			decisions[e.RequestID] = append(decisions[e.RequestID], decided{e.Decision, e.RegistryVersion})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	arrived := map[string]time.Time{}
	for _, ar := range partner.received() {
		if _, ok := arrived[ar.requestID]; !ok {
			arrived[ar.requestID] = ar.at
		}
	}
	type tally struct {
		delivered, stopped, lateAllowed int
		last                            time.Time
	}
	check := func(kind string, seq int64, moment time.Time, reason string) tally {
		after := a.versionsFrom(seq)
		var tl tally
		for id, k := range kindOf {
			if k != kind {
				continue
			}
			if at, ok := arrived[id]; ok {
				tl.delivered++
				if at.After(tl.last) {
					tl.last = at
				}
				for _, d := range decisions[id] {
					if d.decision == "allow" && after[d.version] {
						tl.lateAllowed++ // decided after the change, yet sent
					}
				}
				continue
			}
			if status[id] == "denied" && len(decisions[id]) > 0 {
				tl.stopped++
			}
		}
		t.Logf("%s: %d delivered, %d stopped; last delivery %s after the change returned",
			reason, tl.delivered, tl.stopped, tl.last.Sub(moment).Round(time.Millisecond))
		return tl
	}
	w := check("marketing", ev1.Seq, m1, "consent withdrawal")
	s := check("swiftship", ev2.Seq, m2, "agreement suspension")
	f := check("fastfreight", ev2.Seq, m2, "unaffected")
	for _, tt := range []struct {
		name  string
		tl    tally
		total int
	}{{"withdrawal", w, 2000}, {"suspension", s, 2000}} {
		if tt.tl.lateAllowed != 0 {
			t.Errorf("%s: %d transfers decided after the change went out", tt.name, tt.tl.lateAllowed)
		}
		if tt.tl.stopped == 0 || tt.tl.delivered+tt.tl.stopped != tt.total {
			t.Errorf("%s: %d delivered + %d stopped, want %d with some stopped", tt.name, tt.tl.delivered, tt.tl.stopped, tt.total)
		}
	}
	if f.delivered != 1000 {
		t.Errorf("unaffected transfers: %d delivered, want 1000", f.delivered)
	}
	if late := w.last.Sub(m1); late > time.Second {
		t.Errorf("withdrawal: a transfer arrived %s after it returned", late)
	}
	if late := s.last.Sub(m2); late > time.Second {
		t.Errorf("suspension: a transfer arrived %s after it returned", late)
	}
	p99 := percentile(lags, 99)
	t.Logf("registry change in force on the other instance under load: p50 %s, p99 %s, max %s (%d changes); Change returned: p50 %s, p99 %s; partner refused %d first attempts",
		percentile(lags, 50).Round(time.Microsecond), p99.Round(time.Microsecond), percentile(lags, 100).Round(time.Microsecond), len(lags),
		percentile(returns, 50).Round(time.Microsecond), percentile(returns, 99).Round(time.Microsecond), partner.failures)
	if p99 > time.Second {
		t.Errorf("p99 propagation %s, want within one second", p99)
	}
}

// waitArrivals waits until the partner accepted n deliveries.
func waitArrivals(t *testing.T, r *recipient, n int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for len(r.received()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("partner accepted %d of %d deliveries", len(r.received()), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
