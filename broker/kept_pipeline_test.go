package broker_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/broker"
	"github.com/clearance-broker/clearance/broker/brokertest"
	"github.com/clearance-broker/clearance/shred"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// keptSubject is the subject the example request 01 names.
const keptSubject = "cust-881"

// newSubjectKeyEnv builds an env whose broker seals what it keeps under
// subject keys (a shred.Keyring on a SQLite database of its own, its
// destructions audited in the env's log), tuned further by tune, and
// returns it with the key ring and a channel of order-service's receipts.
func newSubjectKeyEnv(t *testing.T, tune func(*broker.Options)) (*env, *shred.Keyring, <-chan *nats.Msg) {
	t.Helper()
	var ring *shred.Keyring
	e := newEnvWith(t, brokertest.StartNATS(t), 5, func(o *broker.Options) {
		db, err := audit.OpenDB(t.Context(), "sqlite://"+filepath.Join(t.TempDir(), "subject-keys.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		ring, err = shred.Open(t.Context(), shred.Options{DB: db, Keys: o.Keys, Audit: o.Audit, SubjectKey: brokertest.SubjectKey})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(ring.Close)
		o.Subjects = ring
		if tune != nil {
			tune(o)
		}
	})
	receipts := make(chan *nats.Msg, 8)
	sub, err := e.nc.ChanSubscribe(broker.ReceiptsSubject+".order-service", receipts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return e, ring, receipts
}

// misrouted is example request 01 claiming another source than the
// subject it is published on: it parses, names its subject, and is
// rejected by the routing check.
func misrouted(t *testing.T) []byte {
	t.Helper()
	req := string(brokertest.ExampleRequest(t, "01-delivery-eea-allow.json"))
	bad := strings.Replace(req, `"source": "order-service"`, `"source": "crm"`, 1)
	if bad == req {
		t.Fatal("example request 01 no longer names its source as expected")
	}
	return []byte(bad)
}

// unparsable is example request 01 with a key the parser does not know:
// it is refused before it parses, yet it names its subject.
func unparsable(t *testing.T) []byte {
	t.Helper()
	req := string(brokertest.ExampleRequest(t, "01-delivery-eea-allow.json"))
	bad := strings.Replace(req, `"source": "order-service"`, `"source": "order-service", "priority": "high"`, 1)
	if bad == req {
		t.Fatal("example request 01 no longer names its source as expected")
	}
	return []byte(bad)
}

// malformed is example request 01 with a comma after its record: not
// JSON, yet it names its subject before the syntax error.
func malformed(t *testing.T) []byte {
	t.Helper()
	req := string(brokertest.ExampleRequest(t, "01-delivery-eea-allow.json"))
	end := strings.LastIndex(req, "}")
	if end < 0 || !strings.Contains(req[:end], `"record"`) {
		t.Fatal("example request 01 no longer ends with its record")
	}
	return []byte(req[:end] + "," + req[end:])
}

// awaitReceipt returns the next receipt on receipts for request id.
func awaitReceipt(t *testing.T, receipts <-chan *nats.Msg, id string) broker.Receipt {
	t.Helper()
	for {
		select {
		case m := <-receipts:
			var r broker.Receipt
			if err := json.Unmarshal(m.Data, &r); err != nil {
				t.Fatal(err)
			}
			if r.RequestID == id {
				return r
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no receipt for %s", id)
		}
	}
}

// deadLetterAfter returns the last dead letter on subject once its stream
// sequence is above after.
func deadLetterAfter(t *testing.T, js jetstream.JetStream, subject string, after uint64) *jetstream.RawStreamMsg {
	t.Helper()
	var m *jetstream.RawStreamMsg
	waitFor(t, "a new dead letter", func() bool {
		m = lastDeadLetter(t, js, subject)
		return m.Sequence > after
	})
	return m
}

// checkSubjectSealed fails t unless dl is want sealed under the subject's
// key, and not in clear.
func checkSubjectSealed(t *testing.T, ring *shred.Keyring, dl *jetstream.RawStreamMsg, want []byte) {
	t.Helper()
	if ref := dl.Header.Get("Clearance-Key-Ref"); ref != broker.SubjectKeyRef {
		t.Fatalf("dead letter under %q, want %q", ref, broker.SubjectKeyRef)
	}
	if bytes.Contains(dl.Data, []byte("Ada Lovelace")) {
		t.Error("dead letter holds the record in clear")
	}
	if got, err := ring.Open(t.Context(), dl.Data); err != nil || !bytes.Equal(broker.KeptData(got), want) {
		t.Errorf("dead letter does not open to the request under the subject's key: %v", err)
	}
}

// checkNothingKept fails t unless dl, the dead letter of a request of an
// erased subject, holds nothing of it: only its ids and reasons, in
// headers.
func checkNothingKept(t *testing.T, dl *jetstream.RawStreamMsg, id string) {
	t.Helper()
	if len(dl.Data) != 0 {
		t.Errorf("dead letter keeps %d bytes under %q", len(dl.Data), dl.Header.Get("Clearance-Key-Ref"))
	}
	if dl.Header.Get("Clearance-Request-Id") != id {
		t.Errorf("dead letter headers = %v", dl.Header)
	}
}

// A request that parsed but is refused (here: its source is not the subject
// it was published on) names its subject: its dead letter is sealed under
// the subject's key, so that an erasure destroys it, not under the broker's
// shared key. So does one the parser refuses, even one that is not JSON.
func TestRejectedDeadLetterUnderSubjectKey(t *testing.T) {
	for _, tc := range []struct {
		name   string
		data   func(*testing.T) []byte
		reason string
	}{
		{"misrouted", misrouted, "invalid_request: source"},
		{"refused by the parser", unparsable, "invalid_request: priority"},
		{"not JSON", malformed, "invalid_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, ring, receipts := newSubjectKeyEnv(t, nil)
			bad := tc.data(t)
			publishData(t, e, bad, "ord-10023-delivery")
			r := awaitReceipt(t, receipts, "ord-10023-delivery")
			if r.Status != broker.StatusRejected || len(r.Reasons) != 1 || !strings.HasPrefix(r.Reasons[0], tc.reason) {
				t.Fatalf("receipt = %+v", r)
			}
			checkSubjectSealed(t, ring, lastDeadLetter(t, e.js, broker.DeadLetterSubject+".order-service"), bad)
			if ev := events(e.entries(t, "ord-10023-delivery")); ev != "rejected" {
				t.Errorf("audit events = %s, want rejected", ev)
			}
			if strings.Contains(e.logs.String(), keptSubject) {
				t.Error("a log line holds the subject id")
			}
		})
	}
}

// Nothing is kept of a refused request that names two subjects (the
// subject given twice, the second another's): under either's key it would
// outlive the other's erasure, where it was kept under the last one's.
// Its dead letter carries ids and reasons only, and its rejection is
// audited.
func TestRejectedDeadLetterOfTwoSubjectsKeepsNothing(t *testing.T) {
	for _, tc := range []struct{ name, tail string }{
		{"valid JSON", `}`},
		{"then a syntax error", `,}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, _, receipts := newSubjectKeyEnv(t, nil)
			req := string(brokertest.ExampleRequest(t, "01-delivery-eea-allow.json"))
			end := strings.LastIndex(req, "}")
			bad := req[:end] + `, "subject": {"id": "cust-other"}` + tc.tail
			publishData(t, e, []byte(bad), "ord-10023-delivery")
			if r := awaitReceipt(t, receipts, "ord-10023-delivery"); r.Status != broker.StatusRejected {
				t.Fatalf("receipt = %+v", r)
			}
			checkNothingKept(t, lastDeadLetter(t, e.js, broker.DeadLetterSubject+".order-service"), "ord-10023-delivery")
			if ev := events(e.entries(t, "ord-10023-delivery")); ev != "rejected" {
				t.Errorf("audit events = %s, want rejected", ev)
			}
		})
	}
}

// Nothing of a refused request of an erased subject is kept: its dead
// letter carries ids and reasons only, and its rejection is audited.
func TestRejectedDeadLetterOfErasedSubjectKeepsNothing(t *testing.T) {
	e, ring, receipts := newSubjectKeyEnv(t, nil)
	if _, err := ring.Destroy(t.Context(), keptSubject, "test"); err != nil {
		t.Fatal(err)
	}
	publishData(t, e, misrouted(t), "ord-10023-delivery")
	if r := awaitReceipt(t, receipts, "ord-10023-delivery"); r.Status != broker.StatusRejected {
		t.Fatalf("receipt = %+v", r)
	}
	checkNothingKept(t, lastDeadLetter(t, e.js, broker.DeadLetterSubject+".order-service"), "ord-10023-delivery")
	if ev := events(e.entries(t, "ord-10023-delivery")); ev != "rejected" {
		t.Errorf("audit events = %s, want rejected", ev)
	}
}

// A request sent again after the transfer stream's de-duplication window
// is answered from the audit log, which holds its subject only as an HMAC,
// and dead-lettered again under an id of its own. That dead letter is
// sealed under the subject's key too, as the first was; once the subject is
// erased, nothing of one sent again is kept. This holds for a delivery that
// failed permanently and for a request refused after it parsed.
func TestRecordedDeadLetterUnderSubjectKey(t *testing.T) {
	const window = 300 * time.Millisecond
	tests := []struct {
		name string
		data func(*testing.T) []byte
		want string
	}{
		{"delivery failed", func(t *testing.T) []byte { return brokertest.ExampleRequest(t, "01-delivery-eea-allow.json") }, broker.StatusDeadLettered},
		{"rejected", misrouted, broker.StatusRejected},
		{"refused by the parser", unparsable, broker.StatusRejected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, ring, receipts := newSubjectKeyEnv(t, func(o *broker.Options) { o.Stream.DuplicateWindow = window })
			e.partner.SetStatus(http.StatusBadRequest) // permanent: the delivery is dead-lettered
			const id, subject = "ord-10023-delivery", broker.DeadLetterSubject + ".order-service"
			data := tt.data(t)
			publishData(t, e, data, id)
			first := awaitReceipt(t, receipts, id)
			if first.Status != tt.want {
				t.Fatalf("first receipt = %+v", first)
			}
			dl := lastDeadLetter(t, e.js, subject)
			checkSubjectSealed(t, ring, dl, data)

			time.Sleep(3 * window) // the stream no longer knows the id
			publishData(t, e, data, id)
			if again := awaitReceipt(t, receipts, id); again.Status != tt.want || again.AuditSequence != first.AuditSequence {
				t.Fatalf("resent answered %+v, want the recorded %+v", again, first)
			}
			dl = deadLetterAfter(t, e.js, subject, dl.Sequence)
			checkSubjectSealed(t, ring, dl, data)

			if _, err := ring.Destroy(t.Context(), keptSubject, "test"); err != nil {
				t.Fatal(err)
			}
			time.Sleep(3 * window)
			publishData(t, e, data, id)
			if again := awaitReceipt(t, receipts, id); again.Status != tt.want || again.AuditSequence != first.AuditSequence {
				t.Fatalf("resent after the erasure answered %+v, want the recorded %+v", again, first)
			}
			checkNothingKept(t, deadLetterAfter(t, e.js, subject, dl.Sequence), id)
			if n := len(e.partner.Received()); n > 1 {
				t.Errorf("partner received %d deliveries, want at most the first", n)
			}
		})
	}
}
