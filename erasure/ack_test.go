package erasure_test

import (
	"encoding/json"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/broker"
	"github.com/clearance-broker/clearance/broker/brokertest"
	"github.com/clearance-broker/clearance/erasure"
	"github.com/clearance-broker/clearance/internal/syncbuf"
)

func TestAcknowledgeRefuses(t *testing.T) {
	ring := brokertest.DevKeys(t, filepath.Join(t.TempDir(), "ring.json"))
	other := brokertest.DevKeys(t, filepath.Join(t.TempDir(), "other.json"))
	log, db := brokertest.OpenAudit(t, brokertest.SQLiteDSN(t), ring)
	reg := brokertest.ExampleRegistry(t, nil)
	n, err := erasure.New(t.Context(), erasure.Options{
		DB: db, Audit: log, Keys: ring, Verifier: ring, SubjectKey: brokertest.SubjectKey,
		Connectors: broker.ConnectorMap{}, Parties: func() erasure.Parties { return reg },
	})
	if err != nil {
		t.Fatal(err)
	}
	signed := func(t *testing.T, byOther bool, a erasure.AckPayload) []byte {
		t.Helper()
		b, _ := json.Marshal(a)
		signer := ring
		if byOther {
			signer = other
		}
		out, err := signer.Sign(t.Context(), [][]byte{b})
		if err != nil {
			t.Fatal(err)
		}
		return out[0]
	}
	tests := []struct {
		name    string
		ack     func(t *testing.T) []byte
		unknown bool // a verified acknowledgement of a notice sent elsewhere
	}{
		{"not a JWS", func(*testing.T) []byte { return []byte("not.a.jws") }, false},
		{"signed by another key", func(t *testing.T) []byte {
			return signed(t, true, erasure.AckPayload{Kind: erasure.AckKind, NoticeID: "erasure-x", Recipient: "dc-tokyo"})
		}, false},
		{"wrong kind", func(t *testing.T) []byte {
			return signed(t, false, erasure.AckPayload{Kind: erasure.NoticeKind, NoticeID: "erasure-x", Recipient: "dc-tokyo"})
		}, false},
		{"unknown notice", func(t *testing.T) []byte {
			return signed(t, false, erasure.AckPayload{Kind: erasure.AckKind, NoticeID: "erasure-x", Recipient: "dc-tokyo"})
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := n.Acknowledge(t.Context(), tt.ack(t))
			if !errors.Is(err, erasure.ErrBadAck) || errors.Is(err, erasure.ErrUnknownNotice) != tt.unknown {
				t.Fatalf("Acknowledge = %v, want ErrBadAck (ErrUnknownNotice: %v)", err, tt.unknown)
			}
		})
	}

	// ListenAcks warns of the refused ones, but not of an answer to a
	// notice sent elsewhere: a receiving region hears its own answers.
	var logs syncbuf.Buffer
	n, err = erasure.New(t.Context(), erasure.Options{
		DB: db, Audit: log, Keys: ring, Verifier: ring, SubjectKey: brokertest.SubjectKey,
		Connectors: broker.ConnectorMap{}, Parties: func() erasure.Parties { return reg },
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatal(err)
	}
	nc := brokertest.Connect(t, brokertest.StartNATS(t))
	stop, err := n.ListenAcks(nc)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	// Last first: one subscription handles its messages in order, so the
	// answer to the notice sent elsewhere is handled before the warnings
	// waited for below.
	for i := len(tests) - 1; i >= 0; i-- {
		if err := nc.Publish(erasure.AckSubjectPrefix+".erasure-x", tests[i].ack(t)); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	want := len(tests) - 1
	for deadline := time.Now().Add(10 * time.Second); strings.Count(logs.String(), "erasure acknowledgement refused") < want; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d warnings, want %d:\n%s", strings.Count(logs.String(), "erasure acknowledgement refused"), want, logs.String())
		}
	}
	if got := strings.Count(logs.String(), "level=WARN"); got != want || strings.Contains(logs.String(), "no such notice") {
		t.Errorf("%d warnings, want %d, none for the notice sent elsewhere:\n%s", got, want, logs.String())
	}
}

// TestErasedSubjects finds an erased subject by its HMAC in the registry in
// force, and follows a new version: an erasure recorded since is found.
func TestErasedSubjects(t *testing.T) {
	reg := brokertest.ExampleRegistry(t, nil)
	lookup := erasure.ErasedSubjects(func() *agreements.Registry { return reg }, brokertest.SubjectKey)
	hmac := func(id string) string { return audit.SubjectHMAC(brokertest.SubjectKey, id) }
	if id, ok := lookup(hmac("cust-13")); !ok || id != "cust-13" {
		t.Fatalf("the example's erased subject: %q %v", id, ok)
	}
	if id, ok := lookup(hmac("cust-99")); ok {
		t.Fatalf("a subject never erased found as %q", id)
	}
	next, err := reg.With(agreements.Change{Erasures: []agreements.Erasure{{Subject: "cust-99", At: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)}}})
	if err != nil {
		t.Fatal(err)
	}
	reg = next
	if id, ok := lookup(hmac("cust-99")); !ok || id != "cust-99" {
		t.Fatalf("an erasure of the new version: %q %v", id, ok)
	}
	// A registry in force without the erasure: the subject is not found,
	// though its HMAC is known.
	c := reg.Content()
	c.Erasures = nil
	if reg, err = agreements.New(c); err != nil {
		t.Fatal(err)
	}
	if id, ok := lookup(hmac("cust-99")); ok {
		t.Fatalf("a subject the registry in force holds no erasure of found as %q", id)
	}
}

// TestAcknowledgeAuditFails: an acknowledgement whose audit entry cannot
// be appended closes the notice with its entry pending, which the same
// answer given again, or else the next round, appends, once; instances
// hearing one answer at once record it once.
func TestAcknowledgeAuditFails(t *testing.T) {
	onEachStore(t, func(t *testing.T, dsn string) {
		var flaky *flakyAudit
		n, log, ring := newNotifier(t, dsn, func(o *erasure.Options) {
			flaky = &flakyAudit{AuditLog: o.Audit, event: audit.EventErasureNotified}
			o.Audit = flaky
			o.Poll = 5 * time.Millisecond
		})
		ack := func(t *testing.T, subject string) []byte {
			t.Helper()
			notice := pendingNotice(t, n, log, subject, "dc-tokyo")
			b, _ := json.Marshal(erasure.AckPayload{Kind: erasure.AckKind, NoticeID: notice.ID, Recipient: "dc-tokyo", AppliedAt: time.Now()})
			out, err := ring.Sign(t.Context(), [][]byte{b})
			if err != nil {
				t.Fatal(err)
			}
			return out[0]
		}
		answered := func(t *testing.T, subject string, want int) {
			t.Helper()
			got := 0
			for _, e := range entries(t, log, audit.EventErasureNotified) {
				if e.SubjectHMAC == audit.SubjectHMAC(brokertest.SubjectKey, subject) {
					got++
				}
			}
			list, err := n.Status(t.Context(), subject)
			if got != want || err != nil || len(list) != 1 || list[0].Status != erasure.StatusAcknowledged {
				t.Fatalf("%d entries, notices %+v (%v); want %d entries, acknowledged", got, list, err, want)
			}
		}

		t.Run("retried", func(t *testing.T) {
			signed := ack(t, "cust-20")
			flaky.fail = 1
			if err := n.Acknowledge(t.Context(), signed); !errors.Is(err, errAuditDown) {
				t.Fatalf("Acknowledge = %v, want the audit log's error", err)
			}
			answered(t, "cust-20", 0)
			for range 2 { // the retry appends the entry, the next nothing
				if err := n.Acknowledge(t.Context(), signed); err != nil {
					t.Fatal(err)
				}
				answered(t, "cust-20", 1)
			}
		})
		t.Run("heard at once", func(t *testing.T) {
			signed := ack(t, "cust-21")
			var wg sync.WaitGroup
			errs := make([]error, 4)
			for i := range errs {
				wg.Go(func() { errs[i] = n.Acknowledge(t.Context(), signed) })
			}
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				t.Fatal(err)
			}
			answered(t, "cust-21", 1)
		})
		t.Run("not retried", func(t *testing.T) {
			signed := ack(t, "cust-22")
			flaky.fail = 1
			if err := n.Acknowledge(t.Context(), signed); !errors.Is(err, errAuditDown) {
				t.Fatalf("Acknowledge = %v, want the audit log's error", err)
			}
			n.Start()
			t.Cleanup(n.Stop)
			deadline := time.Now().Add(10 * time.Second)
			for len(entries(t, log, audit.EventErasureNotified)) < 3 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			time.Sleep(50 * time.Millisecond) // rounds that would append it again
			answered(t, "cust-22", 1)
			if err := n.Acknowledge(t.Context(), signed); err != nil {
				t.Fatal(err)
			}
			answered(t, "cust-22", 1)
		})
	})
}
