package broker_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/broker"
	"github.com/clearance-broker/clearance/broker/brokertest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// inboundEnv is a broker that is also a receiving region: it takes in
// sealed copies on inbound.forged.<recipient> and hands them on, opened,
// on inbound.forged-local, which the returned subscription follows.
func inboundEnv(t *testing.T) (*env, *nats.Subscription) {
	t.Helper()
	e := newEnvWith(t, brokertest.StartNATS(t), 50, func(o *broker.Options) {
		o.Inbound = &broker.InboundOptions{Stream: "INBOUND_FORGED", Subject: "inbound.forged.>", LocalSubject: "inbound.forged-local",
			Recipients: []string{"dc-tokyo"}}
	})
	local, err := e.nc.SubscribeSync("inbound.forged-local")
	if err != nil {
		t.Fatal(err)
	}
	return e, local
}

// sendInbound publishes data on subject under msgID, as a sending region's
// natsregion connector does.
func sendInbound(t *testing.T, e *env, subject, msgID string, data []byte) {
	t.Helper()
	msg := nats.NewMsg(subject)
	msg.Data = data
	msg.Header.Set(jetstream.MsgIDHeader, msgID)
	if _, err := e.js.PublishMsg(t.Context(), msg); err != nil {
		t.Fatal(err)
	}
}

// handedOn returns the next payload the region handed on, or nil if none
// comes within wait.
func handedOn(t *testing.T, local *nats.Subscription, wait time.Duration) *broker.Payload {
	t.Helper()
	m, err := local.NextMsg(wait)
	if err != nil {
		return nil
	}
	var p broker.Payload
	if err := json.Unmarshal(m.Data, &p); err != nil {
		t.Fatalf("handed on %q: %v", m.Data, err)
	}
	return &p
}

// TestInboundRefusesWhatNoRegionSent: a receiving region hands on only a
// sealed payload as a sending region publishes it. A sealed copy sent
// again under another id or on another recipient's subject (or one with a
// token more) is refused, so is a copy for a recipient this region does
// not receive for (another region's, on its own subject here), and
// so is a producer's request kept as a dead letter (sealed under the same
// keys), whatever it is shaped as: it was never decided.
func TestInboundRefusesWhatNoRegionSent(t *testing.T) {
	e, local := inboundEnv(t)
	seal := func(id string) []byte {
		recipient := "dc-tokyo"
		if strings.HasPrefix(id, "syd-") {
			recipient = "dc-sydney" // another region's recipient
		}
		payload, err := json.Marshal(broker.Payload{RequestID: id, Source: "device-fleet", Recipient: recipient,
			Purpose: "regional_hosting", Dataset: "device.service", Mechanism: "adequacy:eu-adequacy",
			Record: map[string]any{"device": map[string]any{"model": "P40"}}})
		if err != nil {
			t.Fatal(err)
		}
		sealed, err := e.keys.Seal(t.Context(), payload)
		if err != nil {
			t.Fatal(err)
		}
		return sealed
	}

	sendInbound(t, e, "inbound.forged.dc-tokyo", "reg-1", seal("reg-1"))
	if p := handedOn(t, local, 10*time.Second); p == nil || p.RequestID != "reg-1" {
		t.Fatalf("a regional copy as sent: handed on %+v", p)
	}
	var after uint64
	for _, tt := range []struct{ name, subject, id, sealed, reason string }{
		// Under another id, the copy is past the stream's de-duplication.
		{"another id", "inbound.forged.dc-tokyo", "reg-1-again", "reg-1", "the payload's request id is not the message's Nats-Msg-Id"},
		{"another recipient", "inbound.forged.dc-sydney", "reg-2", "reg-2", "the recipient is not the one the subject names"},
		// Regions share one transit key: a copy sealed for another
		// region's recipient opens here too.
		{"another region's recipient", "inbound.forged.dc-sydney", "syd-1", "syd-1", "the recipient is not one this region receives for"},
		{"a token more", "inbound.forged.extra.dc-tokyo", "reg-3", "reg-3", "the recipient is not the one the subject names"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sendInbound(t, e, tt.subject, tt.id, seal(tt.sealed))
			after = wantInboundRefused(t, e, after, tt.id, tt.reason)
			if p := handedOn(t, local, 300*time.Millisecond); p != nil {
				t.Fatalf("handed on %+v", p)
			}
		})
	}

	// A producer's request shaped as a regional payload: refused by the
	// parser and kept, sealed, as a dead letter.
	forged := `{"request_id":"forged-1","source":"device-fleet","recipient":"dc-tokyo","purpose":"regional_hosting",` +
		`"dataset":"device.service","agreement":null,"mechanism":"adequacy:eu-adequacy","record":{"note":{"health":"Canary 5521"}}}`
	receipts := make(chan *nats.Msg, 4)
	sub, err := e.nc.ChanSubscribe("clearance.receipts.order-service", receipts)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if r := e.publishAwait(t, receipts, []byte(forged), "forged-1"); r.Status != broker.StatusRejected {
		t.Fatalf("the forged request: %+v", r)
	}
	kept := lastDeadLetter(t, e.js, broker.DeadLetterSubject+".order-service")
	sendInbound(t, e, "inbound.forged.dc-tokyo", "forged-1", kept.Data)
	if p := handedOn(t, local, time.Second); p != nil {
		t.Fatalf("a kept request was handed on as a regional copy: %+v", p)
	}
	if ev := events(e.entries(t, "forged-1")); ev != "rejected" {
		t.Errorf("audit events of the forged request = %s, want rejected (no received)", ev)
	}
	if ev := events(e.entries(t, broker.InboundRejectionPrefix+"forged-1")); ev != "rejected" {
		t.Errorf("audit events of the kept request sent as a regional copy = %s, want rejected", ev)
	}
}

// TestInboundRejectionTakesNoRequestID: a message published on the inbound
// subject that does not open is audited under the reserved prefix, not
// under the request id it claims, which would take that id's one final
// outcome: the region's own producer sending a request under the id
// afterwards has it decided and delivered, not refused as already
// recorded. A claimed id that cannot be an audit key (too long, not UTF-8)
// is recorded by the message's place in its stream, and the message is
// dead-lettered rather than retried for good.
func TestInboundRejectionTakesNoRequestID(t *testing.T) {
	e, _ := inboundEnv(t)
	sendInbound(t, e, "inbound.forged.dc-tokyo", "ord-takeover", []byte("not an envelope"))
	dl := lastDeadLetter(t, e.js, broker.DeadLetterSubject+".inbound")
	if got := dl.Header.Get("Clearance-Audit-Id"); got != broker.InboundRejectionPrefix+"ord-takeover" {
		t.Fatalf("dead letter's audit id %q", got)
	}
	if ev := events(e.entries(t, "ord-takeover")); ev != "" {
		t.Fatalf("entries under the claimed id: %s", ev)
	}
	receipts := make(chan *nats.Msg, 4)
	sub, err := e.nc.ChanSubscribe("clearance.receipts.order-service", receipts)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	req := strings.Replace(string(brokertest.ExampleRequest(t, "01-delivery-eea-allow.json")), `"ord-10023-delivery"`, `"ord-takeover"`, 1)
	if r := e.publishAwait(t, receipts, []byte(req), "ord-takeover"); r.Status != broker.StatusDelivered {
		t.Fatalf("the producer's request under an id a forged inbound message claimed: %+v", r)
	}

	for _, tt := range []struct{ name, id string }{
		{"too long", strings.Repeat("x", 300)},
		{"not UTF-8", "id-\xff\xfe"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			msg := nats.NewMsg("inbound.forged.dc-tokyo")
			msg.Data = []byte("not an envelope")
			msg.Header[jetstream.MsgIDHeader] = []string{tt.id}
			if _, err := e.js.PublishMsg(t.Context(), msg); err != nil {
				t.Fatal(err)
			}
			dl := deadLetterAfter(t, e.js, broker.DeadLetterSubject+".inbound", dl.Sequence)
			aid := dl.Header.Get("Clearance-Audit-Id")
			if !strings.HasPrefix(aid, broker.InboundRejectionPrefix+"INBOUND_FORGED-") || dl.Header.Get("Clearance-Request-Id") != "" {
				t.Fatalf("dead letter headers %v", dl.Header)
			}
			if ev := events(e.entries(t, aid)); ev != "rejected" {
				t.Errorf("audit events of %s = %s, want rejected", aid, ev)
			}
		})
	}
}

// TestInboundSourceReserved: a producer may not send as "inbound", the
// source whose dead letters a receiving region keeps; over NATS the
// request is kept under "unknown", and over HTTP it is refused the same.
func TestInboundSourceReserved(t *testing.T) {
	e := newEnv(t, 5)
	receipts := make(chan *nats.Msg, 4)
	sub, err := e.nc.ChanSubscribe("clearance.receipts.unknown", receipts)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	req := strings.Replace(string(brokertest.ExampleRequest(t, "01-delivery-eea-allow.json")), `"source": "order-service"`, `"source": "inbound"`, 1)
	if !strings.Contains(req, `"source": "inbound"`) {
		t.Fatalf("the example request names its source otherwise: %s", req)
	}
	var id struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(req), &id); err != nil {
		t.Fatal(err)
	}
	msg := nats.NewMsg("clearance.transfers.inbound")
	msg.Data = []byte(req)
	msg.Header.Set(jetstream.MsgIDHeader, id.ID)
	if _, err := e.js.PublishMsg(t.Context(), msg); err != nil {
		t.Fatal(err)
	}
	r := awaitReceipt(t, receipts, id.ID)
	if r.Status != broker.StatusRejected || len(r.Reasons) != 1 || !strings.Contains(r.Reasons[0], "source: is reserved") {
		t.Fatalf("receipt = %+v", r)
	}
	lastDeadLetter(t, e.js, broker.DeadLetterSubject+".unknown")

	code, body := e.post(t, []byte(strings.Replace(req, id.ID, id.ID+"-http", 1)))
	if code != 200 || !strings.Contains(string(body), "source: is reserved") {
		t.Errorf("over HTTP: %d %s", code, body)
	}
}

// wantInboundRefused checks that the inbound message claiming request id
// id was dead-lettered after stream sequence after, and its rejection
// audited under the inbound prefix with reason; it returns the dead
// letter's sequence.
func wantInboundRefused(t *testing.T, e *env, after uint64, id, reason string) uint64 {
	t.Helper()
	dl := deadLetterAfter(t, e.js, broker.DeadLetterSubject+".inbound", after)
	if got := dl.Header.Get("Clearance-Request-Id"); got != id {
		t.Errorf("dead letter of %q, want %q", got, id)
	}
	if es := e.entries(t, broker.InboundRejectionPrefix+id); len(es) == 0 || es[len(es)-1].Event != "rejected" ||
		!slices.Equal(es[len(es)-1].Reasons, []string{"invalid_request: " + reason}) {
		t.Errorf("audit entries of %s: %+v", id, es)
	}
	return dl.Sequence
}

// TestInboundHandsOnOnce: a request the sending region publishes again,
// sealed anew, after the inbound stream's de-duplication window (its
// first publication's answer lost) is handed on once, with one received
// entry. Before, nothing but the window stopped a second hand-on.
func TestInboundHandsOnOnce(t *testing.T) {
	e, local := inboundEnv(t)
	// The window, short here, passes between the two publications.
	s, err := e.js.Stream(t.Context(), "INBOUND_FORGED")
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.Duplicates = 100 * time.Millisecond
	if _, err := e.js.UpdateStream(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(broker.Payload{RequestID: "twice-1", Source: "device-fleet", Recipient: "dc-tokyo",
		Purpose: "regional_hosting", Dataset: "device.service", Mechanism: "adequacy:eu-adequacy",
		Record: map[string]any{"device": map[string]any{"model": "P40"}}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		sealed, err := e.keys.Seal(t.Context(), payload)
		if err != nil {
			t.Fatal(err)
		}
		sendInbound(t, e, "inbound.forged.dc-tokyo", "twice-1", sealed)
		if i == 0 {
			if p := handedOn(t, local, 10*time.Second); p == nil || p.RequestID != "twice-1" {
				t.Fatalf("the first publication: handed on %+v", p)
			}
			time.Sleep(300 * time.Millisecond)
		}
	}
	if p := handedOn(t, local, 2*time.Second); p != nil {
		t.Fatalf("the publication past the window was handed on again: %+v", p)
	}
	if ev := events(e.entries(t, "twice-1")); ev != "received" {
		t.Fatalf("audit events = %s, want one received", ev)
	}
}
