package agreements

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// categoryContent returns a registry of one dataset "ds" classifying
// fields, and one delivery agreement for each list of cats, the i-th for
// party p<i+1>, all in Germany.
func categoryContent(fields map[string]string, cats ...[]string) Content {
	from, until := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 12, 31, 0, 0, 0, 0, time.UTC)
	c := Content{
		Datasets: []Dataset{{ID: "ds", Personal: true, Fields: fields}},
		Purposes: []Purpose{{ID: "delivery", LegalBasis: BasisContract}},
	}
	for i, list := range cats {
		id := "p" + string(rune('1'+i))
		c.Parties = append(c.Parties, Party{ID: id, Name: id, Role: RoleProcessor, Country: "DE", Connector: "hook"})
		c.Agreements = append(c.Agreements, Agreement{ID: "a-" + id, Version: 1, Kind: KindDPA, Parties: []string{id},
			Purposes: []string{"delivery"}, Categories: list, ValidFrom: from, ValidUntil: until, Status: StatusActive})
	}
	return c
}

// decideFor decides a delivery of rec to party on 2026-11-28.
func decideFor(r *Registry, party string, rec map[string]any) *Decision {
	req := &Request{ID: "r", Source: "test", Recipient: party, Purpose: "delivery", Dataset: "ds",
		Subject: Subject{ID: "s", Jurisdiction: "DE"}, Record: rec}
	return NewEngine(r).Decide(req, time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC))
}

// TestCategoryListsKeepTheirScopes: an agreement listing one category
// whose name holds a newline does not take the scope of another listing
// the two names that newline joins: registry files with such a name are
// refused, and a registry stored before that rule (New) tells the
// agreements' lists apart whatever their names hold.
func TestCategoryListsKeepTheirScopes(t *testing.T) {
	c := categoryContent(map[string]string{"name": "identity.name", "note.health": "special.health", "odd": "special.health\nidentity.name"},
		[]string{"special.health", "identity.name"}, []string{"special.health\nidentity.name"})
	stored, err := New(c)
	if err != nil {
		t.Fatalf("a registry stored before the rule: %v", err)
	}
	if d := decideFor(stored, "p2", map[string]any{"name": "n", "note": map[string]any{"health": "h"}}); len(d.Fields.Kept) != 0 {
		t.Fatalf("p2, whose agreement lists neither, gets %s with %v", d.Decision, d.Fields.Kept)
	}
	r, err := newRegistry(c, true)
	if err == nil {
		d := decideFor(r, "p2", map[string]any{"name": "n", "note": map[string]any{"health": "h"}})
		t.Fatalf("registry files with a category holding a newline were accepted; p2 gets %s with %v", d.Decision, d.Fields.Kept)
	}
	for _, want := range []string{"datasets[0].fields.odd: invalid value: category (name withheld) is refused (character 15, U+000A, is not allowed)",
		"agreements[1].categories[0]: invalid value: category (name withheld) is refused (character 15, U+000A, is not allowed)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not contain %q:\n%v", want, err)
		}
	}
}

// TestScopeKey: the key agreements share a compiled scope by is the same
// for two lists of categories only when the lists are.
func TestScopeKey(t *testing.T) {
	tests := []struct {
		name string
		a, b []string
	}{
		{"a newline joining two names", []string{"special.health", "identity.name"}, []string{"special.health\nidentity.name"}},
		{"a name that looks like a length", []string{"1:a"}, []string{"a", "a"}},
		{"one empty name and none", []string{""}, nil},
		{"names split elsewhere", []string{"ab", "c"}, []string{"a", "bc"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if scopeKey(tt.a) == scopeKey(tt.b) {
				t.Errorf("scopeKey(%q) = scopeKey(%q) = %q", tt.a, tt.b, scopeKey(tt.a))
			}
			if scopeKey(tt.a) != scopeKey(slices.Clone(tt.a)) {
				t.Errorf("scopeKey(%q) differs between equal lists", tt.a)
			}
		})
	}
}

// TestCategoryHasOneSpelling: a dataset field classified with a category
// written otherwise than in lower-case ASCII, such as a special category
// in upper case, with a space or with a look-alike letter, cannot pass an
// agreement of "*" as an ordinary category: registry files holding it are
// refused. A registry stored before the rule still loads (New), so that an
// upgrade does not stop the instances; lint and the next apply name it.
func TestCategoryHasOneSpelling(t *testing.T) {
	for _, cat := range []string{"Special.health", " special.health", "special.health ", "\u0455pecial.health", "special.Health", "special.heal\u200bth"} {
		t.Run(cat, func(t *testing.T) {
			c := categoryContent(map[string]string{"name": "identity.name", "note.health": cat}, []string{"*"})
			if _, err := New(c); err != nil {
				t.Fatalf("a registry stored before the rule no longer loads: %v", err)
			}
			r, err := newRegistry(c, true)
			if err == nil {
				d := decideFor(r, "p1", map[string]any{"name": "n", "note": map[string]any{"health": "h"}})
				t.Fatalf("registry files with the category %q were accepted; a record goes with %v", cat, d.Fields.Kept)
			}
			if !errors.Is(err, ErrInvalidValue) || !strings.Contains(err.Error(), "datasets[0].fields.note.health: invalid value: category ") ||
				!strings.Contains(err.Error(), categoryRule) {
				t.Errorf("error = %v", err)
			}
		})
	}
}

// TestSpecialCategoryItself: a field classified special (no name under
// it) is an Art. 9 category like special.health: "*" does not reach it,
// its name does.
func TestSpecialCategoryItself(t *testing.T) {
	r, err := New(categoryContent(map[string]string{"name": "identity.name", "note": "special"}, []string{"*"}, []string{"identity.name", "special"}))
	if err != nil {
		t.Fatal(err)
	}
	rec := map[string]any{"name": "n", "note": "h"}
	if d := decideFor(r, "p1", rec); !slices.Equal(d.Fields.Kept, []string{"name"}) || d.Fields.Removed.Reason("note") != FieldCategoryNotPermitted {
		t.Errorf("by *: kept %v, removed %v", d.Fields.Kept, d.Fields.Removed)
	}
	if d := decideFor(r, "p2", rec); !slices.Equal(d.Fields.Kept, []string{"name", "note"}) {
		t.Errorf("by name: kept %v, removed %v", d.Fields.Kept, d.Fields.Removed)
	}
	if _, err := New(categoryContent(map[string]string{"note": "special"}, []string{"special.*"})); err == nil ||
		!strings.Contains(err.Error(), "special categories (Art. 9) must be listed by name") {
		t.Errorf("special.* over special: %v", err)
	}
}
