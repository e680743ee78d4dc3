package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/clearance-broker/clearance/internal/jsonenc"
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

// storable returns e with its text made what newPending takes (no invalid
// UTF-8, no NUL byte), as only such entries reach a batch.
func storable(e *Entry) *Entry {
	clean := func(s string) string { return strings.ReplaceAll(strings.ToValidUTF8(s, "?"), "\x00", "0") }
	for _, f := range []*string{&e.RequestID, &e.Source, &e.Recipient, &e.RecipientCountry, &e.Origin, &e.Purpose, &e.Dataset,
		&e.Decision, &e.LegalBasis, &e.AgreementID, &e.Mechanism, &e.KeyRef, &e.PayloadDigest, &e.RegistryVersion, &e.SubjectHMAC} {
		*f = clean(*f)
	}
	e.Event = Event(clean(string(e.Event)))
	for _, l := range [][]string{e.Reasons, e.CategoriesSent} {
		for i := range l {
			l[i] = clean(l[i])
		}
	}
	m := make(map[string]string, len(e.FieldsRemoved))
	for k, v := range e.FieldsRemoved {
		m[clean(k)] = clean(v)
	}
	e.FieldsRemoved = m
	return e
}

// seenIn is what the strings held (jsonenc.Seen), found byte by byte.
func seenIn(ss ...string) jsonenc.Seen {
	var seen jsonenc.Seen
	for _, s := range ss {
		for i := range len(s) {
			if s[i] < 0x20 {
				seen |= 1 << s[i]
			}
		}
		if !utf8.ValidString(s) {
			seen |= jsonenc.SeenInvalidUTF8
		}
	}
	return seen
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
	text, all := seenIn(string(e.Event), e.RequestID, e.Source, e.Recipient, e.RecipientCountry, e.Origin, e.Purpose, e.Dataset,
		e.Decision, e.LegalBasis, e.AgreementID, e.Mechanism, e.KeyRef, e.PayloadDigest, e.RegistryVersion, e.SubjectHMAC), jsonenc.Seen(0)
	all |= text | seenIn(e.Reasons...) | seenIn(e.CategoriesSent...)
	for k, v := range e.FieldsRemoved {
		all |= seenIn(k, v)
	}
	if ls.text != text || ls.all != all {
		t.Fatalf("%#v: seen %#x in text, %#x in all; want %#x, %#x", e, ls.text, ls.all, text, all)
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
// a hash, and that appendHashBody reports it; and that Append refuses year 0
// too, which has a canonical form but which Postgres cannot hold: taken in,
// it failed the batch it was written with, its neighbours' appends too.
func TestCanonicalRefusesYears(t *testing.T) {
	for name, dsn := range map[string]string{"sqlite": sqliteDSN(t), "postgres": postgresDSN(t)} {
		t.Run(name, func(t *testing.T) {
			l := openTestLog(t, openTestDB(t, dsn), testOptions(t))
			for i, tm := range []time.Time{
				time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
				time.Date(-1, 12, 31, 0, 0, 0, 0, time.UTC),
				time.Date(0, 6, 1, 0, 0, 0, 0, time.UTC),
				// Year 1 in its zone, year 0 in UTC: refused.
				time.Date(1, 1, 1, 0, 30, 0, 0, time.FixedZone("x", 3600)),
				// Year 10000 in its zone, 9999 in UTC: accepted.
				time.Date(10000, 1, 1, 0, 30, 0, 0, time.FixedZone("x", 3600)),
				time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC),
			} {
				e := decidedEntry(i + 1)
				e.Time = tm
				// A neighbour appended at once, to share the batch.
				var wg sync.WaitGroup
				var nerr error
				wg.Go(func() { _, nerr = l.Append(t.Context(), decidedEntry(100+i)) })
				_, err := l.Append(t.Context(), e)
				wg.Wait()
				y := tm.UTC().Year()
				want := y > 9999 || y < 1
				if want != errors.Is(err, ErrInvalidEntry) {
					t.Errorf("%v: append: %v", tm, err)
				}
				if nerr != nil {
					t.Errorf("%v: the neighbour's append: %v", tm, nerr)
				}
				_, _, ok := appendHashBody(nil, e)
				if encodable := y >= 0 && y <= 9999; ok != encodable {
					t.Errorf("%v: appendHashBody encodable = %v", tm, ok)
				}
			}
		})
	}
}

// oldBatchArgs is batchArgs as it was, a row at a time through []any: the
// reference for the literals batchArgs builds.
func oldBatchArgs(rows []entryRow, c int, head, next headRow) []any {
	args := make([]any, 5, 5+strings.Count(entryColumns, ",")+1)
	args[0], args[1], args[2], args[3], args[4] = next.Seq, next.Hash, head.Seq, head.Hash, int64(c+1)
	var cols [][]byte
	for i := range rows {
		for c, v := range rows[i].values(rows[i].Seq) {
			if i == 0 {
				cols = append(cols, make([]byte, 0, 80*len(rows)))
				cols[c] = append(cols[c], '{')
			} else {
				cols[c] = append(cols[c], ',')
			}
			cols[c] = oldArrayElem(cols[c], v)
		}
	}
	for _, b := range cols {
		args = append(args, string(append(b, '}')))
	}
	return args
}

// literalArg returns argument i of a batch insert, a, as the array literal
// the server reads from it: a text column's values, each after delim, as a
// literal; anything else as it is.
func literalArg(i int, a any, delim string) any {
	s, ok := a.(string)
	if c := i - 5; !ok || c < 0 || c >= entryColumnCount || !textColumns[c] || delim == "" {
		return a
	}
	lit := []byte{'{'}
	for i, v := range strings.Split(s, delim)[1:] {
		if i > 0 {
			lit = append(lit, ',')
		}
		lit = oldArrayElem(lit, v)
	}
	return string(append(lit, '}'))
}

func oldArrayElem(b []byte, v any) []byte {
	switch v := v.(type) {
	case int64:
		return strconv.AppendInt(b, v, 10)
	case int:
		return strconv.AppendInt(b, int64(v), 10)
	case time.Time:
		b = append(b, '"')
		b = v.UTC().AppendFormat(b, "2006-01-02 15:04:05.999999-07:00")
		return append(b, '"')
	case string:
		b = append(b, '"')
		for i := 0; i < len(v); i++ {
			if v[i] == '"' || v[i] == '\\' {
				b = append(b, '\\')
			}
			b = append(b, v[i])
		}
		return append(b, '"')
	}
	panic(fmt.Sprintf("audit: no array encoding for %T", v))
}

// TestBatchArgsMatchOld checks that the batch insert's arguments, built in
// reused buffers, are those the row-at-a-time encoding gave, batch after
// batch, with chain sequences and hashes as computeHash has them.
func TestBatchArgsMatchOld(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, k := range []int64{1, 3} {
		ln := &lane{l: &Log{ly: layout{k: k}}, chain: int(k) - 1}
		head := headRow{ID: k, Seq: 40 + k - 1, Hash: strings.Repeat("0a", 32)}
		for range 30 {
			batch := make([]*pending, 1+r.IntN(40))
			var entries []Entry
			for i := range batch {
				e := storable(randomEntry(r))
				e.Time = testTime.Add(time.Duration(r.Int64N(1 << 55))).In(time.FixedZone("z", 7200))
				e.AgreementVersion = r.IntN(10)
				var err error
				if batch[i], err = newPending(e); err != nil {
					t.Fatal(err)
				}
				entries = append(entries, e.clone())
			}
			next := ln.link(batch, head)
			var want []entryRow
			prev := head.Hash
			for i := range entries {
				e := &entries[i]
				e.SubjectID = ""
				e.Sequence, e.PrevHash = head.Seq+int64(i+1)*k, prev
				e.Hash = jsonHash(e)
				if g := string(batch[i].hash[:]); g != e.Hash {
					t.Fatalf("entry %d: hash %s, want %s", i, g, e.Hash)
				}
				prev = e.Hash
				want = append(want, toRow(e))
			}
			if next.Seq != head.Seq+int64(len(batch))*k || next.Hash != prev || next.ID != head.ID {
				t.Fatalf("next head %+v, want seq %d hash %s", next, head.Seq+int64(len(batch))*k, prev)
			}
			if got := entryRows(batch, head); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("rows\n%v\nwant\n%v", got, want)
			}
			wantArgs := oldBatchArgs(want, ln.chain, head, next)
			wantArgs = append(wantArgs, "{}")
			gotArgs := ln.batchArgs(batch, head, next, false)
			if len(gotArgs) != len(wantArgs)+1 {
				t.Fatalf("%d args, want %d", len(gotArgs), len(wantArgs)+1)
			}
			delim, _ := gotArgs[len(gotArgs)-1].(string)
			if len(delim) != 1 || delim[0] == 0 || delim[0] >= 32 {
				t.Fatalf("delimiter %q, want one control character", delim)
			}
			for i := range wantArgs {
				if got := literalArg(i, gotArgs[i], delim); got != wantArgs[i] {
					t.Fatalf("arg %d:\n%v\nwant\n%v", i, got, wantArgs[i])
				}
			}
			// The array literals a batch holding every control
			// character falls back to.
			ln.buildColumns(batch, head, 0)
			for c, col := range ln.cols {
				if got := string(col); got != wantArgs[5+c] {
					t.Fatalf("column %d as a literal:\n%v\nwant\n%v", c, got, wantArgs[5+c])
				}
			}
			ln.releaseArgs()
			for _, a := range ln.args {
				if a != nil {
					t.Fatal("releaseArgs left an argument")
				}
			}
			head = next
		}
	}
}

// TestArrayTimeMatchesLayout compares appendArrayTime with the layout it
// stands for, for microsecond times in and outside the years of 4 digits
// and times with nanoseconds.
func TestArrayTimeMatchesLayout(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	times := []time.Time{{}, time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(-5, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	for range 20000 {
		tm := time.Unix(r.Int64N(1<<40)-1<<39, r.Int64N(1e9)).In(time.FixedZone("z", r.IntN(50000)-25000))
		if r.IntN(2) == 0 {
			tm = tm.Truncate(time.Microsecond)
		}
		times = append(times, tm)
	}
	for _, tm := range times {
		want := `"` + tm.UTC().Format("2006-01-02 15:04:05.999999-07:00") + `"`
		if got := string(appendArrayTime(nil, tm)); got != want {
			t.Fatalf("%v: %s, want %s", tm, got, want)
		}
	}
}

// TestRouteMatchesFNV checks the written-out FNV-1a of route against
// hash/fnv's.
func TestRouteMatchesFNV(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for _, k := range []int64{2, 3, 7} {
		ly := layout{k: k}
		for range 2000 {
			id := oddString(r) + strconv.Itoa(r.IntN(1e6))
			h := fnv.New32a()
			h.Write([]byte(id))
			if got, want := ly.route(id), int(h.Sum32()%uint32(k)); got != want {
				t.Fatalf("route(%q) = %d, want %d", id, got, want)
			}
		}
	}
}

// TestSubjectHMACReused checks that the log's reused HMAC state gives
// SubjectHMAC's digest, also from goroutines at once.
func TestSubjectHMACReused(t *testing.T) {
	l := openTestLog(t, openTestDB(t, sqliteDSN(t)), testOptions(t))
	done := make(chan struct{})
	for g := range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range 500 {
				id := fmt.Sprintf("cust-%d-%d%s", g, i, strings.Repeat("x", i%70))
				if got, want := l.subjectHMAC(id), SubjectHMAC(testSubjectKey, id); got != want {
					t.Errorf("%s: %s, want %s", id, got, want)
					return
				}
			}
		}()
	}
	for range 4 {
		<-done
	}
}
