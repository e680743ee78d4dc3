package policy_test

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/broker/brokertest"
	"github.com/clearance-broker/clearance/policy"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestRightsOverNATSAndHTTP(t *testing.T) {
	e := newEnv(t, brokertest.SQLiteDSN(t))
	n, receipts, js := e.intakeNode(t)
	api := n.rightsAPI(t)

	viaNATS := func(t *testing.T, subject, id, body string) policy.Receipt {
		t.Helper()
		return publishRights(t, js, receipts, subject, id, body)
	}
	viaHTTP := func(t *testing.T, path, body string) (int, policy.Receipt) {
		t.Helper()
		return api.post(t, path, "", body)
	}
	delivery, err := agreements.ParseRequest(brokertest.ExampleRequest(t, "01-delivery-eea-allow.json"))
	if err != nil {
		t.Fatal(err)
	}

	t.Run("withdrawal on NATS", func(t *testing.T) {
		rc := viaNATS(t, "clearance.consents.cms", "cms-1", `{"action":"withdraw","subject":"cust-7","purpose":"marketing","at":"2026-11-01T00:00:00Z"}`)
		if rc.Status != policy.StatusRecorded || rc.RequestID != "cms-1" {
			t.Fatalf("receipt %+v", rc)
		}
		if d := n.engine.Decide(marketing(t), at); d.Allowed() {
			t.Fatal("marketing still allowed after the withdrawal")
		}
	})
	t.Run("unknown purpose on NATS", func(t *testing.T) {
		rc := viaNATS(t, "clearance.consents.cms", "cms-2", `{"action":"grant","subject":"cust-7","purpose":"astrology"}`)
		if rc.Status != policy.StatusRejected || len(rc.Reasons) != 1 || !strings.Contains(rc.Reasons[0], `no purpose "astrology"`) {
			t.Fatalf("receipt %+v", rc)
		}
		es, err := e.audit.Query(t.Context(), audit.Filter{RequestID: policy.RejectionID("cms-2")})
		if err != nil || len(es) != 1 || es[0].Event != audit.EventRejected {
			t.Fatalf("audit %+v %v", es, err)
		}
	})
	t.Run("erasure on NATS", func(t *testing.T) {
		rc := viaNATS(t, "clearance.erasures.cms", "cms-3", `{"subject":"cust-881","at":"2026-11-01T00:00:00Z"}`)
		if rc.Status != policy.StatusRecorded {
			t.Fatalf("receipt %+v", rc)
		}
		if d := n.engine.Decide(delivery, at); d.Allowed() || d.Reasons[0] != agreements.ReasonSubjectErased {
			t.Fatalf("erased subject: %s %v", d.Decision, d.Reasons)
		}
	})
	t.Run("consent over HTTP", func(t *testing.T) {
		code, rc := viaHTTP(t, "/v1/consents", `{"action":"grant","subject":"cust-7","purpose":"marketing","at":"2026-11-10T00:00:00Z"}`)
		if code != 200 || rc.Status != policy.StatusRecorded || rc.RegistryVersion != n.engine.Registry().Version() {
			t.Fatalf("%d %+v", code, rc)
		}
		if d := n.engine.Decide(marketing(t), at); !d.Allowed() {
			t.Fatalf("a new consent after the withdrawal: %v", d.Reasons)
		}
	})
	t.Run("bad erasure over HTTP", func(t *testing.T) {
		code, rc := viaHTTP(t, "/v1/subjects/cust-9/erasure", `{"subject":"cust-10"}`)
		if code != 400 || rc.Status != policy.StatusRejected {
			t.Fatalf("%d %+v", code, rc)
		}
	})
	t.Run("every recorded change audited", func(t *testing.T) {
		if got := len(events(t, e.audit, audit.EventConsentRecorded)); got != 2 {
			t.Fatalf("%d consent entries, want 2", got)
		}
		if got := len(events(t, e.audit, audit.EventErasureRecorded)); got != 1 {
			t.Fatalf("%d erasure entries, want 1", got)
		}
	})
	t.Run("rejection already recorded on NATS", func(t *testing.T) {
		// Another instance (or an earlier delivery whose acknowledgement was
		// lost) recorded, and answered, the rejection of cms-4: the message
		// is terminated without a second entry or receipt, not retried (the
		// consumer takes one message at a time, so a retried one would hold
		// up cms-5).
		first := &audit.Entry{Time: time.Now(), Event: audit.EventRejected, RequestID: policy.RejectionID("cms-4"), Source: "cms", Decision: "deny",
			Reasons: []string{`invalid_request: no purpose "astrology"`}}
		if _, err := e.audit.Append(t.Context(), first); err != nil {
			t.Fatal(err)
		}
		msg := nats.NewMsg("clearance.consents.cms")
		msg.Data = []byte(`{"action":"grant","subject":"cust-7","purpose":"astrology"}`)
		msg.Header.Set(jetstream.MsgIDHeader, "cms-4")
		if _, err := js.PublishMsg(t.Context(), msg); err != nil {
			t.Fatal(err)
		}
		rc := viaNATS(t, "clearance.consents.cms", "cms-5", `{"action":"grant","subject":"cust-8","purpose":"marketing","at":"2026-11-10T00:00:00Z"}`)
		if rc.RequestID != "cms-5" || rc.Status != policy.StatusRecorded {
			t.Fatalf("receipt %+v, want cms-5 recorded (no receipt for cms-4)", rc)
		}
		es, err := e.audit.Query(t.Context(), audit.Filter{RequestID: policy.RejectionID("cms-4")})
		if err != nil || len(es) != 1 || es[0].Event != audit.EventRejected {
			t.Fatalf("audit %+v %v", es, err)
		}
		intakeSettled(t, js, "cms-4 terminated on its first delivery")
	})
}

// TestRightsOverNATSAuditDown: a consent published while the audit log is
// down is stored and in force at its first delivery; it is acknowledged
// and answered as recorded (its audit entry is written later), not handed
// back to be stored again at each redelivery.
func TestRightsOverNATSAuditDown(t *testing.T) {
	e := newEnv(t, brokertest.SQLiteDSN(t))
	var down atomic.Bool
	e.auditDown = &down
	n, receipts, js := e.intakeNode(t)

	down.Store(true)
	rc := publishRights(t, js, receipts, "clearance.consents.cms", "cms-80", `{"action":"grant","subject":"cust-80","purpose":"marketing"}`)
	if rc.RequestID != "cms-80" || rc.Status != policy.StatusRecorded || rc.Event != 2 {
		t.Fatalf("receipt %+v", rc)
	}
	time.Sleep(1500 * time.Millisecond) // a redelivery would come after a second
	if seq, _, err := e.store.Head(t.Context()); err != nil || seq != 2 {
		t.Fatalf("head at %d (%v), want the apply and one change", seq, err)
	}
	if cs, _ := n.engine.Registry().Subject("cust-80"); len(cs) != 1 {
		t.Fatalf("%d consents of the subject, want 1", len(cs))
	}
	intakeSettled(t, js, "the message acknowledged at its first delivery")
}

// TestRightsWithoutIDAfterStreamMadeAgain: a rights message sent without a
// Nats-Msg-Id is recorded under its place in the stream and the stream's
// creation time: after the stream is deleted and made again (its
// sequences start at 1 again), a withdrawal without an id is recorded, not
// refused as an id sent before with another message. An id in that
// namespace sent as a Nats-Msg-Id is not taken as it is either.
func TestRightsWithoutIDAfterStreamMadeAgain(t *testing.T) {
	e := newEnv(t, brokertest.SQLiteDSN(t))
	nc := brokertest.Connect(t, brokertest.StartNATS(t))
	n := e.startApplied(t, nc, registryDir(t))
	receipts := make(chan *nats.Msg, 16)
	sub, err := nc.ChanSubscribe(policy.ReceiptsSubject+".cms", receipts)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	js, _ := jetstream.New(nc)
	start := func() *policy.Intake {
		in, err := n.live.StartIntake(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return in
	}
	in := start()
	if rc := publishRights(t, js, receipts, "clearance.consents.cms", "",
		`{"action":"grant","subject":"cust-7","purpose":"marketing","recipients":["promoreach-nl"]}`); rc.Status != policy.StatusRecorded {
		t.Fatalf("the grant: %+v", rc)
	}
	in.Stop()
	time.Sleep(1100 * time.Millisecond) // the stream's creation time is kept in seconds
	if err := js.DeleteStream(t.Context(), policy.RightsStream); err != nil {
		t.Fatal(err)
	}
	in = start()
	defer in.Stop()
	rc := publishRights(t, js, receipts, "clearance.consents.cms", "",
		`{"action":"withdraw","subject":"cust-7","purpose":"marketing","at":"2026-11-01T00:00:00Z"}`)
	if rc.Status != policy.StatusRecorded {
		t.Fatalf("the withdrawal without an id after the stream was made again: %+v", rc)
	}
	if d := n.engine.Decide(consentFor(t, "cust-7"), at); d.Allowed() {
		t.Fatal("marketing still allowed after the withdrawal")
	}
	// An id in the fallback ids' namespace is replaced.
	rc = publishRights(t, js, receipts, "clearance.consents.cms", "rights-seq-1",
		`{"action":"grant","subject":"cust-8","purpose":"marketing","recipients":["promoreach-nl"]}`)
	if rc.Status != policy.StatusRecorded || rc.RequestID == "rights-seq-1" {
		t.Fatalf("a Nats-Msg-Id in the fallback namespace: %+v", rc)
	}
}
