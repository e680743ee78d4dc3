package broker_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/broker"
	"github.com/nats-io/nats.go"
)

// TestDeliveryRecordedByOtherInstance: another instance recorded the
// delivery of a request between this instance's look-up and its append
// (here: before a first delivery attempt, which looks nothing up). The audit
// log refuses the second delivered entry; the message is acknowledged
// without a second receipt and the request keeps one final outcome.
func TestDeliveryRecordedByOtherInstance(t *testing.T) {
	e := newEnv(t, 5)
	const id = "ord-10023-delivery"
	other, err := e.log.Append(t.Context(), &audit.Entry{Event: audit.EventDelivered, RequestID: id, Source: "order-service", Decision: "allow"})
	if err != nil {
		t.Fatal(err)
	}
	receipts := make(chan *nats.Msg, 4)
	sub, err := e.nc.ChanSubscribe(broker.ReceiptsSubject+".order-service", receipts)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	publish(t, e, "01-delivery-eea-allow.json", id)
	waitFor(t, "the message to be acknowledged", func() bool { return pending(t, e) == 0 })
	if n := len(e.partner.Received()); n != 1 {
		t.Errorf("partner received %d deliveries, want 1", n)
	}
	if ev := events(e.entries(t, id)); ev != "delivered,decided" {
		t.Errorf("audit events = %s, want the other instance's delivered and this one's decided", ev)
	}
	select {
	case m := <-receipts:
		var r broker.Receipt
		_ = json.Unmarshal(m.Data, &r)
		t.Errorf("a second receipt was sent: %+v", r)
	case <-time.After(300 * time.Millisecond):
	}
	if got, err := e.log.Query(t.Context(), audit.Filter{RequestID: id, Event: audit.EventDelivered}); err != nil || len(got) != 1 || got[0].Sequence != other {
		t.Errorf("delivered entries = %v, %v; want the other instance's only", got, err)
	}
}
