package agreements

import "testing"

// TestLookups: Dataset, LegalOrder and Agreements answer from the registry
// without its whole content, and a change to what they return does not
// reach the registry.
func TestLookups(t *testing.T) {
	reg, err := Load("../examples/registry")
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := reg.Dataset("order.delivery"); !ok || d.ID != "order.delivery" || !d.Personal {
		t.Errorf("Dataset(order.delivery) = %+v, %v", d, ok)
	}
	if _, ok := reg.Dataset("nope"); ok {
		t.Error("Dataset(nope) found")
	}
	if p, ok := reg.Purpose("marketing"); !ok || p.LegalBasis != BasisConsent {
		t.Errorf("Purpose(marketing) = %+v, %v", p, ok)
	}
	if _, ok := reg.Purpose("nope"); ok {
		t.Error("Purpose(nope) found")
	}
	if o, ok := reg.LegalOrder("order-2026-113"); !ok || o.Authority != "bka-de" {
		t.Errorf("LegalOrder(order-2026-113) = %+v, %v", o, ok)
	}
	if _, ok := reg.LegalOrder("nope"); ok {
		t.Error("LegalOrder(nope) found")
	}
	if consents, erasures := reg.Subject("cust-13"); len(consents) != 0 || len(erasures) != 1 || erasures[0].Subject != "cust-13" {
		t.Errorf("Subject(cust-13) = %v, %v; want its erasure", consents, erasures)
	}
	if consents, erasures := reg.Subject("cust-7"); len(consents) == 0 || consents[0].Subject != "cust-7" || len(erasures) != 0 {
		t.Errorf("Subject(cust-7) = %v, %v; want its consents", consents, erasures)
	}
	if consents, erasures := reg.Subject("nobody"); consents != nil || erasures != nil {
		t.Errorf("Subject(nobody) = %v, %v", consents, erasures)
	}
	as := reg.Agreements()
	if len(as) != len(reg.Content().Agreements) {
		t.Fatalf("%d agreements, want %d", len(as), len(reg.Content().Agreements))
	}
	as[0].ID = "changed"
	if reg.Agreements()[0].ID == "changed" {
		t.Error("a change to Agreements' copy reached the registry")
	}
}
