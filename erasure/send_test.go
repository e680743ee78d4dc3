package erasure_test

import (
	"context"
	"github.com/clearance-broker/clearance/connectors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/broker"
	"github.com/clearance-broker/clearance/broker/brokertest"
	"github.com/clearance-broker/clearance/broker/samplepartner"
	"github.com/clearance-broker/clearance/erasure"
	"github.com/uptrace/bun"
)

// TestNoticeNeedsPartyKey: a party without a public key on a connector
// whose recipients read only what is encrypted to their own key (a
// webhook) could not open its notice: it is undeliverable, never sent nor
// counted as given, as the broker refuses transfers to it. A party with a
// key on the same kind of connector is notified.
func TestNoticeNeedsPartyKey(t *testing.T) {
	authority, partner := &answering{}, &answering{}
	key, err := samplepartner.NewKey("swiftship-de-test")
	if err != nil {
		t.Fatal(err)
	}
	reg := brokertest.ExampleRegistry(t, key.PublicJWK) // keys for the parties the example gives one
	n, log, _ := newNotifier(t, brokertest.SQLiteDSN(t), func(o *erasure.Options) {
		o.Parties = func() erasure.Parties { return reg }
		o.Connectors = broker.ConnectorMap{
			"authority-webhook": broker.RequiresPartyKey(authority), // bka-de has no public key
			"partner-webhook":   broker.RequiresPartyKey(partner),   // swiftship-de has one
		}
		o.NeedsPartyKey = broker.NeedsPartyKey
		o.Poll = 5 * time.Millisecond
	})
	deliveredThenErased(t, n, log, [2]string{"lo-1", "bka-de"}, [2]string{"ord-1", "swiftship-de"})
	n.Start()
	t.Cleanup(n.Stop)
	st := map[string]erasure.Notice{}
	awaitNotices(t, n, func(list []erasure.Notice) bool {
		for _, x := range list {
			st[x.Recipient] = x
		}
		settled := func(x erasure.Notice) bool { return x.Status != "" && x.Status != erasure.StatusPending }
		return settled(st["bka-de"]) && settled(st["swiftship-de"])
	})
	n.Stop()
	if st["bka-de"].Status != erasure.StatusUndeliverable || st["swiftship-de"].Status != erasure.StatusAcknowledged {
		t.Fatalf("notices %+v, want bka-de undeliverable, swiftship-de acknowledged", st)
	}
	if authority.notices != 0 || partner.notices != 1 {
		t.Fatalf("%d notices sent to the authority, %d to the partner; want 0 and 1", authority.notices, partner.notices)
	}
	for _, e := range entries(t, log, audit.EventErasureNotified) {
		if e.Recipient == "bka-de" {
			t.Fatalf("a notice bka-de cannot open is audited as given: %+v", e)
		}
	}
}

// TestStuckPendingEntryHoldsUpNothing: a closing entry that cannot be
// appended (its row unreadable) is left pending and named in the log,
// and the notices due go out all the same, where it stopped every round
// before they were claimed.
func TestStuckPendingEntryHoldsUpNothing(t *testing.T) {
	partner := &answering{}
	var db *bun.DB
	n, log, _ := newNotifier(t, brokertest.SQLiteDSN(t), func(o *erasure.Options) {
		o.Connectors = broker.ConnectorMap{"partner-webhook": partner}
		o.Poll = 5 * time.Millisecond
		db = o.DB
	})
	if _, err := db.NewRaw("INSERT INTO erasure_pending_entries (id, entry, lease_owner, lease_until) VALUES (?, ?, ?, ?)",
		"erasure-stuck erasure_notified", "{not json", "gone", time.Now().Add(-time.Hour).UTC()).Exec(t.Context()); err != nil {
		t.Fatal(err)
	}
	deliveredThenErased(t, n, log, [2]string{"ord-1", "swiftship-de"})
	n.Start()
	t.Cleanup(n.Stop)
	awaitNotices(t, n, func(list []erasure.Notice) bool {
		return len(list) == 1 && list[0].Status == erasure.StatusAcknowledged
	})
	var left int
	if err := db.QueryRowContext(t.Context(), "SELECT count(*) FROM erasure_pending_entries WHERE id = 'erasure-stuck erasure_notified'").Scan(&left); err != nil || left != 1 {
		t.Fatalf("the stuck entry: %d rows, %v; want it kept", left, err)
	}
}

// keyLater is the example registry's parties, where bka-de has a public
// key once given one (as a registry apply would give it).
type keyLater struct {
	reg  erasure.Parties
	key  []byte
	give atomic.Bool
}

func (k *keyLater) Party(id string) (agreements.Party, error) {
	p, err := k.reg.Party(id)
	if err == nil && id == "bka-de" && k.give.Load() {
		p.PublicKey = k.key
	}
	return p, err
}

// TestReopenUndeliverable: a notice undeliverable for want of the party's
// key is put back in work by Reopen (run on every registry apply): still
// without a key it is undeliverable again after one more attempt, and
// never sent; once the registry gives the key, it goes out and is
// acknowledged. Before, an undeliverable notice stayed so for good.
func TestReopenUndeliverable(t *testing.T) {
	authority := &answering{}
	key, err := samplepartner.NewKey("bka-de-test")
	if err != nil {
		t.Fatal(err)
	}
	parties := &keyLater{reg: brokertest.ExampleRegistry(t, nil), key: key.PublicJWK}
	n, log, _ := newNotifier(t, brokertest.SQLiteDSN(t), func(o *erasure.Options) {
		o.Parties = func() erasure.Parties { return parties }
		o.Connectors = broker.ConnectorMap{"authority-webhook": broker.RequiresPartyKey(authority)}
		o.NeedsPartyKey = broker.NeedsPartyKey
		o.Poll = 5 * time.Millisecond
	})
	deliveredThenErased(t, n, log, [2]string{"lo-1", "bka-de"})
	n.Start()
	t.Cleanup(n.Stop)
	waitNotice := func(status erasure.Status, attempts int) {
		t.Helper()
		awaitNotices(t, n, func(list []erasure.Notice) bool {
			return len(list) == 1 && list[0].Status == status && list[0].Attempts == attempts
		})
	}
	waitNotice(erasure.StatusUndeliverable, 1)
	if k, err := n.Reopen(t.Context()); err != nil || k != 1 {
		t.Fatalf("Reopen = %d, %v; want 1", k, err)
	}
	waitNotice(erasure.StatusUndeliverable, 2)
	parties.give.Store(true)
	if k, err := n.Reopen(t.Context()); err != nil || k != 1 {
		t.Fatalf("Reopen = %d, %v; want 1", k, err)
	}
	waitNotice(erasure.StatusAcknowledged, 3)
	n.Stop()
	if authority.notices != 1 {
		t.Fatalf("%d notices sent to the authority, want 1 (once it had a key)", authority.notices)
	}
}

// extendOnFirst is a partner that, while the first notice is being sent
// to it, receives one more of the subject's transfers, whose erasure Begin
// then finds (the notice is extended under a new id).
type extendOnFirst struct {
	answering
	once   sync.Once
	extend func()
}

func (e *extendOnFirst) Deliver(ctx context.Context, d *connectors.Delivery) error {
	e.once.Do(e.extend)
	return e.answering.Deliver(ctx, d)
}

// TestEscalatedOnce: a notice past EscalateAfter is escalated, and
// audited so, once, even when it is extended while its attempt is made.
// Before, the entry was appended ahead of the attempt and the status
// written with its outcome, which the extension (a new id, the status it
// read: pending) made miss, so that the next round escalated it again.
func TestEscalatedOnce(t *testing.T) {
	onEachStore(t, func(t *testing.T, dsn string) {
		partner := &extendOnFirst{}
		n, log, _ := newNotifier(t, dsn, func(o *erasure.Options) {
			o.Connectors = broker.ConnectorMap{"partner-webhook": partner}
			o.EscalateAfter, o.Poll = time.Nanosecond, 5*time.Millisecond
		})
		partner.extend = func() {
			if _, err := log.Append(t.Context(), &audit.Entry{Event: audit.EventDelivered, RequestID: "ord-2", Recipient: "swiftship-de", SubjectID: "cust-5"}); err != nil {
				t.Error(err)
			}
			if _, err := n.Begin(t.Context(), "cust-5", time.Now()); err != nil {
				t.Error(err)
			}
		}
		deliveredThenErased(t, n, log, [2]string{"ord-1", "swiftship-de"})
		n.Start()
		t.Cleanup(n.Stop)
		list := awaitNotices(t, n, func(list []erasure.Notice) bool {
			return len(list) == 1 && list[0].Status == erasure.StatusAcknowledged && len(list[0].RequestIDs) == 2
		})
		if list[0].EscalatedAt == nil || list[0].Attempts != 2 {
			t.Fatalf("notice %+v, want escalated and acknowledged at the second attempt", list[0])
		}
		n.Stop()
		escalations := 0
		if err := log.Scan(t.Context(), audit.Filter{Event: erasure.EventErasureEscalated}, func(*audit.Entry) error {
			escalations++
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if escalations != 1 || partner.notices != 2 {
			t.Fatalf("%d escalation entries, %d notices sent; want 1 and 2", escalations, partner.notices)
		}
	})
}

// TestReopenedNoticeEscalatedOnce: a notice escalated and then
// acknowledged, reopened because the recipient received more of the
// subject's data, comes back escalated and is not escalated (audited)
// again. Before, it came back pending with its first creation time, and
// was escalated again at once under its new id.
func TestReopenedNoticeEscalatedOnce(t *testing.T) {
	partner := &answering{}
	n, log, _ := newNotifier(t, brokertest.SQLiteDSN(t), func(o *erasure.Options) {
		o.Connectors = broker.ConnectorMap{"partner-webhook": partner}
		o.EscalateAfter, o.Poll = time.Nanosecond, 5*time.Millisecond
	})
	deliveredThenErased(t, n, log, [2]string{"ord-1", "swiftship-de"})
	n.Start()
	t.Cleanup(n.Stop)
	acknowledged := func(ids int) func([]erasure.Notice) bool {
		return func(list []erasure.Notice) bool {
			return len(list) == 1 && list[0].Status == erasure.StatusAcknowledged && len(list[0].RequestIDs) == ids
		}
	}
	awaitNotices(t, n, acknowledged(1))
	deliveredThenErased(t, n, log, [2]string{"ord-2", "swiftship-de"})
	list := awaitNotices(t, n, acknowledged(2))
	n.Stop()
	if list[0].EscalatedAt == nil || partner.notices != 2 {
		t.Fatalf("notice %+v after %d notices sent; want escalated, and 2 sent", list[0], partner.notices)
	}
	if got := len(entries(t, log, erasure.EventErasureEscalated)); got != 1 {
		t.Fatalf("%d escalation entries, want 1", got)
	}
}

// competingUpdate is a query hook that, before the first statement that
// extends a notice (sets its request ids), runs stmt on db, as another
// instance's acknowledgement might land between extend's read and its
// update.
type competingUpdate struct {
	db   *bun.DB
	stmt string
	done atomic.Bool
	err  error
}

func (c *competingUpdate) BeforeQuery(ctx context.Context, e *bun.QueryEvent) context.Context {
	if strings.HasPrefix(e.Query, "UPDATE") && strings.Contains(e.Query, "SET id = ") && c.done.CompareAndSwap(false, true) {
		_, c.err = c.db.ExecContext(ctx, c.stmt)
	}
	return ctx
}

func (c *competingUpdate) AfterQuery(context.Context, *bun.QueryEvent) {}

// TestExtendReadsAgain: a notice that changes between extend's read and
// its update (here: acknowledged meanwhile) is read again and extended,
// where its new request ids were dropped and never sent.
func TestExtendReadsAgain(t *testing.T) {
	var db *bun.DB
	n, log, _ := newNotifier(t, brokertest.PostgresDSN(t), func(o *erasure.Options) { db = o.DB })
	deliveredThenErased(t, n, log, [2]string{"ord-1", "swiftship-de"})
	hook := &competingUpdate{db: db, stmt: "UPDATE erasure_notices SET status = 'acknowledged', acknowledged_at = now() WHERE recipient = 'swiftship-de'"}
	db.AddQueryHook(hook)
	deliveredThenErased(t, n, log, [2]string{"ord-2", "swiftship-de"})
	if !hook.done.Load() || hook.err != nil {
		t.Fatalf("the competing update: ran %v, %v", hook.done.Load(), hook.err)
	}
	list, err := n.Status(t.Context(), "cust-5")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Status != erasure.StatusPending || !slices.Equal(list[0].RequestIDs, []string{"ord-1", "ord-2"}) {
		t.Fatalf("notice %+v, want pending with both requests", list)
	}
}
