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
	if o, ok := reg.LegalOrder("order-2026-113"); !ok || o.Authority != "bka-de" {
		t.Errorf("LegalOrder(order-2026-113) = %+v, %v", o, ok)
	}
	if _, ok := reg.LegalOrder("nope"); ok {
		t.Error("LegalOrder(nope) found")
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
