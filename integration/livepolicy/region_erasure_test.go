package livepolicy

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/broker"
	"github.com/clearance-broker/clearance/broker/brokertest"
	"github.com/clearance-broker/clearance/connectors"
	"github.com/clearance-broker/clearance/connectors/natsregion"
	"github.com/clearance-broker/clearance/erasure"
	"github.com/clearance-broker/clearance/policy"
	"github.com/clearance-broker/clearance/shred"
	"github.com/nats-io/nats.go"
)

// TestErasureRegionAppliesAndAnswers erases a subject whose data went to
// the Tokyo region. EU and Tokyo each run their own NATS server and their
// own store (registry, audit log, subject keys). Tokyo's Clearance applies
// the notice to its own copies (records the erasure in its registry, so
// its engine denies the subject from then on, and destroys its subject
// key) and answers with a signed acknowledgement; EU marks Tokyo
// acknowledged on that answer only: while EU does not hear it, the notice
// stays pending although Tokyo's stream accepted every attempt.
func TestErasureRegionAppliesAndAnswers(t *testing.T) {
	euSrv, jpSrv := brokertest.StartNATS(t), brokertest.StartNATS(t)
	eu, jp := brokertest.Connect(t, euSrv), brokertest.Connect(t, jpSrv)
	euToJP := brokertest.Connect(t, jpSrv) // EU's connection to Tokyo's NATS, for the answers
	ring := brokertest.DevKeys(t, devRing(t))
	reg := brokertest.ExampleRegistry(t, newRecipient(t, 0).key.PublicJWK)

	// Tokyo: its own store, registry, subject keys and inbound broker.
	jpAudit, jpDB := brokertest.OpenAudit(t, brokertest.PostgresDSN(t), ring)
	jpKeys, err := shred.Open(t.Context(), shred.Options{DB: jpDB, Keys: ring, Audit: jpAudit, SubjectKey: brokertest.SubjectKey, NATS: jp})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(jpKeys.Close)
	jpEngine := agreements.NewEngine(reg)
	jpStore, err := policy.OpenStore(t.Context(), jpDB)
	if err != nil {
		t.Fatal(err)
	}
	jpLive, err := policy.Start(t.Context(), policy.Options{Store: jpStore, Engine: jpEngine, NATS: jp, Audit: jpAudit,
		OnErasure: func(ctx context.Context, subject string, _ time.Time) error {
			_, err := jpKeys.Destroy(ctx, subject, "dead letters, retry copies, regional streams")
			return err
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(jpLive.Stop)
	if _, _, err := jpLive.Apply(t.Context(), reg); err != nil {
		t.Fatal(err)
	}
	var applied atomic.Int32
	apply := broker.ErasureFunc(func(ctx context.Context, subject string, at time.Time) error {
		applied.Add(1)
		if slices.ContainsFunc(jpEngine.Registry().Content().Erasures, func(e agreements.Erasure) bool { return e.Subject == subject }) {
			_, err := jpKeys.Destroy(ctx, subject, "dead letters, retry copies, regional streams") // idempotent
			return err
		}
		_, err := jpLive.Change(ctx, agreements.Change{Erasures: []agreements.Erasure{{Subject: subject, At: at}}})
		return err
	})
	startBrokerWith(t, broker.Options{
		NATS: jp, Decider: jpEngine, Parties: broker.PartiesOf(jpEngine), Keys: ring, Audit: jpAudit, Subjects: jpKeys,
		Connectors: broker.ConnectorMap{}, Erasures: apply, Inbound: tokyoInbound(),
	})
	local := make(chan *nats.Msg, 16)
	sub, err := jp.ChanSubscribe("tokyo.local", local)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()

	// A copy Tokyo keeps of cust-9 under its own subject key, and a
	// transfer of cust-9 Tokyo's engine still allows.
	kept, err := jpKeys.Seal(t.Context(), "cust-9", []byte("a dead letter of cust-9"))
	if err != nil {
		t.Fatal(err)
	}
	req := strings.Replace(string(brokertest.ExampleRequest(t, "08-hosting-tokyo-adequacy.json")), "cust-44", "cust-9", 1)
	decide := func() *agreements.Decision {
		r, err := agreements.ParseRequest([]byte(req))
		if err != nil {
			t.Fatal(err)
		}
		return jpEngine.Decide(r, time.Now())
	}
	if d := decide(); slices.Contains(d.Reasons, agreements.ReasonSubjectErased) {
		t.Fatalf("Tokyo denies cust-9 before the erasure: %v", d.Reasons)
	}

	// EU: its own store; cust-9's data went to Tokyo.
	euAudit, euDB := brokertest.OpenAudit(t, brokertest.PostgresDSN(t), ring)
	if _, err := euAudit.Append(t.Context(), &audit.Entry{Event: audit.EventDelivered, RequestID: "host-9", Source: "test",
		Recipient: "dc-tokyo", Decision: "allow", SubjectID: "cust-9"}); err != nil {
		t.Fatal(err)
	}
	region, err := natsregion.New(t.Context(), "region-jp", &natsregion.Config{
		URLs: []string{jpSrv.ClientURL()}, SubjectPrefix: natsregion.DefaultSubjectPrefix,
		Replicas: 1, DuplicateWindow: connectors.Duration(time.Minute), AckTimeout: connectors.Duration(5 * time.Second),
		ConnectTimeout: connectors.Duration(5 * time.Second), ReconnectWait: connectors.Duration(time.Second), NoResponderRetries: 2,
		FullRetryAfter: connectors.Duration(time.Second),
	}, connectors.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = region.Close(context.Background()) })
	euEngine := agreements.NewEngine(reg)
	// Until known, EU's instance does not find the subject among its
	// registry's erasures, as one whose registry has not caught up yet.
	var known atomic.Bool
	erased := erasure.ErasedSubjects(euEngine.Registry, brokertest.SubjectKey)
	notifier, err := erasure.New(t.Context(), erasure.Options{
		DB: euDB, Audit: euAudit, Keys: ring, Verifier: ring, Connectors: broker.ConnectorMap{"region-jp": region},
		SubjectKey: brokertest.SubjectKey, Parties: func() erasure.Parties { return euEngine.Registry() },
		ErasedSubject: func(hmac string) (string, bool) {
			if !known.Load() {
				return "", false
			}
			return erased(hmac)
		},
		RetryBase: 100 * time.Millisecond, RetryMax: 300 * time.Millisecond, Poll: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	notifier.Start()
	t.Cleanup(notifier.Stop)
	euStore, err := policy.OpenStore(t.Context(), euDB)
	if err != nil {
		t.Fatal(err)
	}
	euLive, err := policy.Start(t.Context(), policy.Options{Store: euStore, Engine: euEngine, NATS: eu, Audit: euAudit,
		OnErasure: func(ctx context.Context, subject string, at time.Time) error {
			_, err := notifier.Begin(ctx, subject, at)
			return err
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(euLive.Stop)
	if _, _, err := euLive.Apply(t.Context(), reg); err != nil {
		t.Fatal(err)
	}

	if _, err := euLive.Change(t.Context(), agreements.Change{Erasures: []agreements.Erasure{{Subject: "cust-9", At: time.Now()}}}); err != nil {
		t.Fatal(err)
	}
	tokyo := func() erasure.Notice {
		ns, err := notifier.Status(t.Context(), "cust-9")
		if err != nil || len(ns) != 1 || ns[0].Recipient != "dc-tokyo" {
			t.Fatalf("notices %+v, %v", ns, err)
		}
		return ns[0]
	}

	// A notice that could not name the subject would reach Tokyo unable
	// to apply it, and be acknowledged: it waits instead.
	deadline := time.Now().Add(15 * time.Second)
	for n := tokyo(); n.Attempts < 2; n = tokyo() {
		if time.Now().After(deadline) {
			t.Fatalf("notice never tried again: %+v", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := tokyo(); n.Status != erasure.StatusPending || n.LastError != "subject_not_in_registry" {
		t.Fatalf("notice without the subject: %+v, want pending subject_not_in_registry", n)
	}
	select {
	case m := <-local:
		t.Fatalf("Tokyo handed on %s before EU could name the subject", m.Data)
	default:
	}
	if k := applied.Load(); k != 0 {
		t.Fatalf("Tokyo applied %d notices before EU could name the subject", k)
	}
	known.Store(true)
	attempts := tokyo().Attempts

	// Tokyo applies the notice, but EU does not listen for answers yet.
	select {
	case m := <-local:
		if m.Header.Get(natsregion.HeaderKind) != erasure.NoticeKind {
			t.Fatalf("Tokyo handed on %s", m.Header.Get(natsregion.HeaderKind))
		}
		if strings.Contains(string(m.Data), "cust-9") || strings.Contains(string(m.Data), "ack_subject") {
			t.Errorf("Tokyo handed the notice on with the subject or the answer subject: %s", m.Data)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Tokyo never handed the notice on")
	}
	if d := decide(); !slices.Contains(d.Reasons, agreements.ReasonSubjectErased) {
		t.Errorf("Tokyo's engine still allows cust-9 after the notice: %s %v", d.Decision, d.Reasons)
	}
	if _, err := jpKeys.Open(t.Context(), kept); !errors.Is(err, shred.ErrShredded) {
		t.Errorf("Tokyo's copy under cust-9's key still opens: %v", err)
	}
	if _, err := jpKeys.Seal(t.Context(), "cust-9", []byte("x")); !errors.Is(err, shred.ErrShredded) {
		t.Errorf("Tokyo still seals for cust-9: %v", err)
	}
	deadline = time.Now().Add(15 * time.Second)
	for n := tokyo(); n.Attempts < attempts+2; n = tokyo() {
		if n.Status != erasure.StatusPending {
			t.Fatalf("notice %s with nobody listening for the answer", n.Status)
		}
		if time.Now().After(deadline) {
			t.Fatalf("notice never sent again: %+v", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := tokyo(); n.Status != erasure.StatusPending || n.LastError != "awaiting_acknowledgement" || n.AcknowledgedAt != nil {
		t.Fatalf("accepted by Tokyo's stream but unanswered: %+v, want pending awaiting_acknowledgement", n)
	}

	// EU listens on Tokyo's NATS: the next attempt is answered.
	stop, err := notifier.ListenAcks(euToJP)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	for n := tokyo(); n.Status != erasure.StatusAcknowledged; n = tokyo() {
		if time.Now().After(deadline) {
			t.Fatalf("never acknowledged: %+v", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if k := applied.Load(); k < 2 {
		t.Errorf("Tokyo applied %d notices, want every attempt applied (idempotently)", k)
	}
	// The answer is audited right after the notice is marked.
	acks, err := euAudit.Query(t.Context(), audit.Filter{Event: audit.EventErasureNotified, SubjectID: "cust-9"})
	for err == nil && len(acks) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		acks, err = euAudit.Query(t.Context(), audit.Filter{Event: audit.EventErasureNotified, SubjectID: "cust-9"})
	}
	if err != nil || len(acks) != 1 || acks[0].Reasons[0] != "acknowledged_by_recipient" || acks[0].Recipient != "dc-tokyo" {
		t.Fatalf("EU's audit of the answer: %+v %v", acks, err)
	}
	recv, err := jpAudit.Query(t.Context(), audit.Filter{Event: audit.EventErasureNotified, SubjectID: "cust-9"})
	if err != nil || len(recv) < 2 || recv[0].Source != "inbound" || !slices.Contains(recv[0].Reasons, "applied") {
		t.Fatalf("Tokyo's audit of the notices it applied: %+v %v", recv, err)
	}
}
