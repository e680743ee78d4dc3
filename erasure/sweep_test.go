package erasure_test

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/broker"
	"github.com/clearance-broker/clearance/broker/brokertest"
	"github.com/clearance-broker/clearance/erasure"
)

// TestNoticesSweep: deliveries of an erased subject's data audited after
// its notices were made (a delivery under way when the erasure came into
// force, or one an erasure dated ahead let through) are found by the
// sweep: a recipient notified already is notified again of every request,
// and a new recipient gets a notice of its own.
func TestNoticesSweep(t *testing.T) {
	onEachStore(t, func(t *testing.T, dsn string) {
		conn := &answering{}
		n, log, _ := newNotifier(t, dsn, func(o *erasure.Options) {
			o.Connectors = broker.ConnectorMap{"partner-webhook": conn}
			o.RetryBase, o.RetryMax, o.Poll = 5*time.Millisecond, 20*time.Millisecond, 5*time.Millisecond
			o.SweepAfter = 300 * time.Millisecond
		})
		delivered := func(id, recipient, subject string) {
			t.Helper()
			if _, err := log.Append(t.Context(), &audit.Entry{Event: audit.EventDelivered, RequestID: id, Recipient: recipient, SubjectID: subject}); err != nil {
				t.Fatal(err)
			}
		}
		notices := func(subject string) map[string]erasure.Notice {
			t.Helper()
			list, err := n.Status(t.Context(), subject)
			if err != nil {
				t.Fatal(err)
			}
			m := map[string]erasure.Notice{}
			for _, x := range list {
				m[x.Recipient] = x
			}
			return m
		}
		await := func(what, subject string, done func(map[string]erasure.Notice) bool) {
			t.Helper()
			deadline := time.Now().Add(10 * time.Second)
			for st := notices(subject); !done(st); st = notices(subject) {
				if time.Now().After(deadline) {
					t.Fatalf("%s: notices %+v", what, st)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
		acknowledged := func(recipient string, ids ...string) func(map[string]erasure.Notice) bool {
			return func(st map[string]erasure.Notice) bool {
				x := st[recipient]
				return x.Status == erasure.StatusAcknowledged && slices.Equal(x.RequestIDs, ids)
			}
		}
		n.Start()
		t.Cleanup(n.Stop)

		delivered("r1", "swiftship-de", "cust-5")
		if _, err := n.Begin(t.Context(), "cust-5", time.Now()); err != nil {
			t.Fatal(err)
		}
		await("the first notice", "cust-5", acknowledged("swiftship-de", "r1"))
		// Deliveries under way when the erasure came into force,
		// audited once the notice was acknowledged.
		delivered("r2", "swiftship-de", "cust-5")
		delivered("r3", "fastfreight-us", "cust-5")
		await("after the sweep", "cust-5", func(st map[string]erasure.Notice) bool {
			return acknowledged("swiftship-de", "r1", "r2")(st) && acknowledged("fastfreight-us", "r3")(st)
		})
		if a := notices("cust-5")["swiftship-de"].Attempts; a != 2 {
			t.Errorf("swiftship-de's notice sent %d times, want 2", a)
		}

		// An erasure dated ahead: the data flows until then, and what
		// flowed is notified once it is in force.
		if _, err := n.Begin(t.Context(), "cust-6", time.Now().Add(400*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		delivered("r4", "cargolink-us", "cust-6")
		await("an erasure dated ahead", "cust-6", acknowledged("cargolink-us", "r4"))
	})
}

// TestAcknowledgementOfOlderNotice: a region's answer to a notice sent
// before the notice was extended with more requests does not close it.
func TestAcknowledgementOfOlderNotice(t *testing.T) {
	n, log, ring := newNotifier(t, brokertest.SQLiteDSN(t), nil)
	for _, id := range []string{"r1", "r2"} {
		if id == "r2" {
			if _, err := n.Begin(t.Context(), "cust-5", time.Now()); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := log.Append(t.Context(), &audit.Entry{Event: audit.EventDelivered, RequestID: id, Recipient: "dc-tokyo", SubjectID: "cust-5"}); err != nil {
			t.Fatal(err)
		}
	}
	before, err := n.Status(t.Context(), "cust-5")
	if err != nil || len(before) != 1 {
		t.Fatalf("notices %+v, %v", before, err)
	}
	if _, err := n.Begin(t.Context(), "cust-5", time.Now()); err != nil { // extends it with r2
		t.Fatal(err)
	}
	ack, _ := json.Marshal(erasure.AckPayload{Kind: erasure.AckKind, NoticeID: before[0].ID, Recipient: "dc-tokyo", AppliedAt: time.Now().UTC()})
	signed, err := ring.Sign(t.Context(), [][]byte{ack})
	if err != nil {
		t.Fatal(err)
	}
	_ = n.Acknowledge(t.Context(), signed[0]) // an answer to the send of [r1]
	after, err := n.Status(t.Context(), "cust-5")
	if err != nil || len(after) != 1 || after[0].Status != erasure.StatusPending || !slices.Equal(after[0].RequestIDs, []string{"r1", "r2"}) {
		t.Fatalf("after an answer to the older send: %+v, %v", after, err)
	}
}
