package erasure_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/broker"
	"github.com/clearance-broker/clearance/broker/brokertest"
	"github.com/clearance-broker/clearance/erasure"
	"github.com/clearance-broker/clearance/keys"
)

// newNotifier returns a notifier over a fresh store at dsn and its audit
// log, with a development key ring (which also verifies answers), the
// example registry's parties, no connectors, and what tune sets besides.
func newNotifier(t *testing.T, dsn string, tune func(*erasure.Options)) (*erasure.Notifier, *audit.Log, *keys.DevKeyRing) {
	t.Helper()
	ring := brokertest.DevKeys(t, filepath.Join(t.TempDir(), "ring.json"))
	log, db := brokertest.OpenAudit(t, dsn, ring)
	reg := brokertest.ExampleRegistry(t, nil)
	opts := erasure.Options{
		DB: db, Audit: log, Keys: ring, Verifier: ring, SubjectKey: brokertest.SubjectKey,
		Connectors: broker.ConnectorMap{}, Parties: func() erasure.Parties { return reg },
	}
	if tune != nil {
		tune(&opts)
	}
	n, err := erasure.New(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return n, log, ring
}

// onEachStore runs test on a fresh SQLite store and a fresh Postgres schema,
// each a subtest.
func onEachStore(t *testing.T, test func(t *testing.T, dsn string)) {
	for _, b := range []struct {
		name string
		dsn  func(testing.TB) string
	}{{"sqlite", brokertest.SQLiteDSN}, {"postgres", brokertest.PostgresDSN}} {
		t.Run(b.name, func(t *testing.T) { test(t, b.dsn(t)) })
	}
}

// deliveredThenErased appends to log a delivery of cust-5's data for each
// request id and recipient of deliveries, and begins cust-5's erasure.
func deliveredThenErased(t *testing.T, n *erasure.Notifier, log *audit.Log, deliveries ...[2]string) {
	t.Helper()
	for _, d := range deliveries {
		if _, err := log.Append(t.Context(), &audit.Entry{Event: audit.EventDelivered, RequestID: d[0], Recipient: d[1], SubjectID: "cust-5"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := n.Begin(t.Context(), "cust-5", time.Now()); err != nil {
		t.Fatal(err)
	}
}

// awaitNotices reads cust-5's notices until done holds of them, and
// returns them; it fails the test after 10 s.
func awaitNotices(t *testing.T, n *erasure.Notifier, done func([]erasure.Notice) bool) []erasure.Notice {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		list, err := n.Status(t.Context(), "cust-5")
		if err != nil {
			t.Fatal(err)
		}
		if done(list) {
			return list
		}
		if time.Now().After(deadline) {
			t.Fatalf("notices %+v", list)
		}
	}
}
