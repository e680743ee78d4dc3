package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/broker"
	"github.com/clearance-broker/clearance/broker/brokertest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// TestTwoInstancesShareTheStream publishes 10,000 requests into the stream
// that two broker instances consume through one durable consumer; every
// request must be delivered once and audited as delivered once.
func TestTwoInstancesShareTheStream(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 transfers: not in -short")
	}
	const total = 10000
	srv := brokertest.StartNATS(t)
	ring := filepath.Join(t.TempDir(), "keyring.json")
	k1 := brokertest.DevKeys(t, ring)
	k2 := brokertest.DevKeys(t, ring) // a second instance's client of the same keys
	partner := brokertest.NewPartner(t, k1.JWKS)
	reg := brokertest.ExampleRegistry(t, partner.Key.PublicJWK)
	dsn := brokertest.PostgresDSN(t)
	conns := broker.ConnectorMap{"partner-webhook": brokertest.Webhook(t, partner.URL)}
	a := start(t, setup{natsURL: srv.ClientURL(), dsn: dsn, keys: k1, signer: k1, registry: reg, connectors: conns})
	b := start(t, setup{natsURL: srv.ClientURL(), dsn: dsn, keys: k2, signer: k2, registry: reg, connectors: conns})

	nc := brokertest.Connect(t, srv)
	js, _ := jetstream.New(nc)
	receipts := make(chan *nats.Msg, total)
	sub, err := nc.ChanSubscribe("clearance.receipts.order-service", receipts)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	_ = sub.SetPendingLimits(-1, -1)

	start := time.Now()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < total; i += 8 {
				id := fmt.Sprintf("scale-%05d", i)
				msg := nats.NewMsg("clearance.transfers.order-service")
				msg.Data = request(id, map[string]any{"order_id": id, "name": "N", "address": "A", "phone": "P"})
				msg.Header.Set(jetstream.MsgIDHeader, id)
				if _, err := js.PublishMsg(context.Background(), msg); err != nil {
					t.Errorf("publish %s: %v", id, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	deadline := time.After(4 * time.Minute)
	for got := 0; got < total; got++ {
		select {
		case <-receipts:
		case <-deadline:
			t.Fatalf("%d of %d receipts after 4 minutes", got, total)
		}
	}
	elapsed := time.Since(start)
	t.Logf("%d transfers through two instances in %s (%.0f/s)", total, elapsed.Round(time.Millisecond), total/elapsed.Seconds())

	seen := map[string]int{}
	for _, r := range partner.Received() {
		seen[r.IdempotencyKey]++
	}
	if len(seen) != total {
		t.Errorf("partner received %d distinct requests, want %d", len(seen), total)
	}
	if n := len(partner.Wire()); n != total {
		t.Errorf("partner was sent %d requests, want exactly %d", n, total)
	}
	delivered := map[string]int{}
	err = a.audit.Scan(t.Context(), audit.Filter{Event: audit.EventDelivered}, func(e *audit.Entry) error {
		delivered[e.RequestID]++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	dups := 0
	for _, n := range delivered {
		if n != 1 {
			dups++
		}
	}
	if len(delivered) != total || dups != 0 {
		t.Errorf("audit: %d requests delivered, %d more than once; want %d once each", len(delivered), dups, total)
	}
	na, nb := processed(t, a.metrics), processed(t, b.metrics)
	if na == 0 || nb == 0 || na+nb != total {
		t.Errorf("instances processed %d and %d messages; want both > 0, %d in all", na, nb, total)
	}
}

// processed sums the messages an instance finished with an ack.
func processed(t *testing.T, reg *prometheus.Registry) int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, mf := range mfs {
		if mf.GetName() != "clearance_messages_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "action" && strings.EqualFold(l.GetValue(), "ack") {
					n += int(m.GetCounter().GetValue())
				}
			}
		}
	}
	return n
}
