package broker_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/broker"
	"github.com/clearance-broker/clearance/broker/brokertest"
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
