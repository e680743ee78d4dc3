package erasure_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/broker"
	"github.com/clearance-broker/clearance/broker/brokertest"
	"github.com/clearance-broker/clearance/connectors"
	"github.com/clearance-broker/clearance/erasure"
)

// answering is a connector that answers each delivery with the next error
// of its script (nil when the script is used up) and counts the notices.
type answering struct {
	mu      sync.Mutex
	script  []error
	notices int
}

func (a *answering) Deliver(_ context.Context, d *connectors.Delivery) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if d.Kind == erasure.NoticeKind {
		a.notices++
	}
	if len(a.script) == 0 {
		return nil
	}
	err := a.script[0]
	a.script = a.script[1:]
	return err
}

func (a *answering) Close(context.Context) error { return nil }

var _ connectors.Connector = (*answering)(nil)

func TestNotices(t *testing.T) {
	// The partner first asks for a century's wait: it is honoured up to
	// RetryMax, so the notice still comes due (and would escalate).
	conn := &answering{script: []error{&connectors.RetryAfterError{After: 100 * 365 * 24 * time.Hour}, connectors.ErrPermanent}}
	n, log, _ := newNotifier(t, brokertest.SQLiteDSN(t), func(o *erasure.Options) {
		o.Connectors = broker.ConnectorMap{"partner-webhook": conn}
		o.RetryBase, o.RetryMax, o.Poll = 5*time.Millisecond, 20*time.Millisecond, 5*time.Millisecond
	})
	for _, e := range []struct{ id, recipient string }{{"r1", "swiftship-de"}, {"r2", "swiftship-de"}, {"r3", "nobody-known"}} {
		if _, err := log.Append(t.Context(), &audit.Entry{Event: audit.EventDelivered, RequestID: e.id, Recipient: e.recipient, SubjectID: "cust-5"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := log.Append(t.Context(), &audit.Entry{Event: audit.EventDelivered, RequestID: "r4", Recipient: "fastfreight-us", SubjectID: "cust-6"}); err != nil {
		t.Fatal(err)
	}
	for i, want := range []int{2, 0} { // a second Begin creates nothing new
		if got, err := n.Begin(t.Context(), "cust-5", time.Now()); err != nil || got != want {
			t.Fatalf("Begin #%d created %d (%v), want %d", i+1, got, err, want)
		}
	}
	n.Start()
	t.Cleanup(n.Stop)
	var st map[string]erasure.Notice
	deadline := time.Now().Add(5 * time.Second)
	for {
		list, err := n.Status(t.Context(), "cust-5")
		if err != nil {
			t.Fatal(err)
		}
		st = map[string]erasure.Notice{}
		for _, x := range list {
			st[x.Recipient] = x
		}
		if st["swiftship-de"].Status == erasure.StatusAcknowledged && st["nobody-known"].Status == erasure.StatusUndeliverable {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("notices %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if s := st["swiftship-de"]; s.Attempts != 3 || len(s.RequestIDs) != 2 || conn.notices != 3 {
		t.Fatalf("swiftship notice %+v after %d notices sent; want acknowledged at the third attempt", s, conn.notices)
	}
	tests := []struct {
		name      string
		recipient string
		text      string
		wantErr   bool
		err       error
	}{
		{"no text", "nobody-known", "", true, nil},
		{"acknowledged already", "swiftship-de", "recipient dissolved", true, erasure.ErrNoNotice},
		{"undeliverable", "nobody-known", "recipient dissolved", false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := n.Justify(t.Context(), "cust-5", tt.recipient, "acct-7", tt.text)
			if (err != nil) != tt.wantErr || (tt.err != nil && !errors.Is(err, tt.err)) {
				t.Fatalf("err = %v, want an error %v (%v)", err, tt.wantErr, tt.err)
			}
		})
	}
	list, _ := n.Status(t.Context(), "cust-6")
	if len(list) != 0 {
		t.Fatalf("another subject has %d notices", len(list))
	}
}

var _ erasure.Parties = (*agreements.Registry)(nil)

// TestNoticesMayHaveReceived: a recipient whose delivery failed after the
// payload went out with no answer may hold the data, and is told of the
// erasure too; one whose delivery failed with an answer is not.
func TestNoticesMayHaveReceived(t *testing.T) {
	n, log, _ := newNotifier(t, brokertest.SQLiteDSN(t), nil)
	for _, e := range []struct {
		id, recipient string
		reasons       []string
	}{
		{"r1", "swiftship-de", []string{"delivery_failed: max_deliver_reached", audit.ReasonMayHaveReceived}},
		{"r2", "fastfreight-us", []string{"delivery_failed: permanent"}},
	} {
		if _, err := log.Append(t.Context(), &audit.Entry{Event: audit.EventDeliveryFailed, RequestID: e.id, Recipient: e.recipient,
			Decision: "allow", Reasons: e.reasons, SubjectID: "cust-7"}); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := n.Begin(t.Context(), "cust-7", time.Now()); err != nil || got != 1 {
		t.Fatalf("Begin created %d (%v), want 1", got, err)
	}
	list, err := n.Status(t.Context(), "cust-7")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Recipient != "swiftship-de" || !slices.Equal(list[0].RequestIDs, []string{"r1"}) {
		t.Fatalf("notices %+v, want one to swiftship-de for r1", list)
	}
}
