package compliance_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/compliance"
	"github.com/clearance-broker/clearance/compliance/compliancetest"
)

// registrySubjects returns every subject id reg names: of its consents,
// erasures and legal orders.
func registrySubjects(reg *agreements.Registry) []string {
	c := reg.Content()
	var out []string
	for _, x := range c.Consents {
		out = append(out, x.Subject)
	}
	for _, x := range c.Erasures {
		out = append(out, x.Subject)
	}
	for _, o := range c.LegalOrders {
		out = append(out, o.Subjects...)
	}
	return out
}

// withRuntimeRights puts in force on f's engine a consent, an erasure and a
// legal order recorded at run time, for subjects no example names.
func withRuntimeRights(t *testing.T, f *compliancetest.Fixture) {
	t.Helper()
	at := compliancetest.Now.Add(-48 * time.Hour)
	reg, err := f.Engine.Registry().With(agreements.Change{
		Consents: []agreements.Consent{{Subject: "viewer-secret-consent-1", Purpose: "marketing", GrantedAt: at}},
		Erasures: []agreements.Erasure{{Subject: "viewer-secret-erased-2", At: at}},
		LegalOrders: []agreements.LegalOrder{{ID: "order-viewer-test", Authority: "bka-de", Subjects: []string{"viewer-secret-ordered-3"},
			Categories: []string{"identity.name"}, ValidUntil: time.Date(2026, 12, 31, 0, 0, 0, 0, time.UTC)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	f.Engine.Update(reg)
}

// TestViewerRegistryNamesNoSubject: GET /v1/registry gives a viewer no
// subject id in clear (consents, erasures, legal orders, YAML and run time
// alike), each replaced by its HMAC where the subject key is configured;
// officers and admins get the content as loaded.
func TestViewerRegistryNamesNoSubject(t *testing.T) {
	f := compliancetest.New(t)
	withRuntimeRights(t, f)
	reg := f.Engine.Registry()
	subjects := registrySubjects(reg)
	if len(subjects) < 8 {
		t.Fatalf("registry names %d subjects, want the examples' and the run-time ones", len(subjects))
	}
	full, err := json.Marshal(reg.Content())
	if err != nil {
		t.Fatal(err)
	}
	// A server without the subject key: no HMAC to give, still no subject.
	auth, err := f.Issuer.Authenticator(func() time.Time { return compliancetest.Now })
	if err != nil {
		t.Fatal(err)
	}
	keyless, err := compliance.New(compliance.Options{Audit: f.Log, DB: f.DB, Registry: f.Engine, Auth: auth,
		Now: func() time.Time { return compliancetest.Now }})
	if err != nil {
		t.Fatal(err)
	}
	keylessHTTP := httptest.NewServer(keyless.Handler())
	t.Cleanup(keylessHTTP.Close)

	tests := []struct {
		name      string
		base      string
		role      compliance.Role
		wantClear bool
		wantHMACs bool
	}{
		{name: "viewer", base: f.HTTP.URL, role: compliance.RoleViewer, wantHMACs: true},
		{name: "viewer without subject key", base: keylessHTTP.URL, role: compliance.RoleViewer},
		{name: "officer", base: f.HTTP.URL, role: compliance.RoleOfficer, wantClear: true},
		{name: "admin", base: f.HTTP.URL, role: compliance.RoleAdmin, wantClear: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := client{t: t, base: tt.base, token: f.Token(t, tt.role)}
			code, b := c.get("/v1/registry")
			if code != http.StatusOK {
				t.Fatalf("%d %.300s", code, b)
			}
			var view struct {
				Version string          `json:"version"`
				Content json.RawMessage `json:"content"`
			}
			if err := json.Unmarshal(b, &view); err != nil || view.Version != reg.Version() {
				t.Fatalf("answer: %v %.300s", err, b)
			}
			if tt.wantClear {
				var got, want any
				if json.Unmarshal(view.Content, &got) != nil || json.Unmarshal(full, &want) != nil || !reflect.DeepEqual(got, want) {
					t.Fatalf("content differs from the registry's:\n%.500s\nwant\n%.500s", view.Content, full)
				}
				return
			}
			for _, sub := range subjects {
				if bytes.Contains(b, []byte(`"`+sub+`"`)) || (len(sub) > 10 && bytes.Contains(b, []byte(sub))) {
					t.Errorf("a viewer sees subject %q in clear", sub)
				}
				h := audit.SubjectHMAC(compliancetest.SubjectKey, sub)
				if got := bytes.Contains(b, []byte(h)); got != tt.wantHMACs {
					t.Errorf("subject HMAC of %q given: %v, want %v", sub, got, tt.wantHMACs)
				}
			}
			var rc compliance.RedactedContent
			if err := json.Unmarshal(view.Content, &rc); err != nil {
				t.Fatal(err)
			}
			c0 := reg.Content()
			if len(rc.Consents) != len(c0.Consents) || len(rc.Erasures) != len(c0.Erasures) || len(rc.LegalOrders) != len(c0.LegalOrders) ||
				len(rc.Agreements) != len(c0.Agreements) || len(rc.Parties) != len(c0.Parties) || len(rc.Datasets) != len(c0.Datasets) {
				t.Fatalf("viewer's content: %d consents, %d erasures, %d legal orders, %d agreements, %d parties, %d datasets; registry %d, %d, %d, %d, %d, %d",
					len(rc.Consents), len(rc.Erasures), len(rc.LegalOrders), len(rc.Agreements), len(rc.Parties), len(rc.Datasets),
					len(c0.Consents), len(c0.Erasures), len(c0.LegalOrders), len(c0.Agreements), len(c0.Parties), len(c0.Datasets))
			}
			for i, o := range rc.LegalOrders {
				if len(o.Subjects) != 0 || o.SubjectCount != len(c0.LegalOrders[i].Subjects) {
					t.Errorf("legal order %s: subjects %v, count %d", o.ID, o.Subjects, o.SubjectCount)
				}
			}
		})
	}
}
