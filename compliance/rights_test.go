package compliance_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/compliance"
	"github.com/clearance-broker/clearance/compliance/compliancetest"
)

// engineChanger applies changes to the fixture's engine as the live
// registry does on every instance (the live registry's own propagation is
// tested in package policy), and counts the events.
func engineChanger(f *compliancetest.Fixture) compliance.ChangeFunc {
	var mu sync.Mutex
	var seq int64
	return func(_ context.Context, ch agreements.Change) (compliance.ChangeResult, error) {
		mu.Lock()
		defer mu.Unlock()
		reg, err := f.Engine.Registry().With(ch)
		if err != nil {
			return compliance.ChangeResult{}, errors.Join(compliance.ErrChangeRefused, err)
		}
		f.Engine.Update(reg)
		seq++
		return compliance.ChangeResult{Event: seq, Version: reg.Version()}, nil
	}
}

func legalOrderBody(t *testing.T) func() io.Reader {
	return func() io.Reader {
		return jsonBody(t, map[string]any{"authority": "bka-de", "subjects": []string{"cust-21"},
			"categories": []string{"identity.name"}, "valid_until": "2026-12-31"})
	}
}

// TestLegalOrders creates an order, reads it back (subjects in clear for
// officers only) and checks that it is in force for decisions.
func TestLegalOrders(t *testing.T) {
	f := compliancetest.New(t)
	f.Server.UseRights(engineChanger(f), nil)
	officer := client{t: t, base: f.HTTP.URL, token: f.Token(t, compliance.RoleOfficer)}
	viewer := client{t: t, base: f.HTTP.URL, token: f.Token(t, compliance.RoleViewer)}
	before := f.Engine.Registry().Version()
	code, hdr, b := officer.do("POST", "/v1/legal-orders", "application/json", strings.NewReader(
		`{"id": "order-test-1", "authority": "bka-de", "subjects": ["cust-31", "cust-31"], "categories": ["identity.name"], "valid_until": "2026-12-31"}`))
	if code != http.StatusCreated || hdr.Get("Location") != "/v1/legal-orders/order-test-1" {
		t.Fatalf("create: %d %s", code, b)
	}
	if f.Engine.Registry().Version() == before {
		t.Fatal("the registry in force did not change")
	}
	var created struct {
		Order           compliance.LegalOrderView `json:"legal_order"`
		Event           int64                     `json:"event"`
		RegistryVersion string                    `json:"registry_version"`
	}
	if err := json.Unmarshal(b, &created); err != nil {
		t.Fatal(err)
	}
	if created.Event != 1 || created.RegistryVersion != f.Engine.Registry().Version() || created.Order.SubjectCount != 1 {
		t.Fatalf("created: %+v", created)
	}
	code, b = officer.get("/v1/legal-orders/order-test-1")
	var o compliance.LegalOrderView
	if err := json.Unmarshal(b, &o); code != http.StatusOK || err != nil {
		t.Fatalf("officer read: %d %s", code, b)
	}
	hmac := audit.SubjectHMAC(compliancetest.SubjectKey, "cust-31")
	if len(o.Subjects) != 1 || o.Subjects[0] != "cust-31" || len(o.SubjectHMACs) != 1 || o.SubjectHMACs[0] != hmac || !o.Active {
		t.Fatalf("officer read: %+v", o)
	}
	code, b = viewer.get("/v1/legal-orders/order-test-1")
	if code != http.StatusOK || strings.Contains(string(b), "cust-31") || !strings.Contains(string(b), hmac) {
		t.Fatalf("viewer read: %d %s", code, b)
	}
	code, b = viewer.get("/v1/legal-orders")
	if code != http.StatusOK || !strings.Contains(string(b), "order-test-1") || !strings.Contains(string(b), "order-2026-113") {
		t.Fatalf("viewer list: %d %s", code, b)
	}
	if code, b = viewer.get("/v1/legal-orders/no-such-order"); code != http.StatusNotFound {
		t.Fatalf("unknown order: %d %s", code, b)
	}
	// The order is in force: the authority may now receive the name.
	req := &agreements.Request{ID: "lo-1", Source: "order-service", Recipient: "bka-de", Purpose: "law_enforcement", Dataset: "order.delivery",
		Subject: agreements.Subject{ID: "cust-31", Jurisdiction: "DE"}, LegalOrder: "order-test-1",
		Record: map[string]any{"name": "x"}}
	if d := f.Engine.Decide(req, compliancetest.Now); d.LegalOrder != "order-test-1" {
		t.Fatalf("decision does not rest on the order: %+v", d)
	}
}

// TestLegalOrderBadInput checks the 400s name the field and never repeat a
// subject, and that nothing is recorded.
func TestLegalOrderBadInput(t *testing.T) {
	f := compliancetest.New(t)
	f.Server.UseRights(engineChanger(f), nil)
	c := client{t: t, base: f.HTTP.URL, token: f.Token(t, compliance.RoleOfficer)}
	valid := map[string]any{"authority": "bka-de", "subjects": []string{"cust-secret-9"}, "categories": []string{"identity.name"}, "valid_until": "2026-12-31"}
	with := func(k string, v any) string {
		m := map[string]any{}
		for kk, vv := range valid {
			m[kk] = vv
		}
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		b, _ := json.Marshal(m)
		return string(b)
	}
	tests := []struct{ name, body, param string }{
		{"not json", "{", "body"},
		{"unknown field", with("subjekts", []string{"a"}), "subjekts"},
		{"unknown field named with an e-mail address", with("cust-secret-9@example.com", []string{"a"}), agreements.WithheldName},
		{"wrong type", with("subjects", "cust-secret-9"), "subjects"},
		{"no authority", with("authority", nil), "authority"},
		{"unknown authority", with("authority", "nobody"), "authority"},
		{"not an authority", with("authority", "swiftship-de"), "authority"},
		{"no subjects", with("subjects", []string{}), "subjects"},
		{"control character", with("subjects", []string{"a\x01b"}), "subjects"},
		{"no categories", with("categories", nil), "categories"},
		{"unknown category", with("categories", []string{"blood.type"}), "categories"},
		{"no valid_until", with("valid_until", nil), "valid_until"},
		{"bad valid_until", with("valid_until", "soon"), "valid_until"},
		{"past valid_until", with("valid_until", "2020-01-01"), "valid_until"},
		{"bad id", with("id", "a b"), "id"},
		{"existing id", with("id", "order-2026-113"), "id"},
	}
	before := f.Engine.Registry().Version()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, b := c.do("POST", "/v1/legal-orders", "application/json", strings.NewReader(tc.body))
			var e struct{ Error, Message, Parameter string }
			if err := json.Unmarshal(b, &e); err != nil || code != http.StatusBadRequest || e.Parameter != tc.param {
				t.Fatalf("%d %s, want 400 naming %s", code, b, tc.param)
			}
			if bytes.Contains(b, []byte("cust-secret-9")) {
				t.Fatalf("the answer repeats a subject: %s", b)
			}
		})
	}
	if f.Engine.Registry().Version() != before {
		t.Fatal("a refused order changed the registry")
	}
}

// TestLegalOrderWithoutLiveRegistry: without the change API, 503.
func TestLegalOrderWithoutLiveRegistry(t *testing.T) {
	f := compliancetest.New(t)
	c := client{t: t, base: f.HTTP.URL, token: f.Token(t, compliance.RoleOfficer)}
	code, _, b := c.do("POST", "/v1/legal-orders", "application/json", legalOrderBody(t)())
	if code != http.StatusServiceUnavailable {
		t.Fatalf("%d %s", code, b)
	}
}

// TestConsentsAndErasures reads the example registry's consents and
// erasures.
func TestConsentsAndErasures(t *testing.T) {
	f := compliancetest.New(t)
	c := client{t: t, base: f.HTTP.URL, token: f.Token(t, compliance.RoleOfficer)}
	code, b := c.get("/v1/consents?subject=cust-8")
	var cs struct {
		SubjectHMAC string                   `json:"subject_hmac"`
		Consents    []compliance.ConsentView `json:"consents"`
	}
	if err := json.Unmarshal(b, &cs); code != http.StatusOK || err != nil {
		t.Fatalf("%d %s", code, b)
	}
	if cs.SubjectHMAC != audit.SubjectHMAC(compliancetest.SubjectKey, "cust-8") || len(cs.Consents) != 1 ||
		cs.Consents[0].Purpose != "marketing" || cs.Consents[0].WithdrawnAt == nil || strings.Contains(string(b), "cust-8") {
		t.Fatalf("consents of cust-8: %s", b)
	}
	if code, b = c.get("/v1/consents?subject=cust-nobody"); code != http.StatusOK || !strings.Contains(string(b), `"consents": []`) {
		t.Fatalf("no consents: %d %s", code, b)
	}
	code, b = c.get("/v1/erasures")
	h13 := audit.SubjectHMAC(compliancetest.SubjectKey, "cust-13")
	if code != http.StatusOK || !strings.Contains(string(b), h13) || strings.Contains(string(b), "cust-13") {
		t.Fatalf("erasures: %d %s", code, b)
	}
	if code, b = c.get("/v1/erasures?subject=cust-7"); code != http.StatusOK || strings.Contains(string(b), h13) {
		t.Fatalf("erasures of cust-7: %d %s", code, b)
	}
	for _, tc := range []struct{ path, param string }{
		{"/v1/consents", "subject"},
		{"/v1/consents?subject=", "subject"},
		{"/v1/consents?subject=a&subject=b", "subject"},
		{"/v1/consents?subject=" + strings.Repeat("x", 300), "subject"},
		{"/v1/consents?subject=a&purpose=b", "purpose"},
		{"/v1/erasures?since=2026-01-01", "since"},
		{"/v1/erasures?subject=", "subject"},
	} {
		code, b := c.get(tc.path)
		var e struct{ Parameter string }
		if err := json.Unmarshal(b, &e); err != nil || code != http.StatusBadRequest || e.Parameter != tc.param {
			t.Errorf("%s: %d %s, want 400 naming %s", tc.path[:min(len(tc.path), 40)], code, b, tc.param)
		}
	}
}
