package broker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"sync/atomic"
	"testing"

	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/broker"
	"github.com/clearance-broker/clearance/broker/brokertest"
	"github.com/clearance-broker/clearance/connectors"
)

// failingDelivered is an audit log whose appends of delivered entries fail
// while fails is above zero; with written set, the failing append writes
// the entry first, as an append whose answer is lost does.
type failingDelivered struct {
	*audit.Log
	fails   atomic.Int32
	written bool
}

func (l *failingDelivered) Append(ctx context.Context, e *audit.Entry) (int64, error) {
	if e.Event != audit.EventDelivered || l.fails.Add(-1) < 0 {
		return l.Log.Append(ctx, e)
	}
	if l.written {
		if _, err := l.Log.Append(ctx, e); err != nil {
			return 0, err
		}
	}
	return 0, errors.New("audit store unavailable")
}

// TestDeliveredRecordedDespiteAuditFailures: a transfer the recipient
// accepted whose delivered entry cannot be written at first is recorded
// once the log takes it, even on the message's last delivery: not dead-
// lettered with a receipt saying it was not delivered and no delivery on
// record, and not decided again. An append that was written though its
// answer was lost is taken as the delivery's record.
func TestDeliveredRecordedDespiteAuditFailures(t *testing.T) {
	for _, tt := range []struct {
		name    string
		written bool
	}{
		{"store down", false},
		{"answer lost", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var fl *failingDelivered
			e := newEnvWith(t, brokertest.StartNATS(t), 1, func(o *broker.Options) {
				fl = &failingDelivered{Log: o.Audit.(*audit.Log), written: tt.written}
				fl.fails.Store(3)
				o.Audit = fl
			})
			code, body := e.post(t, brokertest.ExampleRequest(t, "01-delivery-eea-allow.json"))
			var r broker.Receipt
			if err := json.Unmarshal(body, &r); err != nil || code != http.StatusOK {
				t.Fatalf("POST = %d %s", code, body)
			}
			if r.Status != broker.StatusDelivered || r.AuditSequence == 0 {
				t.Fatalf("receipt %+v", r)
			}
			es := e.entries(t, "ord-10023-delivery")
			if ev := events(es); ev != "decided,delivered" {
				t.Fatalf("audit events %s, want decided,delivered", ev)
			}
			if es[1].Sequence != r.AuditSequence {
				t.Errorf("receipt names entry %d, the delivery is entry %d", r.AuditSequence, es[1].Sequence)
			}
			if n := len(e.partner.Received()); n != 1 {
				t.Errorf("partner received %d transfers, want 1", n)
			}
		})
	}
}

// unansweredConnector sends nothing and answers every delivery as one whose
// outcome is unknown (sent, no answer).
type unansweredConnector struct{}

func (unansweredConnector) Deliver(context.Context, *connectors.Delivery) error {
	return fmt.Errorf("post: timeout: %w", connectors.ErrOutcomeUnknown)
}

func (unansweredConnector) Close(context.Context) error { return nil }

// TestDeliveryFailedMayHaveReached: a failure after which the recipient may
// hold the transfer (connectors.ErrOutcomeUnknown) is recorded with
// broker.ReasonMayHaveReceived beside the failure's reason, on each
// attempt and on the last.
func TestDeliveryFailedMayHaveReached(t *testing.T) {
	e := newEnvWith(t, brokertest.StartNATS(t), 2, func(o *broker.Options) {
		o.Connectors = broker.ConnectorMap{"partner-webhook": unansweredConnector{}}
	})
	code, body := e.post(t, brokertest.ExampleRequest(t, "01-delivery-eea-allow.json"))
	var r broker.Receipt
	if err := json.Unmarshal(body, &r); err != nil || code != http.StatusOK || r.Status != broker.StatusDeadLettered {
		t.Fatalf("POST = %d %s", code, body)
	}
	var failed [][]string
	for _, en := range e.entries(t, "ord-10023-delivery") {
		if en.Event == audit.EventDeliveryFailed {
			failed = append(failed, en.Reasons)
		}
	}
	want := [][]string{
		{"delivery_failed: transient", broker.ReasonMayHaveReceived},
		{"delivery_failed: max_deliver_reached", broker.ReasonMayHaveReceived},
	}
	if !reflect.DeepEqual(failed, want) {
		t.Errorf("delivery_failed reasons %q, want %q", failed, want)
	}
}
