package compliance_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/compliance"
	"github.com/clearance-broker/clearance/compliance/compliancetest"
)

// seedDeliveries decides every example request, a day apart going back
// from Now, and appends what the broker writes: every other allowed request
// is delivered, the others fail delivery for good (decided, then
// delivery_failed; dead-lettered). It returns the deliveries per purpose
// and per purpose and recipient, and the allowed requests that failed.
func seedDeliveries(t *testing.T, f *compliancetest.Fixture) (perPurpose map[string]int64, perRecipient map[[2]string]int64, failed int) {
	t.Helper()
	ctx := context.Background()
	perPurpose, perRecipient = map[string]int64{}, map[[2]string]int64{}
	allowed := 0
	seen := map[string]bool{}
	for i, req := range compliancetest.Requests(t) {
		if seen[req.ID] {
			continue // the batch repeats single files; one outcome per request id
		}
		seen[req.ID] = true
		at := compliancetest.Now.Add(-time.Duration(i+1) * 24 * time.Hour)
		d := f.Engine.Decide(req, at)
		es := compliancetest.Entries(req, d, at)
		if d.Allowed() {
			allowed++
			if allowed%2 == 0 {
				fail := *es[1]
				fail.Event, fail.KeyRef, fail.PayloadDigest = audit.EventDeliveryFailed, "", ""
				fail.Reasons = []string{"permanent: recipient refused the payload"}
				es[1] = &fail
				failed++
			} else {
				perPurpose[req.Purpose]++
				perRecipient[[2]string{req.Purpose, req.Recipient}]++
			}
		}
		for _, e := range es {
			if _, err := f.Log.Append(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
	}
	return perPurpose, perRecipient, failed
}

// TestROPATransfersCountDeliveries: the records of processing count as
// transfers the deliveries that happened, not the allow decisions: an
// allowed request whose delivery failed for good is no transfer. Through
// the API (the rollup), from the log (BuildROPA, the command line's
// fallback) and from a saved rollup, on SQLite and PostgreSQL.
func TestROPATransfersCountDeliveries(t *testing.T) {
	stores := []struct {
		name string
		dsn  func(t *testing.T) string
	}{
		{name: "sqlite", dsn: func(*testing.T) string { return "" }},
		{name: "postgres", dsn: func(t *testing.T) string { return compliancetest.PostgresDSN(t) }},
	}
	builders := []string{"api", "log", "saved"}
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			f := compliancetest.NewOn(t, st.dsn(t))
			perPurpose, perRecipient, failed := seedDeliveries(t, f)
			if failed == 0 || len(perPurpose) == 0 {
				t.Fatalf("seeded %d failed deliveries, deliveries %v", failed, perPurpose)
			}
			from, to := compliancetest.Now.AddDate(0, 0, -60), compliancetest.Now
			for _, via := range builders {
				t.Run(via, func(t *testing.T) {
					var rp *compliance.ROPA
					var err error
					switch via {
					case "api":
						c := client{t: t, base: f.HTTP.URL, token: f.Token(t, compliance.RoleViewer)}
						code, b := c.get("/v1/reports/ropa?from=" + from.Format(time.RFC3339) + "&to=" + to.Format(time.RFC3339))
						if code != http.StatusOK || json.Unmarshal(b, &rp) != nil {
							t.Fatalf("%d %.300s", code, b)
						}
					case "log":
						rp, err = compliance.BuildROPA(context.Background(), f.DB, f.Engine.Registry(), nil, from, to, compliancetest.Now)
					case "saved":
						rp, _, err = compliance.BuildROPAFromSaved(context.Background(), f.DB, f.Log, f.Engine.Registry(), nil, from, to, compliancetest.Now)
					}
					if err != nil {
						t.Fatal(err)
					}
					var total int64
					for _, p := range rp.Purposes {
						total += p.Transfers
						if p.Transfers != perPurpose[p.Purpose] {
							t.Errorf("purpose %s: %d transfers, want %d deliveries", p.Purpose, p.Transfers, perPurpose[p.Purpose])
						}
						var third int64
						for _, r := range p.Recipients {
							if want := perRecipient[[2]string{p.Purpose, r.ID}]; r.Transfers != want {
								t.Errorf("purpose %s, recipient %s: %d transfers, want %d deliveries", p.Purpose, r.ID, r.Transfers, want)
							}
						}
						for _, tc := range p.ThirdCountries {
							third += tc.Transfers
						}
						if third > p.Transfers {
							t.Errorf("purpose %s: %d transfers to third countries, more than its %d deliveries", p.Purpose, third, p.Transfers)
						}
					}
					var want int64
					for _, n := range perPurpose {
						want += n
					}
					if total != want {
						t.Fatalf("%d transfers, want the %d deliveries (%d allowed requests failed delivery)", total, want, failed)
					}
				})
			}
		})
	}
}
