package agreements

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// decisionView is everything a caller can read from a Decision, in a form
// that compares with ==.
type decisionView struct {
	JSON, Record                                    string
	RecordNil, ReasonsNil, KeptNil, RemovedNil      bool
	Categories                                      string
	CategoriesNil                                   bool
	Origin, RecipientCountry, Connector, LegalOrder string
	RetentionDays                                   int
	Agreement                                       *AgreementRef
}

func viewOf(d *Decision) decisionView {
	return decisionView{JSON: mustJSON(d), Record: mustJSON(d.Record),
		RecordNil: d.Record == nil, ReasonsNil: d.Reasons == nil, KeptNil: d.Fields.Kept == nil, RemovedNil: d.Fields.Removed == nil,
		Categories: strings.Join(d.Categories, ","), CategoriesNil: d.Categories == nil,
		Origin: d.Origin, RecipientCountry: d.RecipientCountry, Connector: d.Connector, LegalOrder: d.LegalOrder,
		RetentionDays: d.RetentionDays, Agreement: d.Agreement}
}

func mustJSON(v any) string {
	data, err := json.Marshal(v)
	if err != nil {
		return "error: " + err.Error()
	}
	return string(data)
}

// sameDecision reports whether two decisions read the same.
func sameDecision(a, b *Decision) bool { return viewOf(a) == viewOf(b) }

// reuseCase is one request of the reuse tests.
type reuseCase struct {
	name string
	req  *Request
	at   time.Time
}

// engineCases returns the requests of TestDecideRules and TestMinimisePaths
// against the engine fixture: every rule and reason code, allowed and
// denied, personal and not, with records of different shapes.
func engineCases() []reuseCase {
	var cases []reuseCase
	for _, tt := range ruleTests {
		req, at := tt.give.request()
		cases = append(cases, reuseCase{tt.name, req, at})
	}
	records := []map[string]any{
		{"payment": map[string]any{"method": "card", "x1": 1, "x2": 2, "x3": 3, "x4": 4, "x5": 5, "x6": 6, "x7": 7, "x8": 8, "x9": 9},
			"note": map[string]any{"health": "h", "driver": "d"}, "name": "n"},
		{"payment.method": "card", "payment.cvv": "123", "order_id": "1"},
		{"name": "n", "payment": "card", "": "empty"},
		{"name": "n"},
		{},
	}
	for i, rec := range records {
		req, at := give{recipient: "p-de", purpose: "delivery", record: rec}.request()
		cases = append(cases, reuseCase{fmt.Sprintf("record %d", i), req, at})
	}
	return cases
}

// TestDecideIntoMatchesDecide decides every case with one reused Decision,
// in order and in reverse, and compares each decision with Decide's: a
// reused Decision carries nothing over from the request before.
func TestDecideIntoMatchesDecide(t *testing.T) {
	e := NewEngine(engineRegistry(t))
	cases := engineCases()
	for _, order := range []string{"forward", "reverse"} {
		t.Run(order, func(t *testing.T) {
			var d Decision
			for i := range cases {
				c := cases[i]
				if order == "reverse" {
					c = cases[len(cases)-1-i]
				}
				e.DecideInto(&d, c.req, c.at)
				if got, want := viewOf(&d), viewOf(e.Decide(c.req, c.at)); got != want {
					t.Errorf("%s: DecideInto after other requests\n got %+v\nwant %+v", c.name, got, want)
				}
			}
		})
	}
}

// TestDecideIntoGoldenExamples decides the example requests with one reused
// Decision and compares them with the golden files.
func TestDecideIntoGoldenExamples(t *testing.T) {
	reg, err := Load("../examples/registry")
	if err != nil {
		t.Fatalf("example registry: %v", err)
	}
	e := NewEngine(reg)
	at := mustTime(t, goldenAt)
	files, err := filepath.Glob("../examples/requests/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no example requests: %v", err)
	}
	var d Decision
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		reqs, err := ParseRequests(data)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		for i, req := range reqs {
			e.DecideInto(&d, req, at)
			if got, want := viewOf(&d), viewOf(e.Decide(req, at)); got != want {
				t.Errorf("%s[%d]: DecideInto\n got %+v\nwant %+v", filepath.Base(file), i, got, want)
			}
		}
	}
}

// TestDecideIntoEmptiesPreviousRecord checks that the record of a previous
// decision does not survive in a reused Decision: the next decision empties
// its maps, whether it allows or denies.
func TestDecideIntoEmptiesPreviousRecord(t *testing.T) {
	tests := []struct {
		name string
		next give
	}{
		{"next allowed with fewer fields", give{recipient: "p-de", purpose: "delivery", record: map[string]any{"name": "m"}}},
		{"next denied", give{recipient: "nobody", purpose: "delivery"}},
		{"next not personal", give{recipient: "p-br", purpose: "research", dataset: "stats", record: map[string]any{"units": 3}}},
	}
	e := NewEngine(engineRegistry(t))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d Decision
			first, at := give{recipient: "p-de", purpose: "delivery"}.request()
			e.DecideInto(&d, first, at)
			prev := d.Record
			if prev == nil || prev["payment"] == nil {
				t.Fatalf("first decision = %s %v, record %v", d.Decision, d.Reasons, prev)
			}
			prevPayment := prev["payment"].(map[string]any)
			next, at := tt.next.request()
			e.DecideInto(&d, next, at)
			// A map of the previous record is either empty or one of the
			// new record's maps.
			current := map[string]bool{}
			var collect func(m map[string]any)
			collect = func(m map[string]any) {
				current[fmt.Sprintf("%p", m)] = true
				for _, v := range m {
					if sub, ok := v.(map[string]any); ok {
						collect(sub)
					}
				}
			}
			collect(d.Record)
			for _, m := range []map[string]any{prev, prevPayment} {
				if len(m) > 0 && !current[fmt.Sprintf("%p", m)] {
					t.Errorf("the previous record's data survives the next decision: %v", m)
				}
			}
			if got, want := viewOf(&d), viewOf(e.Decide(next, at)); got != want {
				t.Errorf("DecideInto\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

// TestDecideIntoManyNestedNames decides records whose objects hold ever new
// unclassified members, more than the Decision remembers paths for.
func TestDecideIntoManyNestedNames(t *testing.T) {
	e := NewEngine(engineRegistry(t))
	var d Decision
	for i := range 3 * maxRememberedPaths / 2 {
		name := fmt.Sprintf("extra%d", i)
		req, at := give{recipient: "p-de", purpose: "delivery",
			record: map[string]any{"payment": map[string]any{"method": "card", name: i, "cvv": "1"}}}.request()
		e.DecideInto(&d, req, at)
		if d.Fields.Removed.Reason("payment."+name) != FieldUnclassified || d.Fields.Removed.Reason("payment.cvv") != FieldUnclassified ||
			len(d.Fields.Removed) != 2 {
			t.Fatalf("decision %d: removed = %v", i, d.Fields.Removed)
		}
	}
}

// TestDecideIntoAllocates checks that a reused Decision allocates nothing
// once it has grown to the size of its records.
func TestDecideIntoAllocates(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	r := benchRegistry(t, 10)
	e := NewEngine(r)
	req := &Request{ID: "a", Source: "orders", Recipient: "party-000000", Purpose: "delivery", Dataset: "orders",
		Subject: Subject{ID: "cust-x", Jurisdiction: "DE"}, Record: benchRecord()}
	at := time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)
	var d Decision
	e.DecideInto(&d, req, at)
	if allocs := testing.AllocsPerRun(100, func() { e.DecideInto(&d, req, at) }); allocs != 0 {
		t.Errorf("DecideInto allocates %v times per decision, want 0", allocs)
	}
	if !d.Allowed() || len(d.Record) != 6 {
		t.Errorf("decision = %s %v, record %v", d.Decision, d.Reasons, d.Record)
	}
}

// TestDecideIntoConcurrent decides with one Decision per goroutine while
// the registry is updated (run with -race).
func TestDecideIntoConcurrent(t *testing.T) {
	reg := engineRegistry(t)
	e := NewEngine(reg)
	cases := engineCases()
	want := make([]decisionView, len(cases))
	for i, c := range cases {
		want[i] = viewOf(e.Decide(c.req, c.at))
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			var d Decision
			for round := range 20 {
				i := (g*7 + round*3) % len(cases)
				e.DecideInto(&d, cases[i].req, cases[i].at)
				if got := viewOf(&d); got != want[i] {
					t.Errorf("goroutine %d, %s: got %+v, want %+v", g, cases[i].name, got, want[i])
				}
			}
		})
	}
	for range 10 {
		e.Update(reg)
	}
	wg.Wait()
}
