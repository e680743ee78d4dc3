package agreements

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"testing"
)

// TestMinimisePaths checks the removed paths and the kept record for record
// shapes the field lookup and the joining of nested paths treat specially.
func TestMinimisePaths(t *testing.T) {
	manyExtras := map[string]any{"method": "card"}
	wantManyRemoved := map[string]string{"note.health": FieldCategoryNotPermitted, "note.driver": FieldUnclassified}
	for i := range 10 {
		manyExtras[fmt.Sprintf("x%d", i)] = "v"
		wantManyRemoved[fmt.Sprintf("payment.x%d", i)] = FieldUnclassified
	}
	tests := []struct {
		name        string
		give        map[string]any
		wantRecord  string
		wantKept    []string
		wantRemoved map[string]string
	}{
		{
			name:        "more unclassified members inside objects than are joined at once",
			give:        map[string]any{"payment": manyExtras, "note": map[string]any{"health": "h", "driver": "d"}},
			wantRecord:  `{"payment":{"method":"card"}}`,
			wantKept:    []string{"payment.method"},
			wantRemoved: wantManyRemoved,
		},
		{
			name:        "a member written with dots",
			give:        map[string]any{"payment.method": "card", "payment.cvv": "123", "order_id": "1"},
			wantRecord:  `{"order_id":"1","payment.method":"card"}`,
			wantKept:    []string{"order_id", "payment.method"},
			wantRemoved: map[string]string{"payment.cvv": FieldUnclassified},
		},
		{
			name:        "names of the same length and first letter as classified ones",
			give:        map[string]any{"name": "n", "nama": "x", "emaik": "x", "order_ie": "x"},
			wantRecord:  `{"name":"n"}`,
			wantKept:    []string{"name"},
			wantRemoved: map[string]string{"nama": FieldUnclassified, "emaik": FieldUnclassified, "order_ie": FieldUnclassified},
		},
		{
			name:        "an object path holding a value that is not an object",
			give:        map[string]any{"name": "n", "payment": "card", "": "empty"},
			wantRecord:  `{"name":"n"}`,
			wantKept:    []string{"name"},
			wantRemoved: map[string]string{"payment": FieldUnclassified, WithheldName: FieldUnclassified},
		},
		{
			name: "members whose names are not plain identifiers",
			give: map[string]any{"name": "n", "ada@example.com": "x", "Ada Lovelace": "y", "gift_note": "z",
				"note": map[string]any{"health": "h", "+44 20 7946 0000": "t", "02079460000": "u"}},
			wantRecord: `{"name":"n"}`,
			wantKept:   []string{"name"},
			wantRemoved: map[string]string{WithheldName: FieldUnclassified, "gift_note": FieldUnclassified,
				"note.health": FieldCategoryNotPermitted, "note." + WithheldName: FieldUnclassified},
		},
	}
	e := NewEngine(engineRegistry(t))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, at := give{recipient: "p-de", purpose: "delivery", record: tt.give}.request()
			d := e.Decide(req, at)
			if !d.Allowed() {
				t.Fatalf("decision = %s %v", d.Decision, d.Reasons)
			}
			got, err := json.Marshal(d.Record)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.wantRecord {
				t.Errorf("record = %s, want %s", got, tt.wantRecord)
			}
			if !slices.Equal(d.Fields.Kept, tt.wantKept) {
				t.Errorf("kept = %v, want %v", d.Fields.Kept, tt.wantKept)
			}
			gotRemoved := map[string]string{}
			for _, f := range d.Fields.Removed {
				gotRemoved[f.Path] = f.Reason
			}
			if len(d.Fields.Removed) != len(gotRemoved) || !maps.Equal(gotRemoved, tt.wantRemoved) {
				t.Errorf("removed = %v, want %v", d.Fields.Removed, tt.wantRemoved)
			}
		})
	}
}

// TestMinimiseWithholdsNamesWithoutDataset: with a dataset the registry does
// not define, every member is removed as unclassified, and those whose names
// are not plain identifiers are reported as one withheld member, by Decide
// and by a reused Decision alike.
func TestMinimiseWithholdsNamesWithoutDataset(t *testing.T) {
	e := NewEngine(engineRegistry(t))
	req, at := give{recipient: "p-de", purpose: "delivery", dataset: "no-such-dataset",
		record: map[string]any{"order_id": "1", "ada@example.com": "x", "Ada Lovelace": "y"}}.request()
	want := map[string]string{"order_id": FieldUnclassified, WithheldName: FieldUnclassified}
	var reused Decision
	for i := range 3 {
		d := e.Decide(req, at)
		if i > 0 {
			e.DecideInto(&reused, req, at)
			d = &reused
		}
		got := map[string]string{}
		for _, f := range d.Fields.Removed {
			got[f.Path] = f.Reason
		}
		if len(d.Fields.Removed) != len(got) || !maps.Equal(got, want) {
			t.Errorf("removed = %v, want %v", d.Fields.Removed, want)
		}
	}
}

// TestRemovedJSONRepeatsNoKey: removed fields are written as a JSON object
// whose keys are distinct, even when a record built in code (ParseRequest
// refuses it) gives a field both nested and with dots and so has it removed
// twice; a path removed for two reasons is written with the one that sorts
// first.
func TestRemovedJSONRepeatsNoKey(t *testing.T) {
	tests := []struct {
		name string
		give Removed
		want string
	}{
		{"repeated path and reason", Removed{{"note.health", FieldCategoryNotPermitted}, {"gift", FieldUnclassified}, {"note.health", FieldCategoryNotPermitted}},
			`{"gift":"unclassified_field","note.health":"category_not_permitted"}`},
		{"repeated path, two reasons", Removed{{"payment.method", FieldUnclassified}, {"payment.method", FieldCategoryNotPermitted}},
			`{"payment.method":"category_not_permitted"}`},
		{"empty", Removed{}, `{}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := json.Marshal(tt.give)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("removed = %s, want %s", got, tt.want)
			}
		})
	}

	e := NewEngine(engineRegistry(t))
	req, at := give{recipient: "p-de", purpose: "delivery", record: map[string]any{
		"order_id": "1", "note": map[string]any{"health": "y"}, "note.health": "z"}}.request()
	var reused Decision
	for _, d := range []*Decision{e.Decide(req, at), &reused} {
		e.DecideInto(&reused, req, at)
		got, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		var fields struct {
			Fields struct {
				Removed json.RawMessage `json:"removed"`
			} `json:"fields"`
		}
		if err := json.Unmarshal(got, &fields); err != nil {
			t.Fatal(err)
		}
		if want := `{"note.health":"category_not_permitted"}`; string(fields.Fields.Removed) != want {
			t.Errorf("removed = %s, want %s", fields.Fields.Removed, want)
		}
	}
}
