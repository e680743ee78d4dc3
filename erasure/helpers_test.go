package erasure_test

import (
	"path/filepath"
	"testing"

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
