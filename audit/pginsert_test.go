package audit

import (
	"testing"
	"time"
)

// TestAppendAwkwardText appends entries whose text holds what an array
// literal must escape (quotes, backslashes, braces, commas, spaces, line
// breaks, "NULL", empty strings, non-ASCII) or what the batch insert splits
// its text columns on (control characters), and reads them back unchanged.
// On PostgreSQL the first batch goes the locked way and the rest through
// the prepared array insert (fastInsert), so both encodings are checked.
func TestAppendAwkwardText(t *testing.T) {
	texts := []string{
		`say "hi"`, `back\slash`, `\"`, `{a,b}`, `a, b`, " lead and trail ", "line\nbreak\ttab",
		"NULL", "", "Zürich — 東京", `\`, `"`, `}`,
		// The text columns' delimiter, and every control character:
		// another delimiter, then array literals (freeDelim).
		"unit\x1fseparator", allControl(),
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

// allControl returns the control characters 1 to 31.
func allControl() string {
	b := make([]byte, 31)
	for i := range b {
		b[i] = byte(i + 1)
	}
	return string(b)
}

// TestFreeDelim: the text columns' delimiter is one no text of the batch
// holds, and none (array literals) when the batch holds them all. Every
// column stored as text counts, the lists not: their JSON escapes control
// characters.
func TestFreeDelim(t *testing.T) {
	pend := func(e *Entry) *pending {
		p, err := newPending(e)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	batch := func(texts ...string) []*pending {
		var out []*pending
		for i, s := range texts {
			e := decidedEntry(i)
			e.Purpose = s
			out = append(out, pend(e))
		}
		return out
	}
	for _, c := range []struct {
		texts []string
		want  byte
	}{
		{[]string{"plain", "text"}, 0x1f},
		{[]string{"a\x1fb", "c"}, 0x1e},
		{[]string{"a\x1f", "\x1e\x1d"}, 0x1c},
		{[]string{allControl()[1:]}, 1},
		{[]string{"x", allControl()}, 0},
	} {
		if got := freeDelim(batch(c.texts...)); got != c.want {
			t.Errorf("freeDelim(%q) = %#x, want %#x", c.texts, got, c.want)
		}
	}
	fields := map[string]func(*Entry) *string{
		"event": func(e *Entry) *string { return (*string)(&e.Event) }, "request_id": func(e *Entry) *string { return &e.RequestID },
		"source": func(e *Entry) *string { return &e.Source }, "recipient": func(e *Entry) *string { return &e.Recipient },
		"recipient_country": func(e *Entry) *string { return &e.RecipientCountry }, "origin": func(e *Entry) *string { return &e.Origin },
		"purpose": func(e *Entry) *string { return &e.Purpose }, "dataset": func(e *Entry) *string { return &e.Dataset },
		"decision": func(e *Entry) *string { return &e.Decision }, "legal_basis": func(e *Entry) *string { return &e.LegalBasis },
		"agreement_id": func(e *Entry) *string { return &e.AgreementID }, "mechanism": func(e *Entry) *string { return &e.Mechanism },
		"key_ref": func(e *Entry) *string { return &e.KeyRef }, "payload_digest": func(e *Entry) *string { return &e.PayloadDigest },
		"registry_version": func(e *Entry) *string { return &e.RegistryVersion }, "subject_hmac": func(e *Entry) *string { return &e.SubjectHMAC },
	}
	textCols := 0
	for c := range entryColumnCount {
		if textColumns[c] {
			textCols++
		}
	}
	// Every text column but the three lists and the two hashes.
	if len(fields) != textCols-5 {
		t.Fatalf("%d fields for %d text columns", len(fields), textCols)
	}
	for name, field := range fields {
		e := decidedEntry(1)
		e.SubjectID = ""
		*field(e) += "\x1f"
		if got := freeDelim([]*pending{pend(e)}); got != 0x1e {
			t.Errorf("%s holding the unit separator: delimiter %#x", name, got)
		}
	}
	e := decidedEntry(1)
	e.Reasons, e.CategoriesSent, e.FieldsRemoved = []string{"a\x1f"}, []string{"\x1f"}, map[string]string{"\x1f": "\x1f"}
	if got := freeDelim([]*pending{pend(e)}); got != 0x1f {
		t.Errorf("lists holding the unit separator: delimiter %#x", got)
	}
}
