package broker_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/broker"
	"github.com/clearance-broker/clearance/broker/brokertest"
	"github.com/clearance-broker/clearance/connectors/natsregion"
	"github.com/clearance-broker/clearance/erasure"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestInboundNoticeRefusedElsewhere: a receiving region applies and
// acknowledges an erasure notice only as the sending region publishes it,
// under its notice id on its recipient's subject. The sealed notice for
// region-b sent again on region-c's subject, or under another notice's id,
// is refused: not applied, not handed on, not acknowledged (which would
// mark region-b's notice acknowledged at the sending region), and
// dead-lettered.
func TestInboundNoticeRefusedElsewhere(t *testing.T) {
	applied := make(chan string, 8)
	e := newEnvWith(t, brokertest.StartNATS(t), 50, func(o *broker.Options) {
		o.Inbound = &broker.InboundOptions{Stream: "INBOUND_NOTICE", Subject: "inbound.notice.>", LocalSubject: "inbound.notice-local"}
		o.Erasures = broker.ErasureFunc(func(_ context.Context, subject string, _ time.Time) error {
			applied <- subject
			return nil
		})
	})
	local, err := e.nc.SubscribeSync("inbound.notice-local")
	if err != nil {
		t.Fatal(err)
	}
	acks, err := e.nc.SubscribeSync(erasure.AckSubjectPrefix + ".>")
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(erasure.NoticePayload{Kind: erasure.NoticeKind, NoticeID: "notice-1", Recipient: "region-b",
		RequestIDs: []string{"ord-1"}, ErasedAt: time.Now().UTC(), Basis: "GDPR Art. 17, Art. 19",
		Subject: "cust-881", AckSubject: erasure.AckSubjectPrefix + ".notice-1"})
	if err != nil {
		t.Fatal(err)
	}
	signed, err := e.keys.Sign(t.Context(), [][]byte{payload})
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := e.keys.Seal(t.Context(), signed[0])
	if err != nil {
		t.Fatal(err)
	}
	send := func(t *testing.T, subject, msgID string) {
		t.Helper()
		msg := nats.NewMsg(subject)
		msg.Data = sealed
		msg.Header.Set(jetstream.MsgIDHeader, msgID)
		msg.Header.Set(natsregion.HeaderKind, erasure.NoticeKind)
		if _, err := e.js.PublishMsg(t.Context(), msg); err != nil {
			t.Fatal(err)
		}
	}

	var after uint64
	for _, tt := range []struct{ name, subject, id, reason string }{
		{"another recipient", "inbound.notice.region-c", "notice-1.a0", "the recipient is not the one the subject names"},
		{"another notice's id", "inbound.notice.region-b", "notice-2.a0", "the notice's id is not the message's Nats-Msg-Id"},
		{"another id", "inbound.notice.region-b", "notice-1.x", "the notice's id is not the message's Nats-Msg-Id"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			send(t, tt.subject, tt.id)
			after = wantInboundRefused(t, e, after, tt.id, tt.reason)
			if ev := events(e.entries(t, "notice-1")); ev != "" {
				t.Errorf("audit events of the notice = %s, want none", ev)
			}
			if m, err := acks.NextMsg(300 * time.Millisecond); err == nil {
				t.Fatalf("acknowledged on %s: %s", m.Subject, m.Data)
			}
			if m, err := local.NextMsg(time.Millisecond); err == nil {
				t.Errorf("handed on %s", m.Data)
			}
			select {
			case s := <-applied:
				t.Fatalf("applied the erasure of %s", s)
			default:
			}
		})
	}

	// As sent, the same notice is applied and acknowledged.
	send(t, "inbound.notice.region-b", "notice-1.a1")
	m, err := acks.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatalf("the notice as sent was not acknowledged: %v", err)
	}
	raw, err := e.keys.Verify(t.Context(), m.Data)
	if err != nil {
		t.Fatal(err)
	}
	var ack erasure.AckPayload
	if err := json.Unmarshal(raw, &ack); err != nil || ack.NoticeID != "notice-1" || ack.Recipient != "region-b" {
		t.Errorf("acknowledgement %s: %v", raw, err)
	}
	if s := <-applied; s != "cust-881" {
		t.Errorf("applied the erasure of %q", s)
	}
	if _, err := local.NextMsg(5 * time.Second); err != nil {
		t.Errorf("the notice as sent was not handed on: %v", err)
	}
}
