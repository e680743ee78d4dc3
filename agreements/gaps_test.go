package agreements

import (
	"fmt"
	"slices"
	"testing"
)

// TestMechanismGaps: a disclosure agreement that lets a party receive a
// category its scc or bcr for the same purpose does not list is a gap,
// prefix patterns and special categories counted as minimisation counts
// them; a mechanism that lists them, or a terminated agreement, is none.
func TestMechanismGaps(t *testing.T) {
	show := func(gs []MechanismGap) []string {
		var out []string
		for _, g := range gs {
			out = append(out, fmt.Sprintf("%s>%s %s(%s) %s %v", g.Agreement.ID, g.Mechanism.ID, g.Party, g.Country, g.Purpose, g.Categories))
		}
		return out
	}
	r := engineRegistry(t)
	want := []string{
		"s-dpa-pref>scc-us p-us(US) delivery [identity.name]",
		"a-de>scc-us-tia p-us-tia(US) delivery [financial.payment identity.name]",
		"a-de>bcr-sg p-sg(SG) delivery [financial.payment identity.name]",
	}
	if got := show(r.MechanismGaps()); !slices.Equal(got, want) {
		t.Fatalf("gaps of the engine fixture:\n got %q\nwant %q", got, want)
	}

	c := r.Content()
	for i := range c.Agreements {
		switch a := &c.Agreements[i]; a.ID {
		case "scc-us":
			a.Categories = append(slices.Clone(a.Categories), "identity.*") // a pattern covers identity.name
		case "bcr-sg":
			a.Categories = []string{"*"} // every category but the special ones
		case "scc-us-tia":
			a.Status = StatusTerminated
		}
	}
	n, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	if got := show(n.MechanismGaps()); len(got) != 0 {
		t.Fatalf("gaps once the mechanisms list the categories: %q", got)
	}

	// A special category enters a mechanism by its name alone.
	if !slices.Contains(n.categories, "special.health") {
		t.Skip("the fixture's datasets classify no special.health")
	}
	for i := range c.Agreements {
		if c.Agreements[i].ID == "a-de" {
			c.Agreements[i].Categories = append(slices.Clone(c.Agreements[i].Categories), "special.health")
		}
	}
	if n, err = New(c); err != nil {
		t.Fatal(err)
	}
	got := show(n.MechanismGaps())
	if !slices.Equal(got, []string{"a-de>bcr-sg p-sg(SG) delivery [special.health]"}) {
		t.Fatalf("a special category past a mechanism of \"*\": %q", got)
	}
}
