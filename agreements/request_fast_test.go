package agreements

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unsafe"
)

// strictRequest runs only the strict parser, as ParseRequest did before it
// had a fast path.
func strictRequest(data []byte) (*Request, error) {
	p := &requestParser{}
	req := p.request(data, "")
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	return req, nil
}

// fastCases are inputs the fast path must take (true) or leave to the
// strict parser (false); either way ParseRequest must agree with it.
var fastCases = []struct {
	name string
	data string
	fast bool
}{
	{"good", goodRequest, true},
	{"white space everywhere", " \n{ \"id\" : \"a\" ,\t\"source\":\"orders\",\"recipient\":\"r\",\"purpose\":\"p\",\"dataset\":\"d\",\r\n" +
		"\"subject\": { \"id\":\"s\" , \"jurisdiction\":\"DE\" , \"minor\" : true } , \"record\" : { } } \n", true},
	{"nested record", `{"id":"a","source":"o","recipient":"r","purpose":"p","dataset":"d","subject":{"id":"s","jurisdiction":"DE","minor":false},` +
		`"record":{"a":{"b":[1,-2.5e+3,0,"x",null,true,false,[],{}]},"n":-0.0E-1}}`, true},
	{"record repeats a key", `{"id":"a","source":"o","recipient":"r","purpose":"p","dataset":"d","subject":{"id":"s","jurisdiction":"DE","minor":false},` +
		`"record":{"a":{"x":1},"a":2}}`, false},
	{"record repeats a nested key", `{"id":"a","source":"o","recipient":"r","purpose":"p","dataset":"d","subject":{"id":"s","jurisdiction":"DE","minor":false},` +
		`"record":{"a":[{"x":1,"y":2,"x":3}]}}`, false},
	{"record gives a field nested and dotted", `{"id":"a","source":"o","recipient":"r","purpose":"p","dataset":"d","subject":{"id":"s","jurisdiction":"DE","minor":false},` +
		`"record":{"payment":{"method":"c"},"payment.method":"d"}}`, false},
	{"record gives a field twice deep down", `{"id":"a","source":"o","recipient":"r","purpose":"p","dataset":"d","subject":{"id":"s","jurisdiction":"DE","minor":false},` +
		`"record":{"x":{"a":{"b.c":1},"a.b":{"c":2}}}}`, false},
	{"record with dotted names apart", `{"id":"a","source":"o","recipient":"r","purpose":"p","dataset":"d","subject":{"id":"s","jurisdiction":"DE","minor":false},` +
		`"record":{"payment.method":"d","payment":{"card":"c"},"l":[{"a.b":1,"a":{"b":2}}]}}`, true},
	{"simple escapes and UTF-8", `{"id":"a\"\\\/\b\f\n\r\t","source":"o","recipient":"r","purpose":"p","dataset":"d",` +
		`"subject":{"id":"Müller ☃","jurisdiction":"DE","minor":true},"legal_order":"lo","record":{"k\n":"Ünïcödé"}}`, true},
	{"unicode escape", `{"id":"\u0061","source":"o","recipient":"r","purpose":"p","dataset":"d","subject":{"id":"s","jurisdiction":"DE","minor":false},"record":{}}`, false},
	{"invalid UTF-8", "{\"id\":\"\xff\",\"source\":\"o\",\"recipient\":\"r\",\"purpose\":\"p\",\"dataset\":\"d\",\"subject\":{\"id\":\"s\",\"jurisdiction\":\"DE\",\"minor\":false},\"record\":{}}", false},
	{"surrogate in UTF-8", "{\"id\":\"a\",\"source\":\"o\",\"recipient\":\"r\",\"purpose\":\"p\",\"dataset\":\"d\",\"subject\":{\"id\":\"s\",\"jurisdiction\":\"DE\",\"minor\":false},\"record\":{\"x\":\"\xed\xa0\x80\"}}", false},
	{"legal order null", `{"id":"a","source":"o","recipient":"r","purpose":"p","dataset":"d","subject":{"id":"s","jurisdiction":"DE","minor":false},"legal_order":null,"record":{}}`, true},
	{"id null", `{"id":null,"source":"o","recipient":"r","purpose":"p","dataset":"d","subject":{"id":"s","jurisdiction":"DE","minor":false},"record":{}}`, false},
	{"legal order twice", `{"id":"a","source":"o","recipient":"r","purpose":"p","dataset":"d","subject":{"id":"s","jurisdiction":"DE","minor":false},"legal_order":null,"legal_order":"x","record":{}}`, false},
	{"legal order empty", `{"id":"a","source":"o","recipient":"r","purpose":"p","dataset":"d","subject":{"id":"s","jurisdiction":"DE","minor":false},"legal_order":"","record":{}}`, false},
	{"empty id", `{"id":"","source":"o","recipient":"r","purpose":"p","dataset":"d","subject":{"id":"s","jurisdiction":"DE","minor":false},"record":{}}`, false},
	{"missing record", `{"id":"a","source":"o","recipient":"r","purpose":"p","dataset":"d","subject":{"id":"s","jurisdiction":"DE","minor":false}}`, false},
	{"record array", `{"id":"a","source":"o","recipient":"r","purpose":"p","dataset":"d","subject":{"id":"s","jurisdiction":"DE","minor":false},"record":[]}`, false},
	{"duplicate member", `{"id":"a","id":"b","source":"o","recipient":"r","purpose":"p","dataset":"d","subject":{"id":"s","jurisdiction":"DE","minor":false},"record":{}}`, false},
	{"duplicate subject member", `{"id":"a","source":"o","recipient":"r","purpose":"p","dataset":"d","subject":{"id":"s","id":"t","jurisdiction":"DE","minor":false},"record":{}}`, false},
	{"unknown member", `{"id":"a","extra":1,"source":"o","recipient":"r","purpose":"p","dataset":"d","subject":{"id":"s","jurisdiction":"DE","minor":false},"record":{}}`, false},
	{"bad country", `{"id":"a","source":"o","recipient":"r","purpose":"p","dataset":"d","subject":{"id":"s","jurisdiction":"XX","minor":false},"record":{}}`, false},
	{"minor missing", `{"id":"a","source":"o","recipient":"r","purpose":"p","dataset":"d","subject":{"id":"s","jurisdiction":"DE"},"record":{}}`, false},
	{"minor null", `{"id":"a","source":"o","recipient":"r","purpose":"p","dataset":"d","subject":{"id":"s","jurisdiction":"DE","minor":null},"record":{}}`, false},
	{"minor as string", `{"id":"a","source":"o","recipient":"r","purpose":"p","dataset":"d","subject":{"id":"s","jurisdiction":"DE","minor":"yes"},"record":{}}`, false},
	{"leading zero", `{"id":"a","source":"o","recipient":"r","purpose":"p","dataset":"d","subject":{"id":"s","jurisdiction":"DE","minor":false},"record":{"n":01}}`, false},
	{"trailing comma", `{"id":"a","source":"o","recipient":"r","purpose":"p","dataset":"d","subject":{"id":"s","jurisdiction":"DE","minor":false},"record":{"n":1,}}`, false},
	{"trailing data", goodRequest + "{}", false},
	{"control character", "{\"id\":\"a\tb\",\"source\":\"o\",\"recipient\":\"r\",\"purpose\":\"p\",\"dataset\":\"d\",\"subject\":{\"id\":\"s\",\"jurisdiction\":\"DE\",\"minor\":false},\"record\":{}}", false},
	{"literal with tail", `{"id":"a","source":"o","recipient":"r","purpose":"p","dataset":"d","subject":{"id":"s","jurisdiction":"DE","minor":truex},"record":{}}`, false},
	{"deep record", `{"id":"a","source":"o","recipient":"r","purpose":"p","dataset":"d","subject":{"id":"s","jurisdiction":"DE","minor":false},"record":{"a":` +
		strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}}`, false},
	{"not an object", `[]`, false},
	{"empty", ``, false},
}

func TestFastRequestAgreesWithStrictParser(t *testing.T) {
	for _, c := range fastCases {
		t.Run(c.name, func(t *testing.T) {
			_, fast := fastRequest([]byte(c.data))
			if fast != c.fast {
				t.Errorf("fast path took it: %v, want %v", fast, c.fast)
			}
			checkAgreement(t, []byte(c.data))
		})
	}
}

// TestFastRequestExamples runs every example request through both parsers:
// they are what a newcomer sends first, and all must take the fast path.
func TestFastRequestExamples(t *testing.T) {
	files, err := filepath.Glob("../examples/requests/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("example requests: %v (%d files)", err, len(files))
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(strings.TrimSpace(string(data)), "[") {
			continue
		}
		if _, ok := fastRequest(data); !ok {
			t.Errorf("%s: left to the strict parser", filepath.Base(f))
		}
		checkAgreement(t, data)
	}
}

// checkAgreement fails unless ParseRequest and ParseRequestShared (fast
// path first) give what the strict parser alone gives: the same request, or
// errors with the same text.
func checkAgreement(t *testing.T, data []byte) {
	t.Helper()
	want, wantErr := strictRequest(data)
	for _, p := range []struct {
		name  string
		parse func([]byte) (*Request, error)
	}{{"ParseRequest", ParseRequest}, {"ParseRequestShared", ParseRequestShared}} {
		got, gotErr := p.parse(data)
		if (wantErr == nil) != (gotErr == nil) || (wantErr != nil && wantErr.Error() != gotErr.Error()) {
			t.Fatalf("errors differ: strict %v, %s %v", wantErr, p.name, gotErr)
		}
		if !reflect.DeepEqual(got, want) {
			g, _ := json.Marshal(got)
			w, _ := json.Marshal(want)
			t.Fatalf("requests differ:\n %s %s\n strict %s", p.name, g, w)
		}
	}
}

// TestParseRequestShared: ParseRequestShared takes the strings of an
// unescaped request, its record's keys and values, from the data itself,
// and ParseRequest copies them.
func TestParseRequestShared(t *testing.T) {
	data := []byte(`{"id":"req-1","source":"o","recipient":"r","purpose":"p","dataset":"d",` +
		`"subject":{"id":"s","jurisdiction":"DE","minor":false},"record":{"name":"Ada","n":12,"esc":"a\nb"}}`)
	within := func(s string) bool {
		p := uintptr(unsafe.Pointer(unsafe.StringData(s)))
		start := uintptr(unsafe.Pointer(&data[0]))
		return p >= start && p < start+uintptr(len(data))
	}
	shared, err := ParseRequestShared(data)
	if err != nil {
		t.Fatal(err)
	}
	copied, err := ParseRequest(data)
	if err != nil {
		t.Fatal(err)
	}
	keyOf := func(m map[string]any, k string) string {
		for key := range m {
			if key == k {
				return key
			}
		}
		t.Fatalf("no key %q", k)
		return ""
	}
	for _, c := range []struct {
		name string
		get  func(*Request) string
		// escaped: the value differs from its text in data, so it cannot
		// be shared.
		escaped bool
	}{
		{"id", func(r *Request) string { return r.ID }, false},
		{"subject id", func(r *Request) string { return r.Subject.ID }, false},
		{"record key", func(r *Request) string { return keyOf(r.Record, "name") }, false},
		{"record string", func(r *Request) string { return r.Record["name"].(string) }, false},
		{"record number", func(r *Request) string { return string(r.Record["n"].(json.Number)) }, false},
		{"escaped string", func(r *Request) string { return r.Record["esc"].(string) }, true},
	} {
		if got := within(c.get(shared)); got == c.escaped {
			t.Errorf("%s: shared with the data %v, want %v", c.name, got, !c.escaped)
		}
		if within(c.get(copied)) {
			t.Errorf("%s: ParseRequest shares the data", c.name)
		}
	}
}

// FuzzParseRequestFast checks on any input that the fast path never takes
// what the strict parser refuses and never builds a different request.
func FuzzParseRequestFast(f *testing.F) {
	for _, c := range fastCases {
		f.Add([]byte(c.data))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkAgreement(t, data)
	})
}

// BenchmarkParseRequest compares ParseRequest (fast path) with the strict
// parser alone on the benchmark's 1 KB request, in the same run.
func BenchmarkParseRequest(b *testing.B) {
	req := &Request{ID: "bench", Source: "orders", Recipient: "party-000050", Purpose: "delivery",
		Dataset: "orders", Subject: Subject{ID: "cust-x", Jurisdiction: "DE"}, Record: benchRecord()}
	data, err := json.Marshal(req)
	if err != nil {
		b.Fatal(err)
	}
	for _, p := range []struct {
		name  string
		parse func([]byte) (*Request, error)
	}{{"strict", strictRequest}, {"ParseRequest", ParseRequest}, {"ParseRequestShared", ParseRequestShared}} {
		b.Run(p.name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.parse(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
