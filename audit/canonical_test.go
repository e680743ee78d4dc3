package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// jsonHash is the chain hash as the log first computed it, through
// encoding/json: the reference that computeHash must match byte for byte.
func jsonHash(e *Entry) string {
	c := e.clone()
	c.Hash = ""
	b, err := json.Marshal(&c)
	if err != nil {
		panic("audit: encode entry: " + err.Error())
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// jsonBody is the hash body as the log first encoded it, through
// encoding/json (nil if it could not).
func jsonBody(e *Entry) []byte {
	c := e.clone()
	c.Sequence, c.PrevHash, c.Hash = 0, "", ""
	b, err := json.Marshal(&c)
	if err != nil || !bytes.HasPrefix(b, []byte(hashPrefix)) || !bytes.HasSuffix(b, []byte(hashSuffix)) {
		return nil
	}
	return b[len(hashPrefix) : len(b)-len(hashSuffix)]
}

// oddPieces are the awkward parts of the strings that randomEntry makes:
// everything encoding/json escapes, multi-byte characters, and invalid
// UTF-8 (which Append refuses but Verify may read from a tampered store).
var oddPieces = []string{
	"a", "Z", "0", " ", "-", "_", ":", ",", "{", "}", "[", "]", "/", "'", "NULL", "null",
	`"`, `\`, `\"`, `\\`, `\u0000`, "<", ">", "&", "<script>", "&amp;",
	"\x00", "\x01", "\b", "\t", "\n", "\v", "\f", "\r", "\x1b", "\x1f", "\x7f",
	"é", "Zürich", "東京", "—", "\u00a0", "\u2027", "\u2028", "\u2029", "\u202a", "\ufeff", "\ufffd",
	"😀", "\U0010ffff",
	"\xff", "\x80", "\xc3", "\xe6\x9d", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xc0\xaf",
}

func oddString(r *rand.Rand) string {
	var b strings.Builder
	for range r.IntN(8) {
		b.WriteString(oddPieces[r.IntN(len(oddPieces))])
	}
	return b.String()
}

func oddList(r *rand.Rand) []string {
	switch r.IntN(4) {
	case 0:
		return nil
	case 1:
		return []string{}
	}
	s := make([]string, 1+r.IntN(4))
	for i := range s {
		s[i] = oddString(r)
	}
	return s
}

func oddMap(r *rand.Rand) map[string]string {
	switch r.IntN(4) {
	case 0:
		return nil
	case 1:
		return map[string]string{}
	}
	m := map[string]string{}
	for range 1 + r.IntN(12) {
		m[oddString(r)] = oddString(r)
	}
	return m
}

// randomEntry is an entry with odd text everywhere, lists and maps nil,
// empty or full, and a time in any zone with nanoseconds.
func randomEntry(r *rand.Rand) *Entry {
	zones := []*time.Location{time.UTC, time.Local, time.FixedZone("x", -9*3600-1800), time.FixedZone("y", 14*3600)}
	t := time.Unix(r.Int64N(253402300799+62135596800)-62135596800, r.Int64N(1e9)).In(zones[r.IntN(len(zones))])
	if r.IntN(8) == 0 {
		t = time.Time{}
	}
	return &Entry{
		Sequence: r.Int64N(1 << 40), Time: t, Event: Event(oddString(r)), RequestID: oddString(r),
		Source: oddString(r), Recipient: oddString(r), RecipientCountry: oddString(r),
		Origin: oddString(r), Purpose: oddString(r), Dataset: oddString(r), Decision: oddString(r),
		Reasons: oddList(r), LegalBasis: oddString(r), AgreementID: oddString(r),
		AgreementVersion: r.IntN(1<<20) - 1<<19, Mechanism: oddString(r), CategoriesSent: oddList(r),
		FieldsRemoved: oddMap(r), KeyRef: oddString(r), PayloadDigest: oddString(r),
		RegistryVersion: oddString(r), SubjectHMAC: oddString(r), PrevHash: oddString(r),
		Hash: oddString(r), SubjectID: oddString(r),
	}
}

// checkCanonical compares the hand-written encoding of e with
// encoding/json's: the body, its list spans (the stored JSON of the lists),
// and the hash.
func checkCanonical(t *testing.T, e *Entry) {
	t.Helper()
	want := jsonBody(e)
	got, ls, ok := appendHashBody([]byte("prefix"), e)
	if !ok || want == nil {
		t.Fatalf("%#v: encodable %v, encoding/json %v", e, ok, want != nil)
	}
	got = got[len("prefix"):]
	if !bytes.Equal(got, want) {
		t.Fatalf("%#v:\nbody %s\nwant %s", e, got, want)
	}
	c := e.clone()
	for _, l := range []struct {
		name string
		s    span
		v    any
	}{{"reasons", ls.reasons, c.Reasons}, {"categories", ls.categories, c.CategoriesSent}, {"fields removed", ls.fieldsRemoved, c.FieldsRemoved}} {
		if g, w := string(got[l.s.start:l.s.end]), mustJSON(l.v); g != w {
			t.Fatalf("%#v: %s %s, want %s", e, l.name, g, w)
		}
	}
	if g, w := computeHash(e), jsonHash(e); g != w {
		t.Fatalf("%#v: hash %s, want %s", e, g, w)
	}
}

// TestCanonicalMatchesEncodingJSON holds the hand-written canonical JSON to
// what encoding/json writes, over entries with every kind of awkward text.
func TestCanonicalMatchesEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		checkCanonical(t, randomEntry(r))
	}
	fixed := []*Entry{
		decidedEntry(1),
		{},
		{Event: EventRegistryApplied, Time: time.Date(2026, 1, 2, 3, 4, 5, 678901234, time.FixedZone("x", 3600))},
		{Time: time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC)},
		{Time: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)},
		{Time: time.Date(2026, 1, 1, 0, 0, 0, 1000, time.UTC), Reasons: []string{""}, FieldsRemoved: map[string]string{"": ""}},
		{FieldsRemoved: map[string]string{"b": "1", "a": "2", "B": "3", "ab": "4", "a\x00": "5", "é": "6", "<": "7", "\xff": "8", "\ufffd": "9"}},
	}
	for _, e := range fixed {
		checkCanonical(t, e)
	}
}

// TestJSONStringMatchesEncodingJSON compares appendJSONString with
// encoding/json for every single byte, every rune up to U+FFFF and beyond,
// and random byte strings.
func TestJSONStringMatchesEncodingJSON(t *testing.T) {
	check := func(s string) {
		t.Helper()
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendJSONString(nil, s); !bytes.Equal(got, want) {
			t.Fatalf("%q: %s, want %s", s, got, want)
		}
	}
	for c := range 256 {
		check(string([]byte{byte(c)}))
		check("a" + string([]byte{byte(c)}) + "b")
	}
	for c := rune(0); c <= 0x10ffff; c++ {
		if c <= 0xffff || c%97 == 0 {
			check(string(c) + "x")
		}
	}
	r := rand.New(rand.NewPCG(3, 4))
	for range 20000 {
		b := make([]byte, r.IntN(24))
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		check(string(b))
	}
}

// FuzzCanonical compares the hand-written canonical JSON with encoding/json
// on fuzzed text.
func FuzzCanonical(f *testing.F) {
	for _, p := range oddPieces {
		f.Add(p, p, p, int64(0))
	}
	f.Add("decided", "a\u2028b", "<&>", int64(1764324000123456789))
	f.Fuzz(func(t *testing.T, a, b, c string, nanos int64) {
		e := &Entry{
			Time: time.Unix(0, nanos), Event: Event(a), RequestID: b, Recipient: c,
			Reasons: []string{a, b}, CategoriesSent: []string{c}, FieldsRemoved: map[string]string{a: b, c: a, b: c},
			SubjectHMAC: a + b + c, PrevHash: c,
		}
		if y := e.Time.UTC().Year(); y < 0 || y > 9999 {
			e.Time = time.Time{}
		}
		checkCanonical(t, e)
	})
}

// TestCanonicalRefusesYears checks that a time outside the years RFC 3339
// can write is refused by Append (ErrInvalidEntry) rather than left without
// a hash, and that appendHashBody reports it.
func TestCanonicalRefusesYears(t *testing.T) {
	l := openTestLog(t, openTestDB(t, sqliteDSN(t)), testOptions(t))
	for _, tm := range []time.Time{
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-1, 12, 31, 0, 0, 0, 0, time.UTC),
		// Year 10000 in its zone, 9999 in UTC: accepted.
		time.Date(10000, 1, 1, 0, 30, 0, 0, time.FixedZone("x", 3600)),
	} {
		e := decidedEntry(1)
		e.Time = tm
		_, err := l.Append(t.Context(), e)
		want := tm.UTC().Year() > 9999 || tm.UTC().Year() < 0
		if want != errors.Is(err, ErrInvalidEntry) {
			t.Errorf("%v: append: %v", tm, err)
		}
		if _, _, ok := appendHashBody(nil, e); ok == want {
			t.Errorf("%v: appendHashBody encodable = %v", tm, ok)
		}
	}
}
