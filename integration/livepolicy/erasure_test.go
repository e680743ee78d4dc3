package livepolicy

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/broker"
	"github.com/clearance-broker/clearance/broker/brokertest"
	"github.com/clearance-broker/clearance/broker/samplepartner"
	"github.com/clearance-broker/clearance/connectors"
	"github.com/clearance-broker/clearance/connectors/natsregion"
	"github.com/clearance-broker/clearance/erasure"
	"github.com/clearance-broker/clearance/keys"
	"github.com/clearance-broker/clearance/policy"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// noticeEndpoint is a webhook recipient of erasure notices that refuses the
// first failures attempts and keeps the bodies it accepted.
type noticeEndpoint struct {
	*httptest.Server
	failures int

	mu       sync.Mutex
	attempts int
	bodies   [][]byte
	kinds    []string
}

func newNoticeEndpoint(t *testing.T, failures int) *noticeEndpoint {
	t.Helper()
	e := &noticeEndpoint{failures: failures}
	e.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		e.mu.Lock()
		defer e.mu.Unlock()
		e.attempts++
		if e.attempts <= e.failures {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		e.bodies = append(e.bodies, body)
		e.kinds = append(e.kinds, r.Header.Get("X-Clearance-Kind"))
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(e.Close)
	return e
}

func (e *noticeEndpoint) accepted() ([][]byte, []string, int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([][]byte(nil), e.bodies...), append([]string(nil), e.kinds...), e.attempts
}

// TestErasureReachesEveryRecipient erases a subject whose data went to a
// webhook processor (which fails twice before acknowledging), an authority
// and a regional data centre, and to a fourth recipient no connector
// reaches; each is told, the failing one is retried and escalated, and the
// fourth is closed by an officer's justification.
func TestErasureReachesEveryRecipient(t *testing.T) {
	srv := brokertest.StartNATS(t)
	nc := brokertest.Connect(t, srv)
	ring := brokertest.DevKeys(t, devRing(t))
	pkey, err := samplepartner.NewKey("swiftship-notices")
	if err != nil {
		t.Fatal(err)
	}
	reg := brokertest.ExampleRegistry(t, pkey.PublicJWK)
	auditLog, db := brokertest.OpenAudit(t, brokertest.PostgresDSN(t), ring)
	processor, authority := newNoticeEndpoint(t, 2), newNoticeEndpoint(t, 0)
	region, err := natsregion.New(t.Context(), "region-jp", &natsregion.Config{
		URLs: []string{srv.ClientURL()}, SubjectPrefix: natsregion.DefaultSubjectPrefix,
		Replicas: 1, DuplicateWindow: connectors.Duration(time.Minute), AckTimeout: connectors.Duration(5 * time.Second),
		ConnectTimeout: connectors.Duration(5 * time.Second), ReconnectWait: connectors.Duration(time.Second), NoResponderRetries: 2,
		FullRetryAfter: connectors.Duration(time.Second),
	}, connectors.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = region.Close(context.Background()) })
	conns := broker.ConnectorMap{
		"partner-webhook":   brokertest.Webhook(t, processor.URL),
		"authority-webhook": brokertest.Webhook(t, authority.URL),
		"region-jp":         region,
		// region-sg is not configured: dc-singapore cannot be told.
	}

	// The history: cust-9's data went to four recipients; a fifth request
	// was denied and sent nowhere.
	for _, e := range []struct{ id, recipient, event string }{
		{"ord-1", "swiftship-de", "delivered"}, {"ord-2", "swiftship-de", "delivered"},
		{"lo-1", "bka-de", "delivered"}, {"host-1", "dc-tokyo", "delivered"}, {"host-2", "dc-singapore", "delivered"},
		{"mkt-1", "promoreach-nl", "decided"},
	} {
		if _, err := auditLog.Append(t.Context(), &audit.Entry{Event: audit.Event(e.event), RequestID: e.id, Source: "test",
			Recipient: e.recipient, Decision: "allow", SubjectID: "cust-9"}); err != nil {
			t.Fatal(err)
		}
	}

	engine := agreements.NewEngine(reg)
	// The Tokyo data centre's Clearance receives what the region connector
	// publishes and hands verified notices to the systems holding its copies.
	tokyo, err := broker.New(broker.Options{
		NATS: brokertest.Connect(t, srv), Decider: engine, Parties: broker.PartiesOf(engine), Keys: ring, Audit: auditLog,
		Connectors: broker.ConnectorMap{},
		Inbound:    &broker.InboundOptions{Stream: "REGION_JP_IN", Subject: natsregion.DefaultSubjectPrefix + ".>", LocalSubject: "tokyo.local"},
		// Tokyo applies what it is told (it answers only a notice it
		// applied): here it notes the subject.
		Erasures: broker.ErasureFunc(func(_ context.Context, subject string, _ time.Time) error {
			if subject != "cust-9" {
				t.Errorf("Tokyo told to erase %q", subject)
			}
			return nil
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	local := make(chan *nats.Msg, 4)
	localSub, err := nc.ChanSubscribe("tokyo.local", local)
	if err != nil {
		t.Fatal(err)
	}
	defer localSub.Unsubscribe()
	if err := tokyo.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tokyo.Stop(context.Background()) })
	store, err := policy.OpenStore(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	notifier, err := erasure.New(t.Context(), erasure.Options{
		DB: db, Audit: auditLog, Keys: ring, Connectors: conns, SubjectKey: brokertest.SubjectKey,
		Parties:       func() erasure.Parties { return engine.Registry() },
		ErasedSubject: erasure.ErasedSubjects(engine.Registry, brokertest.SubjectKey),
		// A first attempt answers well within EscalateAfter even on a loaded
		// machine; the processor's third attempt (after 400 and 800 ms) comes
		// after it.
		EscalateAfter: 500 * time.Millisecond, RetryBase: 400 * time.Millisecond, RetryMax: 2 * time.Second, Poll: 20 * time.Millisecond,
		Verifier: ring,
		// As clearance serve wires it.
		NeedsPartyKey: broker.NeedsPartyKey,
	})
	if err != nil {
		t.Fatal(err)
	}
	notifier.Start()
	t.Cleanup(notifier.Stop)
	stopAcks, err := notifier.ListenAcks(nc) // Tokyo answers on this NATS
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopAcks)
	live, err := policy.Start(t.Context(), policy.Options{Store: store, Engine: engine, NATS: nc, Audit: auditLog,
		OnErasure: func(ctx context.Context, subject string, at time.Time) error {
			_, err := notifier.Begin(ctx, subject, at)
			return err
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(live.Stop)
	if _, _, err := live.Apply(t.Context(), reg); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	live.Mount(mux, nil)
	notifier.Mount(mux, nil)
	api := httptest.NewServer(mux)
	t.Cleanup(api.Close)

	resp, err := http.Post(api.URL+"/v1/subjects/cust-9/erasure", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("erasure: %d", resp.StatusCode)
	}

	status := func() map[string]erasure.Notice {
		resp, err := http.Get(api.URL + "/v1/subjects/cust-9/erasure")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body struct{ Notices []erasure.Notice }
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatal(err)
		}
		out := map[string]erasure.Notice{}
		for _, n := range body.Notices {
			out[n.Recipient] = n
		}
		return out
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		st := status()
		if st["swiftship-de"].Status == erasure.StatusAcknowledged && st["bka-de"].Status == erasure.StatusUndeliverable &&
			st["dc-tokyo"].Status == erasure.StatusAcknowledged && st["dc-singapore"].Status == erasure.StatusUndeliverable {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("notices never settled: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}

	req, _ := http.NewRequest(http.MethodPost, api.URL+"/v1/subjects/cust-9/erasure/dc-singapore/justification",
		strings.NewReader(`{"officer":"dpo-1","justification":"data centre decommissioned; disks destroyed under certificate DC-77"}`))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("justification: %d", resp.StatusCode)
	}

	st := status()
	tests := []struct {
		recipient string
		status    erasure.Status
		attempts  int
		escalated bool
		requests  []string
	}{
		{"swiftship-de", erasure.StatusAcknowledged, 3, true, []string{"ord-1", "ord-2"}},
		// A webhook encrypts to its party's own key, which the
		// authority has not given: nothing it could open was sent.
		{"bka-de", erasure.StatusUndeliverable, 1, false, []string{"lo-1"}},
		// Acknowledged on Tokyo's answer; resent meanwhile if it was slow.
		{"dc-tokyo", erasure.StatusAcknowledged, -1, false, []string{"host-1"}},
		{"dc-singapore", erasure.StatusJustified, 1, false, []string{"host-2"}},
	}
	if len(st) != len(tests) {
		t.Fatalf("notices for %d recipients, want %d (none for a denied request): %+v", len(st), len(tests), st)
	}
	for _, tt := range tests {
		t.Run(tt.recipient, func(t *testing.T) {
			n := st[tt.recipient]
			if n.Status != tt.status || (tt.attempts >= 0 && n.Attempts != tt.attempts) || n.Attempts < 1 || (n.EscalatedAt != nil) != tt.escalated ||
				strings.Join(n.RequestIDs, ",") != strings.Join(tt.requests, ",") {
				t.Fatalf("notice %+v, want %s after %d attempts, escalated %v, requests %v", n, tt.status, tt.attempts, tt.escalated, tt.requests)
			}
		})
	}

	// Each recipient can open and verify its notice; nobody else can read it.
	open := map[string][]byte{}
	bodies, kinds, _ := processor.accepted()
	if len(bodies) != 1 || kinds[0] != erasure.NoticeKind {
		t.Fatalf("processor accepted %d notices (%v)", len(bodies), kinds)
	}
	if open["swiftship-de"], err = pkey.Open(t.Context(), bodies[0], ring.JWKS); err != nil {
		t.Fatalf("processor cannot open its notice: %v", err)
	}
	if bodies, _, _ = authority.accepted(); len(bodies) != 0 {
		t.Fatalf("authority, without a key of its own, was sent %d notices", len(bodies))
	}
	js, _ := jetstream.New(nc)
	stream, err := js.Stream(t.Context(), "REGION_JP_IN")
	if err != nil {
		t.Fatal(err)
	}
	msg, err := stream.GetLastMsgForSubject(t.Context(), natsregion.DefaultSubjectPrefix+".dc-tokyo")
	if err != nil {
		t.Fatal(err)
	}
	open["dc-tokyo"] = openEnvelope(t, ring, msg.Data)
	select {
	case m := <-local:
		// Handed on as sent, but for the subject's id and the answer
		// subject, which the systems holding Tokyo's copies are not told.
		var got, sent erasure.NoticePayload
		if err := json.Unmarshal(m.Data, &got); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(open["dc-tokyo"], &sent); err != nil {
			t.Fatal(err)
		}
		if sent.Subject != "cust-9" || sent.AckSubject == "" {
			t.Fatalf("the notice to Tokyo: %s", open["dc-tokyo"])
		}
		sent.Subject, sent.AckSubject = "", ""
		if m.Header.Get(natsregion.HeaderKind) != erasure.NoticeKind || !reflect.DeepEqual(got, sent) || strings.Contains(string(m.Data), "cust-9") {
			t.Fatalf("Tokyo handed on %s (%s)", m.Data, m.Header.Get(natsregion.HeaderKind))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Tokyo's Clearance never handed the notice on")
	}
	received, err := auditLog.Query(t.Context(), audit.Filter{Event: audit.EventErasureNotified, RequestID: st["dc-tokyo"].ID})
	for wait := time.Now().Add(5 * time.Second); err == nil && len(received) < 2 && time.Now().Before(wait); {
		// The answer is audited right after the notice is marked.
		time.Sleep(20 * time.Millisecond)
		received, err = auditLog.Query(t.Context(), audit.Filter{Event: audit.EventErasureNotified, RequestID: st["dc-tokyo"].ID})
	}
	inbound, answered := 0, 0
	for _, e := range received {
		switch {
		case e.Source == "inbound":
			inbound++
		case strings.Join(e.Reasons, ",") != "" && e.Reasons[0] == "acknowledged_by_recipient":
			answered++
		}
	}
	if err != nil || inbound < 1 || answered != 1 {
		t.Fatalf("Tokyo's receipt of the notice and its answer are not audited: %+v %v", received, err)
	}
	for recipient, payload := range open {
		var p erasure.NoticePayload
		if err := json.Unmarshal(payload, &p); err != nil || p.Kind != erasure.NoticeKind || p.Recipient != recipient ||
			strings.Join(p.RequestIDs, ",") != strings.Join(st[recipient].RequestIDs, ",") {
			t.Errorf("%s opened %s (%v)", recipient, payload, err)
		}
		// A region's Clearance is told the subject (signed, sealed under
		// the keys the regions share), to apply the erasure; a partner
		// only the requests.
		if strings.Contains(string(payload), "cust-9") != (recipient == "dc-tokyo") {
			t.Errorf("%s notice: %s", recipient, payload)
		}
	}

	counts := map[audit.Event]int{}
	err = auditLog.Scan(t.Context(), audit.Filter{SubjectID: "cust-9"}, func(e *audit.Entry) error {
		counts[e.Event]++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Notified: two recipients' acknowledgements and Tokyo's receipts,
	// which name the subject it applied.
	if counts[audit.EventErasureNotified] != 2+inbound || counts[erasure.EventErasureEscalated] != 1 ||
		counts[erasure.EventErasureJustified] != 1 || counts[audit.EventErasureRecorded] != 1 {
		t.Errorf("audit events for the subject: %v", counts)
	}
}

// openEnvelope opens a signed-then-sealed notice with the broker's keys.
func openEnvelope(t *testing.T, ring *keys.DevKeyRing, body []byte) []byte {
	t.Helper()
	if strings.Contains(string(body), "request_ids") {
		t.Fatal("notice travelled in clear")
	}
	signed, err := ring.Open(t.Context(), body)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := ring.Verify(t.Context(), signed)
	if err != nil {
		t.Fatal(err)
	}
	return payload
}
