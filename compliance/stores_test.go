package compliance_test

import (
	"encoding/json"
	"testing"

	"github.com/clearance-broker/clearance/compliance"
	"github.com/clearance-broker/clearance/compliance/compliancetest"
)

// TestSameAnswersOnPostgres seeds the same log into SQLite and PostgreSQL
// and checks that the SQL aggregates (overview, records of processing,
// versions, agreement history) and a search answer alike on both.
func TestSameAnswersOnPostgres(t *testing.T) {
	lite := compliancetest.New(t)
	pg := compliancetest.NewOn(t, compliancetest.PostgresDSN(t))
	lite.Seed(t, 2)
	pg.Seed(t, 2)
	// Entries, times and chain hashes are the same on both: the chain
	// depends on the entries only.
	for _, path := range []string{
		"/v1/reports/overview?from=2026-10-01&to=2026-12-01",
		"/v1/reports/ropa?from=2026-10-01&to=2026-12-01",
		"/v1/registry/versions",
		"/v1/registry/agreements/dpa-swiftship-de/history",
		"/v1/audit/entries?decision=deny&limit=7&after=3",
		"/v1/subjects/cust-881/recipients",
	} {
		t.Run(path, func(t *testing.T) {
			var answers [2]string
			for i, f := range []*compliancetest.Fixture{lite, pg} {
				code, b := client{t: t, base: f.HTTP.URL, token: f.Token(t, compliance.RoleViewer)}.get(path)
				if code != 200 {
					t.Fatalf("store %d: %d %s", i, code, b)
				}
				var v any
				if err := json.Unmarshal(b, &v); err != nil {
					t.Fatal(err)
				}
				norm, _ := json.Marshal(v)
				answers[i] = string(norm)
			}
			if answers[0] != answers[1] {
				t.Fatalf("SQLite and PostgreSQL differ:\n%s\n%s", answers[0], answers[1])
			}
		})
	}
}
