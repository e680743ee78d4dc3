package audit

import (
	"testing"
	"time"
)

// TestAppendAwkwardText appends entries whose text holds what an array
// literal must escape (quotes, backslashes, braces, commas, spaces, line
// breaks, "NULL", empty strings, non-ASCII) and reads them back unchanged.
// On PostgreSQL the first batch goes the locked way and the rest through
// the prepared array insert (fastInsert), so both encodings are checked.
func TestAppendAwkwardText(t *testing.T) {
	texts := []string{
		`say "hi"`, `back\slash`, `\"`, `{a,b}`, `a, b`, " lead and trail ", "line\nbreak\ttab",
		"NULL", "", "Zürich — 東京", `\`, `"`, `}`,
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := t.Context()
			l := openTestLog(t, openTestDB(t, b.dsn(t)), testOptions(t))
			var want []Entry
			for i, s := range texts {
				e := decidedEntry(i)
				e.RequestID, e.Recipient, e.Purpose, e.RegistryVersion = "req "+s, s, s, s
				e.Reasons = []string{s, s + "_transient"}
				e.FieldsRemoved = map[string]string{s: s}
				e.Time = e.Time.Add(time.Duration(i) * 1234567 * time.Nanosecond)
				if _, err := l.Append(ctx, e); err != nil {
					t.Fatalf("append %q: %v", s, err)
				}
				w := e.clone()
				w.SubjectHMAC = SubjectHMAC(testSubjectKey, e.SubjectID)
				want = append(want, w)
			}
			got, err := l.Query(ctx, Filter{})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Fatalf("read %d entries, want %d", len(got), len(want))
			}
			for i := range got {
				w := want[i]
				w.Sequence, w.PrevHash, w.Hash = got[i].Sequence, got[i].PrevHash, got[i].Hash
				if !entriesEqual(got[i], w) || got[i].FieldsRemoved[texts[i]] != texts[i] {
					t.Errorf("entry %d read back as\n%+v\nwant\n%+v", i+1, got[i], w)
				}
			}
			rep, err := l.Verify(ctx, testSigner(t))
			if err != nil || rep.Entries != int64(len(texts)) {
				t.Fatalf("verify: %+v, %v", rep, err)
			}
		})
	}
}
