package agreements

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

const goodRequest = `{"id": "r1", "source": "orders", "recipient": "p1", "purpose": "delivery", "dataset": "ds",
  "subject": {"id": "cust-1", "jurisdiction": "DE", "minor": true}, "legal_order": null,
  "record": {"order_id": 12345678901234567890, "name": "n"}}`

func TestParseRequest(t *testing.T) {
	req, err := ParseRequest([]byte(goodRequest))
	if err != nil {
		t.Fatalf("ParseRequest: %v", err)
	}
	if req.ID != "r1" || req.Subject.Jurisdiction != "DE" || !req.Subject.Minor || req.LegalOrder != "" {
		t.Errorf("request = %+v", req)
	}
	if n, ok := req.Record["order_id"].(json.Number); !ok || n.String() != "12345678901234567890" {
		t.Errorf("order_id = %#v, want the exact number", req.Record["order_id"])
	}
}

func TestParseRequestErrors(t *testing.T) {
	tests := []struct {
		name string
		give string
		want string
	}{
		{"not json", `{"id": `, "invalid_request: id: not valid JSON"},
		{"garbage", `nope`, "invalid_request: not valid JSON"},
		{"not an object", `"hello"`, "invalid_request: want a JSON object"},
		{"an array", `[]`, "invalid_request: want a JSON object, not an array"},
		{"subject is a list", strings.Replace(goodRequest, `{"id": "cust-1", "jurisdiction": "DE", "minor": true}`, `["cust-1"]`, 1), "invalid_request: subject: want a JSON object, not an array"},
		{"missing id", strings.Replace(goodRequest, `"id": "r1", `, "", 1), "invalid_request: id: required field is missing"},
		{"empty recipient", strings.Replace(goodRequest, `"recipient": "p1"`, `"recipient": ""`, 1), "invalid_request: recipient: must not be empty"},
		{"purpose of the wrong type", strings.Replace(goodRequest, `"purpose": "delivery"`, `"purpose": 7`, 1), "invalid_request: purpose: want a string"},
		{"unknown field", strings.Replace(goodRequest, `"source": "orders"`, `"source": "orders", "priority": 1`, 1), "invalid_request: priority: unknown field"},
		{"duplicate field", strings.Replace(goodRequest, `"source": "orders"`, `"source": "orders", "recipient": "p2"`, 1), "invalid_request: recipient: field given twice"},
		{"missing subject", strings.Replace(goodRequest, `"subject": {"id": "cust-1", "jurisdiction": "DE", "minor": true}, `, "", 1), "invalid_request: subject: required field is missing"},
		{"subject id missing", strings.Replace(goodRequest, `"id": "cust-1", `, "", 1), "invalid_request: subject.id: required field is missing"},
		{"minor missing", strings.Replace(goodRequest, `, "minor": true}`, `}`, 1), "invalid_request: subject.minor: required field is missing; say true or false"},
		{"minor null", strings.Replace(goodRequest, `"minor": true`, `"minor": null`, 1), "invalid_request: subject.minor: required field is missing; say true or false"},
		{"bad jurisdiction", strings.Replace(goodRequest, `"jurisdiction": "DE"`, `"jurisdiction": "Germany"`, 1), "invalid_request: subject.jurisdiction: not an ISO 3166-1 alpha-2 country code"},
		{"minor as a string", strings.Replace(goodRequest, `"minor": true`, `"minor": "yes"`, 1), "invalid_request: subject.minor: want true or false"},
		{"unknown subject field", strings.Replace(goodRequest, `"minor": true`, `"minor": true, "age": 9`, 1), "invalid_request: subject.age: unknown field"},
		{"record is a list", strings.Replace(goodRequest, `{"order_id": 12345678901234567890, "name": "n"}`, `[1, 2]`, 1), "invalid_request: record: want a JSON object, not an array"},
		{"record missing", strings.Replace(goodRequest, `,
  "record": {"order_id": 12345678901234567890, "name": "n"}`, "", 1), "invalid_request: record: required field is missing"},
		{"legal order of the wrong type", strings.Replace(goodRequest, `"legal_order": null`, `"legal_order": 5`, 1), "invalid_request: legal_order: want a string"},
		{"trailing data", goodRequest + `{}`, "invalid_request: unexpected data after the object"},
		{"unknown field named with an e-mail address", strings.Replace(goodRequest, `"source": "orders"`, `"source": "orders", "ada@example.com": 1`, 1),
			"invalid_request: (name withheld): unknown field, not named here since its name is not a plain identifier"},
		{"unknown subject field named with a name", strings.Replace(goodRequest, `"minor": true`, `"minor": true, "Ada Lovelace": 9`, 1),
			"invalid_request: subject.(name withheld): unknown field"},
		{"record repeats a field", strings.Replace(goodRequest, `"name": "n"`, `"name": "n", "name": "m"`, 1), "invalid_request: record.name: field given twice"},
		{"record repeats a nested field", strings.Replace(goodRequest, `"name": "n"`, `"name": "n", "items": [{"sku": 1}, {"sku": 2, "sku": 3}]`, 1),
			"invalid_request: record.items[1].sku: field given twice"},
		{"record repeats a field not plainly named", strings.Replace(goodRequest, `"name": "n"`, `"name": "n", "+44 20 7946 0000": 1, "+44 20 7946 0000": 2`, 1),
			"invalid_request: record.(name withheld): field given twice"},
		{"record gives a field nested and dotted", strings.Replace(goodRequest, `"name": "n"`, `"payment": {"method": "c"}, "payment.method": "d"`, 1),
			"invalid_request: record.payment.method: field given twice, nested and with dots in a member's name"},
		{"record gives a field nested and partly dotted", strings.Replace(goodRequest, `"name": "n"`, `"a": {"b.c": 1}, "a.b": {"c": 2}`, 1),
			"invalid_request: record.a.b.c: field given twice"},
		{"record gives a field twice inside an object", strings.Replace(goodRequest, `"name": "n"`, `"x": {"note": {"health": "y"}, "note.health": "z"}`, 1),
			"invalid_request: record.x.note.health: field given twice"},
		{"record gives a field not plainly named nested and dotted", strings.Replace(goodRequest, `"name": "n"`, `"ada@example": {"com": 1}, "ada@example.com": 2`, 1),
			"invalid_request: record.(name withheld).com: field given twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseRequest([]byte(tt.give))
			if !errors.Is(err, ErrInvalidRequest) {
				t.Fatalf("error = %v, want ErrInvalidRequest", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %q, want it to contain %q", err, tt.want)
			}
			for _, personal := range []string{"cust-1", "ada@example.com", "Ada Lovelace", "7946"} {
				if strings.Contains(err.Error(), personal) {
					t.Errorf("error quotes %q: %q", personal, err)
				}
			}
		})
	}
}

func TestParseRequests(t *testing.T) {
	one, err := ParseRequests([]byte(goodRequest))
	if err != nil || len(one) != 1 {
		t.Fatalf("single: %d, %v", len(one), err)
	}
	two, err := ParseRequests([]byte("[" + goodRequest + "," + goodRequest + "]"))
	if err != nil || len(two) != 2 {
		t.Fatalf("array: %d, %v", len(two), err)
	}
	bad := strings.Replace(goodRequest, `"dataset": "ds"`, `"dataset": 1`, 1)
	_, err = ParseRequests([]byte("[" + goodRequest + "," + bad + "]"))
	if err == nil || !strings.Contains(err.Error(), "invalid_request: [1].dataset: want a string") {
		t.Errorf("array element error = %v", err)
	}
	if _, err := ParseRequests([]byte("[]")); !errors.Is(err, ErrInvalidRequest) {
		t.Errorf("empty array error = %v", err)
	}
	if _, err := ParseRequests([]byte("[1,")); !errors.Is(err, ErrInvalidRequest) {
		t.Errorf("broken array error = %v", err)
	}
}

// TestPlainName: the member names a request's errors and a decision's
// removed fields repeat are plain identifiers; anything a producer may have
// filled with personal data is withheld.
func TestPlainName(t *testing.T) {
	for _, name := range []string{"name", "gift_note", "payment.method", "orderId", "x-trace-id", "_meta", "line2", "a.b.c",
		strings.Repeat("a", maxPlainName)} {
		if !plainName(name) || ShownName(name) != name {
			t.Errorf("plainName(%q) = false, want true", name)
		}
	}
	for _, name := range []string{"", "ada@example.com", "Ada Lovelace", "+44 20 7946 0000", "02079460000", "1 Example Road",
		"Müller", "-x", ".x", "x.", "x..y", "x.1y", "a\nb", "(name withheld)", strings.Repeat("a", maxPlainName+1)} {
		if plainName(name) || ShownName(name) != WithheldName {
			t.Errorf("plainName(%q) = true, want false", name)
		}
	}
}

// TestUnknownField: the member an encoding/json decoder refuses is named
// as ShownName shows it.
func TestUnknownField(t *testing.T) {
	decode := func(body string) error {
		dec := json.NewDecoder(strings.NewReader(body))
		dec.DisallowUnknownFields()
		var v struct{ Known string }
		return dec.Decode(&v)
	}
	for body, want := range map[string]string{
		`{"colour":1}`:                 "colour",
		`{"ada@example.com":1}`:        WithheldName,
		`{"Ada \"the Countess\" L":1}`: WithheldName,
		`{"line\u00a0two":1}`:          WithheldName,
	} {
		got, ok := UnknownField(decode(body))
		if !ok || got != want {
			t.Errorf("%s: UnknownField = %q, %v; want %q", body, got, ok, want)
		}
	}
	if _, ok := UnknownField(decode(`{"Known":1}`)); ok {
		t.Error("a type error taken for an unknown field")
	}
}

// TestParseRequestFieldGivenTwice: a record that gives one field both
// nested and with dots is refused by every parser, each clashing path
// named once; members whose paths only look alike are accepted.
func TestParseRequestFieldGivenTwice(t *testing.T) {
	const prefix = `{"id":"a","source":"o","recipient":"r","purpose":"p","dataset":"d","subject":{"id":"s","jurisdiction":"DE","minor":false},"record":`
	tests := []struct {
		name   string
		record string
		want   []string // the problems, in order; none: accepted
	}{
		{"nested and dotted, twice over", `{"payment":{"method":"c"},"payment.method":"d","note":{"health":"y"},"note.health":"z"}`,
			[]string{"invalid_request: record.note.health: field given twice, nested and with dots in a member's name",
				"invalid_request: record.payment.method: field given twice, nested and with dots in a member's name"}},
		{"three times", `{"a":{"b":{"c":1},"b.c":2},"a.b.c":3}`,
			[]string{"invalid_request: record.a.b.c: field given twice, nested and with dots in a member's name"}},
		{"an object given twice", `{"a":{"b":{"c":1}},"a.b":{"d":2}}`,
			[]string{"invalid_request: record.a.b: field given twice, nested and with dots in a member's name"}},
		{"dotted beside other members", `{"a.b":1,"a":{"c":2}}`, nil},
		{"empty names", `{"":{"a":1},"a":2,".a":3}`, []string{"invalid_request: record.(name withheld).a: field given twice, nested and with dots in a member's name"}},
		{"inside a list", `{"x":[{"a.b":1,"a":{"b":2}}]}`, nil},
		{"no dots", `{"a":{"b":1},"b":{"a":2}}`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := []byte(prefix + tt.record + "}")
			checkAgreement(t, data)
			for _, parse := range []func([]byte) (*Request, error){ParseRequest, ParseRequestShared, strictRequest} {
				_, err := parse(data)
				var got []string
				for _, p := range Problems(err) {
					if !errors.Is(p, ErrInvalidRequest) {
						t.Errorf("problem %v is not an invalid_request", p)
					}
					got = append(got, p.Error())
				}
				if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
					t.Errorf("problems = %q, want %q", got, tt.want)
				}
			}
			_, err := ParseRequests([]byte("[" + prefix + tt.record + "}]"))
			if (err != nil) != (tt.want != nil) || err != nil && !strings.Contains(err.Error(), "[0].record.") {
				t.Errorf("ParseRequests: %v", err)
			}
		})
	}
}
