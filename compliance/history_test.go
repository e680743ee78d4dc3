package compliance_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/compliance"
	"github.com/clearance-broker/clearance/compliance/compliancetest"
)

// versions is a registry store holding fixed agreement versions.
type versions map[string][]agreements.Agreement

func (v versions) AgreementVersions(_ context.Context, id string) ([]agreements.Agreement, error) {
	return v[id], nil
}

func TestAgreementHistoryFromStore(t *testing.T) {
	f := compliancetest.New(t)
	f.Seed(t, 1)
	auth, err := f.Issuer.Authenticator(func() time.Time { return compliancetest.Now })
	if err != nil {
		t.Fatal(err)
	}
	day := func(s string) time.Time { d, _ := time.Parse(time.DateOnly, s); return d }
	store := versions{"dpa-swiftship-de": {
		{ID: "dpa-swiftship-de", Version: 1, Status: agreements.StatusTerminated, ValidFrom: day("2023-01-01"), ValidUntil: day("2023-12-31")},
		{ID: "dpa-swiftship-de", Version: 2, Status: agreements.StatusActive, ValidFrom: day("2024-01-01"), ValidUntil: day("2027-12-31")},
	}, "dpa-retired": {{ID: "dpa-retired", Version: 4, Status: agreements.StatusTerminated}}}
	srv, err := compliance.New(compliance.Options{Audit: f.Log, DB: f.DB, Registry: f.Engine, Auth: auth,
		Versions: store, Now: func() time.Time { return compliancetest.Now }})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	c := client{t: t, base: hs.URL, token: f.Token(t, compliance.RoleViewer)}

	code, b := c.get("/v1/registry/agreements/dpa-swiftship-de/history")
	var h compliance.AgreementHistory
	if code != 200 || json.Unmarshal(b, &h) != nil {
		t.Fatalf("%d %s", code, b)
	}
	if len(h.Stored) != 2 || h.Stored[0].Version != 1 || len(h.Versions) != 1 || !strings.Contains(h.Note, "registry store") {
		t.Fatalf("history: %+v", h)
	}
	// An agreement only the store still knows is found.
	if code, b = c.get("/v1/registry/agreements/dpa-retired/history"); code != http.StatusOK {
		t.Fatalf("retired: %d %s", code, b)
	}
	page := func(path string) string {
		code, _, body := consoleGet(t, hs.URL, path, c.token)
		if code != 200 {
			t.Fatalf("%s: %d", path, code)
		}
		return body
	}
	if body := page("/console/agreements/dpa-swiftship-de"); !strings.Contains(body, `id="stored-versions"`) || !strings.Contains(body, "terminated") {
		t.Fatal("the console does not show the stored versions")
	}
}
