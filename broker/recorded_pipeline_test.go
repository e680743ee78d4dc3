package broker_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/broker"
	"github.com/clearance-broker/clearance/broker/brokertest"
	"github.com/clearance-broker/clearance/connectors"
	"github.com/nats-io/nats.go"
)

// TestDeliveryRecordedByOtherInstance: another instance recorded the
// delivery of a request between this instance's decision and its delivered
// entry (here: while this instance delivers a first delivery attempt,
// which looks nothing up). The audit log refuses the second delivered
// entry; the message is acknowledged without a second receipt and the
// request keeps one final outcome.
func TestDeliveryRecordedByOtherInstance(t *testing.T) {
	const id = "ord-10023-delivery"
	var other int64
	e := newEnvWith(t, brokertest.StartNATS(t), 5, func(o *broker.Options) {
		m := o.Connectors.(broker.ConnectorMap)
		m["partner-webhook"] = hookedConnector{m["partner-webhook"], func(ctx context.Context, d *connectors.Delivery) error {
			var err error
			other, err = o.Audit.Append(ctx, &audit.Entry{Event: audit.EventDelivered, RequestID: d.RequestID, Source: "order-service", Decision: "allow"})
			return err
		}}
	})
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
	if ev := events(e.entries(t, id)); ev != "decided,delivered" {
		t.Errorf("audit events = %s, want this instance's decided and the other's delivered", ev)
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

// TestResentOnNATSAfterDedupWindow: a producer publishes a request again
// under its id after the transfer stream's de-duplication window forgot it.
// The stream takes it as new and the broker decides it (a first delivery,
// which looks nothing up), but the audit log refuses its decision to allow:
// the request already has a final outcome. Nothing is delivered or audited
// again, and the receipt repeats the recorded outcome. A denial sent again
// is refused as a second final outcome and answered the same way, and so is
// a rejected request sent again. All are answered at once, not handed back
// to be looked up on a redelivery.
func TestResentOnNATSAfterDedupWindow(t *testing.T) {
	const window = 300 * time.Millisecond
	e := newEnvWith(t, brokertest.StartNATS(t), 5, func(o *broker.Options) { o.Stream.DuplicateWindow = window })
	receipts := make(chan *nats.Msg, 8)
	sub, err := e.nc.ChanSubscribe(broker.ReceiptsSubject+".order-service", receipts)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	receipt := func(id string) broker.Receipt {
		t.Helper()
		return awaitReceipt(t, receipts, id)
	}
	const allowed, denied, invalid = "ord-10023-delivery", "ord-10027-delivery", "bad-resent"
	bad := []byte(`{"id":"bad-resent","source":"order-service","recipient":"swiftship-de","purpose":"delivery","dataset":"order.delivery","record":{"name":"x"}}`)
	publish(t, e, "01-delivery-eea-allow.json", allowed)
	first := receipt(allowed)
	publish(t, e, "06-delivery-brazil-no-mechanism.json", denied)
	firstDenied := receipt(denied)
	publishData(t, e, bad, invalid)
	firstRejected := receipt(invalid)
	if first.Status != broker.StatusDelivered || firstDenied.Status != broker.StatusDenied || firstRejected.Status != broker.StatusRejected {
		t.Fatalf("first receipts: %+v, %+v, %+v", first, firstDenied, firstRejected)
	}
	time.Sleep(3 * window) // the stream no longer knows the ids
	publish(t, e, "01-delivery-eea-allow.json", allowed)
	if again := receipt(allowed); again.Status != broker.StatusDelivered || again.Decision != "allow" || again.AuditSequence != first.AuditSequence {
		t.Errorf("resent delivery answered %+v, want the recorded %+v", again, first)
	}
	publish(t, e, "06-delivery-brazil-no-mechanism.json", denied)
	if again := receipt(denied); again.Status != broker.StatusDenied || again.AuditSequence != firstDenied.AuditSequence ||
		len(again.Reasons) != 1 || again.Reasons[0] != "no_transfer_mechanism" {
		t.Errorf("resent denial answered %+v, want the recorded %+v", again, firstDenied)
	}
	publishData(t, e, bad, invalid)
	if again := receipt(invalid); again.Status != broker.StatusRejected || again.AuditSequence != firstRejected.AuditSequence {
		t.Errorf("resent rejection answered %+v, want the recorded %+v", again, firstRejected)
	}
	waitFor(t, "the messages to be acknowledged", func() bool { return pending(t, e) == 0 })
	if n := len(e.partner.Received()); n != 1 {
		t.Errorf("partner received %d deliveries, want 1", n)
	}
	if ev := events(e.entries(t, allowed)); ev != "decided,delivered" {
		t.Errorf("audit events of the delivery = %s, want decided,delivered", ev)
	}
	if ev := events(e.entries(t, denied)); ev != "decided" {
		t.Errorf("audit events of the denial = %s, want decided", ev)
	}
	if ev := events(e.entries(t, invalid)); ev != "rejected" {
		t.Errorf("audit events of the rejection = %s, want rejected", ev)
	}
	// The resent requests are answered at once, not handed back to be
	// looked up on their redelivery; a rejected one is terminated, as it
	// was the first time.
	for id, action := range map[string]string{allowed: "ack", denied: "ack", invalid: "term"} {
		var resent int
		for line := range strings.Lines(e.logs.String()) {
			if strings.Contains(line, `"request_id":"`+id+`"`) && strings.Contains(line, `"already_recorded":true`) {
				resent++
				if !strings.Contains(line, `"action":"`+action+`"`) || !strings.Contains(line, `"attempt":1`) {
					t.Errorf("resent %s handled as %s", id, line)
				}
			}
		}
		if resent != 1 {
			t.Errorf("%d lines of the resent %s as already recorded, want 1", resent, id)
		}
	}
}
