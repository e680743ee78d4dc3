package broker_test

import (
	"testing"
	"time"

	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/broker"
	"github.com/clearance-broker/clearance/broker/brokertest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestInboundRejection follows an inbound envelope this region cannot
// open: it is audited rejected, dead-lettered and terminated; when the
// request's final outcome is already in the log (recorded by another
// instance, or by an earlier delivery whose acknowledgement was lost), the
// audit writer's refusal is taken as "already recorded": the message is
// terminated at once, with no second entry, rather than retried until
// max-deliver.
func TestInboundRejection(t *testing.T) {
	tests := []struct {
		name     string
		recorded bool // a final outcome is in the log before the message arrives
	}{
		{"first outcome", false},
		{"outcome already recorded", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnvWith(t, brokertest.StartNATS(t), 50, func(o *broker.Options) {
				o.Inbound = &broker.InboundOptions{Stream: "INBOUND_TEST", Subject: "inbound.test.>", LocalSubject: "inbound.local"}
			})
			id := "in-1"
			if tt.recorded {
				e2 := &audit.Entry{Time: time.Now(), Event: audit.EventRejected, RequestID: broker.InboundRejectionPrefix + id, Source: "inbound",
					Decision: "deny", Reasons: []string{"invalid_request: sealed envelope cannot be opened"}}
				if _, err := e.log.Append(t.Context(), e2); err != nil {
					t.Fatal(err)
				}
			}
			msg := nats.NewMsg("inbound.test.region")
			msg.Data = []byte("not an envelope")
			msg.Header.Set(jetstream.MsgIDHeader, id)
			if _, err := e.js.PublishMsg(t.Context(), msg); err != nil {
				t.Fatal(err)
			}
			dl := lastDeadLetter(t, e.js, broker.DeadLetterSubject+".inbound")
			if dl.Header.Get("Clearance-Request-Id") != id || dl.Header.Get("Clearance-Audit-Id") != broker.InboundRejectionPrefix+id ||
				string(dl.Data) != "not an envelope" {
				t.Errorf("dead letter %v", dl.Header)
			}
			// Terminated on its first delivery: nothing pending, never
			// handed back (retries back off 20-200ms, so a retried message
			// shows as redelivered well within the wait).
			deadline := time.Now().Add(5 * time.Second)
			var info *jetstream.ConsumerInfo
			for time.Now().Before(deadline) {
				c, err := e.js.Consumer(t.Context(), "INBOUND_TEST", "clearance-inbound")
				if err != nil {
					t.Fatal(err)
				}
				if info, err = c.Info(t.Context()); err != nil {
					t.Fatal(err)
				}
				if info.NumRedelivered > 0 || (info.NumAckPending == 0 && info.NumPending == 0) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			time.Sleep(300 * time.Millisecond) // a retry would show by now
			c, err := e.js.Consumer(t.Context(), "INBOUND_TEST", "clearance-inbound")
			if err != nil {
				t.Fatal(err)
			}
			if info, err = c.Info(t.Context()); err != nil {
				t.Fatal(err)
			}
			if info.NumRedelivered != 0 || info.NumAckPending != 0 || info.NumPending != 0 || info.Delivered.Consumer != 1 {
				t.Errorf("consumer: redelivered %d, ack pending %d, pending %d, deliveries %d; want one delivery, terminated",
					info.NumRedelivered, info.NumAckPending, info.NumPending, info.Delivered.Consumer)
			}
			if ev := events(e.entries(t, broker.InboundRejectionPrefix+id)); ev != "rejected" {
				t.Errorf("audit events = %s, want one rejected", ev)
			}
		})
	}
}
