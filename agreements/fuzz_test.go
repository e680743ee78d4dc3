package agreements

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// FuzzParse feeds arbitrary bytes to the registry parser: it must never
// panic, and a registry it accepts must decide requests without panicking.
func FuzzParse(f *testing.F) {
	f.Add([]byte(base))
	f.Add([]byte("zones: {EEA: [DE]}\nparties: [{id: a, name: b, role: authority, country: DE, connector: c}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Parse(File{Name: "fuzz.yaml", Data: data})
		if err != nil {
			if len(Problems(err)) == 0 {
				t.Fatal("error without problems")
			}
			return
		}
		e := NewEngine(r)
		at := time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)
		for _, p := range r.Content().Parties {
			for _, pu := range r.Content().Purposes {
				for _, ds := range r.Content().Datasets {
					d := e.Decide(&Request{ID: "f", Recipient: p.ID, Purpose: pu.ID, Dataset: ds.ID,
						Subject: Subject{ID: "s", Jurisdiction: "DE"}, Record: map[string]any{"a": map[string]any{"b": 1}}}, at)
					if _, err := json.Marshal(d); err != nil {
						t.Fatalf("marshal decision: %v", err)
					}
				}
			}
		}
	})
}

// FuzzParseRequest feeds arbitrary bytes to the request parser: it must
// never panic, every error must be an invalid_request, and an accepted
// request must decide without panicking, the same with a Decision reused
// after an allowed request (DecideInto) as with a new one (Decide).
func FuzzParseRequest(f *testing.F) {
	f.Add([]byte(goodRequest))
	f.Add([]byte("[" + goodRequest + "]"))
	f.Add([]byte(`{"record": {"a.b": {"c": [1, {"d": null}]}}}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"ada@example.com": 1, "subject": {"Ada Lovelace": true}}`))
	f.Add([]byte(`{"id":"a","source":"o","recipient":"swiftship-de","purpose":"delivery","dataset":"order.delivery",` +
		`"subject":{"id":"s","jurisdiction":"DE","minor":false},"record":{"name":"n","+44 20 7946 0000":1,"note":{"a b":2}}}`))
	f.Add([]byte(`{"id":"a","source":"o","recipient":"r","purpose":"p","dataset":"d",` +
		`"subject":{"id":"s","jurisdiction":"DE","minor":false},"record":{"x":[{"a b":1,"a b":2}]}}`))
	f.Add([]byte(`{"id":"a","source":"o","recipient":"swiftship-de","purpose":"delivery","dataset":"order.delivery",` +
		`"subject":{"id":"s","jurisdiction":"DE","minor":false},"record":{"payment":{"method":"c"},"payment.method":"d","note":{"health":"y"},"note.health":"z"}}`))
	reg, err := Load("../examples/registry")
	if err != nil {
		f.Fatal(err)
	}
	e := NewEngine(reg)
	at := time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)
	prelude, err := os.ReadFile("../examples/requests/01-delivery-eea-allow.json")
	if err != nil {
		f.Fatal(err)
	}
	before, err := ParseRequest(prelude)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		reqs, err := ParseRequests(data)
		if err != nil {
			for _, p := range Problems(err) {
				re, ok := p.(*RequestError)
				if !ok {
					t.Fatalf("problem %T is not a *RequestError: %v", p, p)
				}
				checkNamed(t, "error field", re.Field)
			}
			return
		}
		for _, req := range reqs {
			d := e.Decide(req, at)
			for _, f := range d.Fields.Removed {
				checkNamed(t, "removed field", f.Path)
			}
			if _, err := json.Marshal(d); err != nil {
				t.Fatalf("marshal decision: %v", err)
			}
			if _, err := json.Marshal(d.Record); err != nil {
				t.Fatalf("marshal record: %v", err)
			}
		}
		var reused Decision
		e.DecideInto(&reused, before, at)
		for i, req := range reqs {
			e.DecideInto(&reused, req, at)
			if got, want := viewOf(&reused), viewOf(e.Decide(req, at)); got != want {
				t.Fatalf("request %d: DecideInto\n got %+v\nwant %+v", i, got, want)
			}
		}
	})
}

// checkNamed fails unless every segment of path (dotted, with [i] indices)
// is a plain name or WithheldName: nothing else a producer wrote is
// repeated where a request's members are named.
func checkNamed(t *testing.T, what, path string) {
	t.Helper()
	rest := strings.ReplaceAll(path, WithheldName, "w")
	rest = regexp.MustCompile(`\[\d+\]`).ReplaceAllString(rest, "")
	rest = strings.TrimPrefix(rest, ".")
	if rest != "" && !plainName(rest) {
		t.Fatalf("%s %q repeats a name that is not plain", what, path)
	}
}
