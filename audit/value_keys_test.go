package audit

import (
	"slices"
	"testing"

	"github.com/uptrace/bun"
)

// TestValueKeys: on Postgres the recipient, country and purpose indexes key
// a hash of the value; a query by each returns exactly the entries a filter
// over every entry keeps (none for a value no entry has), and is planned on
// the column's index; the migration goes down and up again, on the small and
// on the concurrent path, with the same answers on the indexes of each side.
func TestValueKeys(t *testing.T) {
	onBothIndexPaths(t, func(t *testing.T, db *bun.DB, l *Log) {
		ctx := t.Context()
		var keyed, text []string
		for _, k := range valueKeys {
			keyed, text = append(keyed, k.keyIdx), append(text, k.textIdx)
		}
		wantIndexes(t, postgresIndexes(t, db), keyed, text, "open")

		parties := []struct{ recipient, country, purpose string }{
			{"swiftship-de", "DE", "delivery"},
			{"dc-tokyo", "JP", "regional_hosting"},
			{"fastfreight-us", "US", "delivery"},
			{"dc-singapore", "SG", "regional_hosting"},
		}
		var all []*Entry
		for i := range 40 {
			e := decidedEntry(i)
			p := parties[i*i%len(parties)]
			e.Recipient, e.RecipientCountry, e.Purpose = p.recipient, p.country, p.purpose
			if _, err := l.Append(ctx, e); err != nil {
				t.Fatal(err)
			}
			all = append(all, e)
		}
		filters := []struct {
			f    Filter
			idx  string // the index the query can be answered on, once migrated up
			keep func(*Entry) bool
		}{
			{Filter{Recipient: "dc-tokyo"}, "audit_entries_recipient_key_idx", func(e *Entry) bool { return e.Recipient == "dc-tokyo" }},
			{Filter{Recipient: "parcelco-fr"}, "audit_entries_recipient_key_idx", func(*Entry) bool { return false }},
			{Filter{Country: "US"}, "audit_entries_country_key_idx", func(e *Entry) bool { return e.RecipientCountry == "US" }},
			{Filter{Country: "us"}, "audit_entries_country_key_idx", func(*Entry) bool { return false }},
			{Filter{Purpose: "regional_hosting"}, "audit_entries_purpose_key_idx", func(e *Entry) bool { return e.Purpose == "regional_hosting" }},
			{Filter{Purpose: "delivery", Country: "DE", AfterSequence: 8}, "", func(e *Entry) bool {
				return e.Purpose == "delivery" && e.RecipientCountry == "DE" && e.Sequence > 8
			}},
		}
		check := func(when string, planned bool) {
			t.Helper()
			for _, tt := range filters {
				got, err := l.Query(ctx, tt.f)
				if err != nil {
					t.Fatal(err)
				}
				var want, ids []string
				for _, e := range all {
					if tt.keep(e) {
						want = append(want, e.RequestID)
					}
				}
				for _, e := range got {
					ids = append(ids, e.RequestID)
				}
				if !slices.Equal(ids, want) {
					t.Fatalf("%s: %+v: got %v, want %v", when, tt.f, ids, want)
				}
				if planned && tt.idx != "" {
					wantPlannedOn(t, db, l, tt.f, tt.idx)
				}
			}
		}
		// Entries carry their sequence once appended.
		for i, e := range all {
			e.Sequence = int64(i + 1)
		}
		check("open", true)

		if err := valueKeysDown(ctx, db); err != nil {
			t.Fatal(err)
		}
		wantIndexes(t, postgresIndexes(t, db), text, keyed, "down")
		check("down", false)
		wantPlannedOn(t, db, l, Filter{Recipient: "dc-tokyo"}, "audit_entries_recipient_idx")
		if err := valueKeysUp(ctx, db); err != nil {
			t.Fatal(err)
		}
		wantIndexes(t, postgresIndexes(t, db), keyed, text, "up")
		check("up", true)
		if _, err := l.Verify(ctx, testSigner(t)); err != nil {
			t.Fatal(err)
		}
	})
}
