package broker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/broker"
	"github.com/clearance-broker/clearance/broker/brokertest"
	"github.com/clearance-broker/clearance/connectors"
	"github.com/clearance-broker/clearance/keys"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// env is one broker on real parts: embedded NATS, SQLite audit, the
// development key ring and an httptest partner.
type env struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	keys    *keys.DevKeyRing
	log     *audit.Log
	partner *brokertest.Partner
	broker  *broker.Broker
	api     *httptest.Server
	logs    *brokertest.LogCapture
}

func newEnv(t *testing.T, maxDeliver int) *env {
	t.Helper()
	return newEnvWith(t, brokertest.StartNATS(t), maxDeliver, nil)
}

// newEnvWith builds an env on srv and starts its broker; tune adjusts the
// broker options.
func newEnvWith(t *testing.T, srv *server.Server, maxDeliver int, tune func(*broker.Options)) *env {
	t.Helper()
	e := newIdleEnv(t, srv, maxDeliver, tune)
	if err := e.broker.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	return e
}

// newIdleEnv builds an env on srv whose broker serves HTTP but is not
// started: it consumes nothing, so another instance processes what it
// publishes.
func newIdleEnv(t *testing.T, srv *server.Server, maxDeliver int, tune func(*broker.Options)) *env {
	t.Helper()
	e := &env{nc: brokertest.Connect(t, srv), logs: &brokertest.LogCapture{}}
	e.js, _ = jetstream.New(e.nc)
	e.keys = brokertest.DevKeys(t, filepath.Join(t.TempDir(), "keyring.json"))
	reg := prometheus.NewRegistry()
	metrics := broker.NewMetrics(reg)
	e.log, _ = brokertest.OpenAudit(t, brokertest.SQLiteDSN(t), e.keys, func(o *audit.Options) { o.OnCommit = metrics.ObserveAuditBatch })
	e.partner = brokertest.NewPartner(t, e.keys.JWKS)
	engine := agreements.NewEngine(brokertest.ExampleRegistry(t, e.partner.Key.PublicJWK))
	opts := broker.Options{
		NATS:        e.nc,
		Stream:      broker.StreamOptions{AckWait: 5 * time.Second, FetchBatch: 16},
		Retry:       broker.RetryPolicy{MaxDeliver: maxDeliver, BackoffBase: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond},
		Concurrency: 8,
		Decider:     engine,
		Parties:     broker.PartiesOf(engine),
		Keys:        e.keys,
		Audit:       e.log,
		Connectors: broker.ConnectorMap{
			"partner-webhook":   brokertest.Webhook(t, e.partner.URL),
			"authority-webhook": brokertest.Webhook(t, e.partner.URL),
		},
		Logger:         e.logs.Logger(),
		RequestTimeout: 10 * time.Second,
		Metrics:        metrics,
		Registerer:     reg,
		Gatherer:       reg,
	}
	if tune != nil {
		tune(&opts)
	}
	b, err := broker.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Stop(context.Background()) })
	e.broker = b
	e.api = httptest.NewServer(b.Handler())
	t.Cleanup(e.api.Close)
	return e
}

func (e *env) post(t *testing.T, body []byte) (int, []byte) {
	t.Helper()
	resp, err := http.Post(e.api.URL+"/v1/transfers", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

// publishAwait publishes data on order-service's transfer subject, with
// msgID as its Nats-Msg-Id unless empty, and returns the next receipt on
// receipts.
func (e *env) publishAwait(t *testing.T, receipts <-chan *nats.Msg, data []byte, msgID string) broker.Receipt {
	t.Helper()
	msg := nats.NewMsg("clearance.transfers.order-service")
	msg.Data = data
	if msgID != "" {
		msg.Header.Set(jetstream.MsgIDHeader, msgID)
	}
	if _, err := e.js.PublishMsg(t.Context(), msg); err != nil {
		t.Fatal(err)
	}
	var r broker.Receipt
	select {
	case m := <-receipts:
		_ = json.Unmarshal(m.Data, &r)
	case <-time.After(10 * time.Second):
		t.Fatal("no receipt")
	}
	return r
}

func (e *env) entries(t *testing.T, requestID string) []audit.Entry {
	t.Helper()
	got, err := e.log.Query(context.Background(), audit.Filter{RequestID: requestID})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func events(es []audit.Entry) string {
	var s []string
	for _, e := range es {
		s = append(s, string(e.Event))
	}
	return strings.Join(s, ",")
}

func TestAllowedTransferDeliveredMinimised(t *testing.T) {
	e := newEnv(t, 5)
	code, body := e.post(t, brokertest.ExampleRequest(t, "01-delivery-eea-allow.json"))
	var r broker.Receipt
	if err := json.Unmarshal(body, &r); err != nil || code != http.StatusOK {
		t.Fatalf("POST = %d %s", code, body)
	}
	if r.Status != broker.StatusDelivered || r.Decision != "allow" || r.AuditSequence == 0 {
		t.Fatalf("receipt = %+v", r)
	}
	got := e.partner.Received()
	if len(got) != 1 {
		t.Fatalf("partner received %d deliveries, want 1", len(got))
	}
	var p broker.Payload
	if err := json.Unmarshal(got[0].Payload, &p); err != nil {
		t.Fatal(err)
	}
	var keysKept []string
	for k := range p.Record {
		keysKept = append(keysKept, k)
	}
	if len(p.Record) != 4 || p.Record["name"] != "Ada Lovelace" || p.Record["email"] != nil || p.Record["gift_note"] != nil {
		t.Errorf("record fields = %v, want exactly address, name, order_id, phone", keysKept)
	}
	if p.RequestID != "ord-10023-delivery" || p.Agreement == nil || p.Agreement.ID != "dpa-swiftship-de" || p.Purpose != "delivery" {
		t.Errorf("payload = %+v", p)
	}
	if got[0].IdempotencyKey != "ord-10023-delivery" {
		t.Errorf("Idempotency-Key = %q", got[0].IdempotencyKey)
	}
	if ev := events(e.entries(t, "ord-10023-delivery")); ev != "decided,delivered" {
		t.Errorf("audit events = %s, want decided,delivered", ev)
	}
	for _, w := range e.partner.Wire() {
		if bytes.Contains(w, []byte("Ada Lovelace")) || bytes.Contains(w, []byte("Munich")) {
			t.Error("plaintext personal data on the wire to the partner")
		}
	}
}

func TestDeniedTransferNeverReachesPartner(t *testing.T) {
	e := newEnv(t, 5)
	code, body := e.post(t, brokertest.ExampleRequest(t, "06-delivery-brazil-no-mechanism.json"))
	var r broker.Receipt
	if err := json.Unmarshal(body, &r); err != nil || code != http.StatusOK {
		t.Fatalf("POST = %d %s", code, body)
	}
	if r.Status != broker.StatusDenied || r.Decision != "deny" || len(r.Reasons) == 0 || r.Reasons[0] != "no_transfer_mechanism" {
		t.Fatalf("receipt = %+v", r)
	}
	if n := len(e.partner.Wire()); n != 0 {
		t.Errorf("partner was sent %d requests for a denied transfer", n)
	}
	if ev := events(e.entries(t, r.RequestID)); ev != "decided" {
		t.Errorf("audit events = %s, want decided", ev)
	}
}

func TestBatchPostAnswersEveryReceipt(t *testing.T) {
	e := newEnv(t, 5)
	code, body := e.post(t, brokertest.ExampleRequest(t, "24-batch.json"))
	var rs []broker.Receipt
	if err := json.Unmarshal(body, &rs); err != nil || code != http.StatusOK {
		t.Fatalf("POST = %d %s", code, body)
	}
	if len(rs) < 2 {
		t.Fatalf("receipts = %d", len(rs))
	}
	for _, r := range rs {
		if r.Status == broker.StatusPending || r.AuditSequence == 0 {
			t.Errorf("receipt %+v not final", r)
		}
	}
	// Sending the same batch again is de-duplicated by request id.
	_, body = e.post(t, brokertest.ExampleRequest(t, "24-batch.json"))
	if err := json.Unmarshal(body, &rs); err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.Status != broker.StatusDuplicate {
			t.Errorf("second send of %s: status %s, want duplicate", r.RequestID, r.Status)
		}
	}
}

func TestInvalidRequestRejectedAndDeadLettered(t *testing.T) {
	e := newEnv(t, 5)
	receipts := make(chan *nats.Msg, 4)
	sub, err := e.nc.ChanSubscribe("clearance.receipts.order-service", receipts)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	canary := "Canary Person 7741"
	bad := fmt.Sprintf(`{"id":"bad-1","source":"order-service","recipient":"swiftship-de","purpose":"delivery","dataset":"order.delivery","record":{"name":%q}}`, canary)
	r := e.publishAwait(t, receipts, []byte(bad), "bad-1")
	if r.Status != broker.StatusRejected || r.Decision != "deny" || len(r.Reasons) != 1 || !strings.HasPrefix(r.Reasons[0], "invalid_request: subject") {
		t.Fatalf("receipt = %+v", r)
	}
	if ev := events(e.entries(t, "bad-1")); ev != "rejected" {
		t.Errorf("audit events = %s, want rejected", ev)
	}
	dl := lastDeadLetter(t, e.js, "clearance.deadletter.order-service")
	if bytes.Contains(dl.Data, []byte(canary)) {
		t.Error("dead letter holds the record in clear")
	}
	plain, err := e.keys.Open(t.Context(), dl.Data)
	if err != nil || string(broker.KeptData(plain)) != bad {
		t.Errorf("dead letter does not open to the request: %v", err)
	}
	if dl.Header.Get("Clearance-Request-Id") != "bad-1" {
		t.Errorf("dead letter headers = %v", dl.Header)
	}
	if strings.Contains(e.logs.String(), canary) {
		t.Error("a log line holds the canary")
	}
}

func lastDeadLetter(t *testing.T, js jetstream.JetStream, subject string) *jetstream.RawStreamMsg {
	t.Helper()
	var m *jetstream.RawStreamMsg
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		s, err := js.Stream(t.Context(), broker.DeadLetterStream)
		if err == nil {
			if m, err = s.GetLastMsgForSubject(t.Context(), subject); err == nil {
				return m
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no dead letter on %s", subject)
	return nil
}

func TestPartnerOutageThenRecovery(t *testing.T) {
	e := newEnv(t, 50)
	e.partner.SetStatus(http.StatusServiceUnavailable)
	go func() {
		time.Sleep(400 * time.Millisecond)
		e.partner.SetStatus(0)
	}()
	code, body := e.post(t, brokertest.ExampleRequest(t, "01-delivery-eea-allow.json"))
	var r broker.Receipt
	if err := json.Unmarshal(body, &r); err != nil || code != http.StatusOK || r.Status != broker.StatusDelivered {
		t.Fatalf("POST = %d %s", code, body)
	}
	if n := len(e.partner.Received()); n != 1 {
		t.Errorf("partner received %d, want 1", n)
	}
	es := e.entries(t, r.RequestID)
	if ev := events(es); !strings.HasPrefix(ev, "decided,delivery_failed") || !strings.HasSuffix(ev, "decided,delivered") || strings.Count(ev, "delivered") != 1 {
		t.Errorf("audit events = %s", ev)
	}
}

func TestPartnerRejectsDeadLetters(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		maxDeliver int
		wantReason string
	}{
		{"permanent 400", http.StatusBadRequest, 5, "delivery_failed: permanent"},
		{"503 until max deliver", http.StatusServiceUnavailable, 3, "delivery_failed: max_deliver_reached"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.maxDeliver)
			e.partner.SetStatus(tt.status)
			code, body := e.post(t, brokertest.ExampleRequest(t, "01-delivery-eea-allow.json"))
			var r broker.Receipt
			if err := json.Unmarshal(body, &r); err != nil || code != http.StatusOK {
				t.Fatalf("POST = %d %s", code, body)
			}
			if r.Status != broker.StatusDeadLettered || r.Decision != "allow" || len(r.Reasons) != 1 || r.Reasons[0] != tt.wantReason {
				t.Fatalf("receipt = %+v", r)
			}
			dl := lastDeadLetter(t, e.js, "clearance.deadletter.order-service")
			if bytes.Contains(dl.Data, []byte("Ada Lovelace")) {
				t.Error("dead letter in clear")
			}
			es := e.entries(t, r.RequestID)
			last := es[len(es)-1]
			if last.Event != audit.EventDeliveryFailed || last.Sequence != r.AuditSequence {
				t.Errorf("last audit entry = %s #%d, receipt #%d", last.Event, last.Sequence, r.AuditSequence)
			}
		})
	}
}

func TestHealthReadyJWKSMetrics(t *testing.T) {
	e := newEnv(t, 5)
	e.post(t, brokertest.ExampleRequest(t, "01-delivery-eea-allow.json"))
	tests := []struct {
		path string
		want string
	}{
		{"/healthz", `"ok"`},
		{"/readyz", `"nats": "ok"`},
		{"/.well-known/jwks.json", `"keys"`},
		{"/metrics", `clearance_deliveries_total{connector="partner-webhook",result="delivered"} 1`},
		{"/metrics", `clearance_audit_batch_size_count`},
		{"/metrics", `clearance_audit_commit_duration_seconds_count`},
		{"/metrics", `clearance_key_service_duration_seconds_count{op="seal_for",result="ok"} 1`},
		{"/metrics", `clearance_decisions_total{outcome="allow",reason=""} 1`},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			resp, err := http.Get(e.api.URL + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), tt.want) {
				t.Errorf("GET %s = %d, body lacks %q:\n%s", tt.path, resp.StatusCode, tt.want, b)
			}
		})
	}
}

// A webhook recipient without a public key cannot read an envelope sealed
// with the broker's own keys: the transfer is refused, never sent.
func TestWebhookRecipientWithoutKeyIsDeadLettered(t *testing.T) {
	e := newEnv(t, 5)
	code, body := e.post(t, brokertest.ExampleRequest(t, "15-authority-legal-order.json"))
	var r broker.Receipt
	if err := json.Unmarshal(body, &r); err != nil || code != http.StatusOK {
		t.Fatalf("POST = %d %s", code, body)
	}
	if r.Decision != "allow" || r.Status != broker.StatusDeadLettered || r.Reasons[0] != "delivery_failed: permanent" {
		t.Fatalf("receipt = %+v", r)
	}
	if n := len(e.partner.Wire()); n != 0 {
		t.Errorf("%d requests reached the endpoint", n)
	}
	es := e.entries(t, r.RequestID)
	if ev := events(es); ev != "decided,delivery_failed" {
		t.Errorf("audit = %s", ev)
	}
	// The disclosure rests on a legal order, which every entry names where
	// an agreement would stand.
	for _, x := range es {
		if x.LegalOrder() != "order-2026-113" || x.AgreementID != "legal-order:order-2026-113" || x.AgreementVersion != 0 {
			t.Errorf("%s entry: agreement %q v%d, want the legal order", x.Event, x.AgreementID, x.AgreementVersion)
		}
	}
}

// hookedConnector runs before ahead of each delivery it passes on; an
// error from before is the delivery's.
type hookedConnector struct {
	connectors.Connector
	before func(context.Context, *connectors.Delivery) error
}

func (c hookedConnector) Deliver(ctx context.Context, d *connectors.Delivery) error {
	if err := c.before(ctx, d); err != nil {
		return err
	}
	return c.Connector.Deliver(ctx, d)
}

// slowConnector delays every delivery by delay before passing it on.
func slowConnector(c connectors.Connector, delay time.Duration) hookedConnector {
	return hookedConnector{c, func(ctx context.Context, _ *connectors.Delivery) error {
		select {
		case <-time.After(delay):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}}
}

// TestSlowDeliveryKeptInProgress: a delivery that takes several ack waits
// is reported in progress, so JetStream does not hand the message to
// another worker meanwhile: one decision, one delivery.
func TestSlowDeliveryKeptInProgress(t *testing.T) {
	e := newEnvWith(t, brokertest.StartNATS(t), 5, func(o *broker.Options) {
		o.Stream.AckWait = 400 * time.Millisecond
		m := o.Connectors.(broker.ConnectorMap)
		m["partner-webhook"] = slowConnector(m["partner-webhook"], 1500*time.Millisecond)
	})
	code, body := e.post(t, brokertest.ExampleRequest(t, "01-delivery-eea-allow.json"))
	var r broker.Receipt
	if err := json.Unmarshal(body, &r); err != nil || code != http.StatusOK || r.Status != broker.StatusDelivered {
		t.Fatalf("POST = %d %s", code, body)
	}
	time.Sleep(600 * time.Millisecond) // a redelivery, if any, would start now
	if got := e.partner.Received(); len(got) != 1 {
		t.Fatalf("partner received %d deliveries, want 1", len(got))
	}
	if got := events(e.entries(t, r.RequestID)); got != "decided,delivered" {
		t.Fatalf("audit events %s, want decided,delivered", got)
	}
}

// TestHTTPReceiptFromAnotherInstance: a request posted to an instance that
// does not consume is processed by another, whose receipt reaches the
// waiting client through the first instance's reply subject.
func TestHTTPReceiptFromAnotherInstance(t *testing.T) {
	srv := brokertest.StartNATS(t)
	worker := newEnvWith(t, srv, 5, nil)
	front := newIdleEnv(t, srv, 5, nil)
	code, body := front.post(t, brokertest.ExampleRequest(t, "01-delivery-eea-allow.json"))
	var r broker.Receipt
	if err := json.Unmarshal(body, &r); err != nil || code != http.StatusOK || r.Status != broker.StatusDelivered || r.AuditSequence == 0 {
		t.Fatalf("POST to the instance that does not consume = %d %s", code, body)
	}
	if ev := events(worker.entries(t, r.RequestID)); ev != "decided,delivered" {
		t.Errorf("audit of the processing instance = %s, want decided,delivered", ev)
	}
	if n := len(front.entries(t, r.RequestID)); n != 0 {
		t.Errorf("the instance that does not consume audited %d entries", n)
	}
}

// TestReceiptReplySubject: a request published on NATS with a reply header
// naming an instance subject gets its receipt there as well as on
// clearance.receipts.<source>; one naming any other subject gets it only
// on clearance.receipts.<source>.
func TestReceiptReplySubject(t *testing.T) {
	e := newEnv(t, 5)
	receipts := make(chan *nats.Msg, 8)
	for _, subj := range []string{"clearance.receipts.order-service", "clearance.replies.probe", "clearance.elsewhere.>"} {
		sub, err := e.nc.ChanSubscribe(subj, receipts)
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
	}
	if err := e.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		id, reply string
		want      []string
	}{
		{"reply-1", "clearance.replies.probe", []string{"clearance.receipts.order-service", "clearance.replies.probe"}},
		{"reply-2", "clearance.elsewhere.probe", []string{"clearance.receipts.order-service"}},
		{"reply-3", "", []string{"clearance.receipts.order-service"}},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			raw := bytes.Replace(brokertest.ExampleRequest(t, "01-delivery-eea-allow.json"), []byte("ord-10023-delivery"), []byte(tt.id), 1)
			msg := nats.NewMsg("clearance.transfers.order-service")
			msg.Data = raw
			msg.Header.Set(jetstream.MsgIDHeader, tt.id)
			if tt.reply != "" {
				msg.Header.Set(broker.ReplyHeader, tt.reply)
			}
			if _, err := e.js.PublishMsg(t.Context(), msg); err != nil {
				t.Fatal(err)
			}
			var got []string
			timeout := time.After(10 * time.Second)
			for len(got) < len(tt.want) {
				select {
				case m := <-receipts:
					var r broker.Receipt
					if err := json.Unmarshal(m.Data, &r); err != nil || r.RequestID != tt.id {
						t.Fatalf("receipt on %s: %s %v", m.Subject, m.Data, err)
					}
					got = append(got, m.Subject)
				case <-timeout:
					t.Fatalf("receipts on %v, want %v", got, tt.want)
				}
			}
			// Both go out together: anything else would have arrived by
			// the time this round trip to the server ends.
			if err := e.nc.Flush(); err != nil {
				t.Fatal(err)
			}
			select {
			case m := <-receipts:
				got = append(got, m.Subject)
			case <-time.After(100 * time.Millisecond):
			}
			slices.Sort(got)
			if !slices.Equal(got, tt.want) {
				t.Errorf("receipts on %v, want %v", got, tt.want)
			}
		})
	}
}

// A request sent again after the transfer stream's de-duplication window
// (a client retrying long after its first answer) is answered from the
// audit log, its recorded outcome with status "duplicate", without a
// second decision or delivery and without waiting for a receipt that was
// sent long before.
func TestResentAfterDedupWindowAnsweredFromAudit(t *testing.T) {
	const window = 300 * time.Millisecond
	e := newEnvWith(t, brokertest.StartNATS(t), 5, func(o *broker.Options) { o.Stream.DuplicateWindow = window })
	post := func(name string) broker.Receipt {
		t.Helper()
		code, body := e.post(t, brokertest.ExampleRequest(t, name))
		var r broker.Receipt
		if err := json.Unmarshal(body, &r); err != nil || code != http.StatusOK {
			t.Fatalf("POST %s = %d %s", name, code, body)
		}
		return r
	}
	first := post("01-delivery-eea-allow.json")
	denied := post("06-delivery-brazil-no-mechanism.json")
	if first.Status != broker.StatusDelivered || denied.Status != broker.StatusDenied {
		t.Fatalf("first answers: %+v, %+v", first, denied)
	}
	time.Sleep(3 * window) // the stream no longer knows the ids
	start := time.Now()
	again := post("01-delivery-eea-allow.json")
	if again.Status != broker.StatusDuplicate || again.Decision != "allow" || again.AuditSequence != first.AuditSequence || len(again.Reasons) != 0 {
		t.Errorf("resent delivery: %+v, want duplicate of %+v", again, first)
	}
	deniedAgain := post("06-delivery-brazil-no-mechanism.json")
	if deniedAgain.Status != broker.StatusDuplicate || deniedAgain.Decision != "deny" || deniedAgain.AuditSequence != denied.AuditSequence ||
		len(deniedAgain.Reasons) != 1 || deniedAgain.Reasons[0] != "no_transfer_mechanism" {
		t.Errorf("resent denial: %+v, want duplicate of %+v", deniedAgain, denied)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("answers took %v: they waited for receipts", took)
	}
	// A batch: the ids the log knows are answered from it (all looked up
	// at once), the new one is delivered.
	batch := []byte("[" + string(brokertest.ExampleRequest(t, "01-delivery-eea-allow.json")) + "," +
		string(brokertest.ExampleRequest(t, "03-delivery-us-dpf-allow.json")) + "," +
		string(brokertest.ExampleRequest(t, "06-delivery-brazil-no-mechanism.json")) + "]")
	code, body := e.post(t, batch)
	var rs []broker.Receipt
	if err := json.Unmarshal(body, &rs); err != nil || code != http.StatusOK || len(rs) != 3 {
		t.Fatalf("POST batch = %d %s", code, body)
	}
	if rs[0].Status != broker.StatusDuplicate || rs[0].AuditSequence != first.AuditSequence ||
		rs[1].Status != broker.StatusDelivered || rs[2].Status != broker.StatusDuplicate || rs[2].AuditSequence != denied.AuditSequence {
		t.Errorf("batch answered %+v", rs)
	}
	if n := len(e.partner.Received()); n != 2 {
		t.Errorf("partner received %d deliveries, want 2 (the first request's and the batch's new one)", n)
	}
	if ev := events(e.entries(t, "ord-10023-delivery")); ev != "decided,delivered" {
		t.Errorf("audit events = %s, want decided,delivered", ev)
	}
}
