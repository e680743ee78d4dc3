package agreements

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// Request is a transfer request (DESIGN section 4): a producer asks to send
// Record, a record of Dataset about Subject, to Recipient for Purpose.
// LegalOrder names a legal order when the transfer answers one.
type Request struct {
	ID         string         `json:"id"`
	Source     string         `json:"source"`
	Recipient  string         `json:"recipient"`
	Purpose    string         `json:"purpose"`
	Dataset    string         `json:"dataset"`
	Subject    Subject        `json:"subject"`
	LegalOrder string         `json:"legal_order,omitempty"`
	Record     map[string]any `json:"record"`
}

// Subject is the person a record is about: a pseudonymous id, the
// jurisdiction (ISO 3166-1 alpha-2) the data originates from, and whether
// the subject is a minor. All three are required on the wire: a request
// that leaves minor out (or null) is refused rather than judged as an
// adult's, past the parental consent Art. 8 asks for.
type Subject struct {
	ID           string `json:"id"`
	Jurisdiction string `json:"jurisdiction"`
	Minor        bool   `json:"minor"`
}

// ParseRequest decodes one transfer request strictly: unknown or duplicate
// keys, a record field given twice (nested and with dots, see
// clashingPaths), missing required fields and wrong types are errors that
// name the field and wrap ErrInvalidRequest (as *RequestError values, joined). Numbers
// in the record are kept exactly as written (json.Number).
func ParseRequest(data []byte) (*Request, error) {
	if req, ok := fastRequest(data); ok {
		return req, nil
	}
	return parseStrict(data)
}

// ParseRequestShared is ParseRequest for data that does not change while
// the Request (its strings, its record's keys, strings and numbers) is in
// use: what it can, it takes from data's memory instead of copying it,
// which spares more than half of the allocations of parsing a 1 KB
// request. The broker parses each message's own payload this way.
func ParseRequestShared(data []byte) (*Request, error) {
	if req, ok := fastRequestOf(fastScanner{data: data, shared: true}); ok {
		return req, nil
	}
	return parseStrict(data)
}

// parseStrict runs the strict parser, which names every problem.
func parseStrict(data []byte) (*Request, error) {
	p := &requestParser{}
	req := p.request(data, "")
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	return req, nil
}

// ParseRequests decodes either one request or a JSON array of requests.
// Problems name the element ("[2].subject.id"); every problem of every
// element is reported.
func ParseRequests(data []byte) ([]*Request, error) {
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '[' {
		req, err := ParseRequest(data)
		if err != nil {
			return nil, err
		}
		return []*Request{req}, nil
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(data, &raws); err != nil {
		return nil, &RequestError{Problem: "not a JSON array of requests: " + syntaxProblem(err)}
	}
	if len(raws) == 0 {
		return nil, &RequestError{Problem: "empty array: no request to decide"}
	}
	p := &requestParser{}
	reqs := make([]*Request, 0, len(raws))
	for i, raw := range raws {
		if req, ok := fastRequest(raw); ok {
			reqs = append(reqs, req)
			continue
		}
		reqs = append(reqs, p.request(raw, fmt.Sprintf("[%d]", i)))
	}
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	return reqs, nil
}

type requestParser struct{ errs []error }

func (p *requestParser) fail(field, format string, args ...any) {
	p.errs = append(p.errs, &RequestError{Field: field, Problem: fmt.Sprintf(format, args...)})
}

// object splits a JSON object into its members, reporting duplicates and
// members not in allowed.
func (p *requestParser) object(data []byte, path string, allowed ...string) map[string]json.RawMessage {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		p.fail(path, "not valid JSON: %s", syntaxProblem(err))
		return nil
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		if d == '[' {
			p.fail(path, "want a JSON object, not an array")
		} else {
			p.fail(path, "want a JSON object")
		}
		return nil
	}
	out := map[string]json.RawMessage{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			p.fail(path, "not valid JSON: %s", syntaxProblem(err))
			return nil
		}
		key, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			p.fail(join(path, ShownName(key)), "not valid JSON: %s", syntaxProblem(err))
			return nil
		}
		switch {
		case !contains(allowed, key) && !plainName(key):
			p.fail(join(path, WithheldName), "unknown field, not named here since its name is not a plain identifier (want one of %v)", allowed)
		case !contains(allowed, key):
			p.fail(join(path, key), "unknown field (want one of %v)", allowed)
		case out[key] != nil:
			p.fail(join(path, key), "field given twice")
		default:
			out[key] = raw
		}
	}
	if _, err := dec.Token(); err != nil {
		p.fail(path, "not valid JSON: %s", syntaxProblem(err))
		return nil
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		p.fail(path, "unexpected data after the object")
	}
	return out
}

func (p *requestParser) request(data []byte, prefix string) *Request {
	m := p.object(data, prefix, "id", "source", "recipient", "purpose", "dataset", "subject", "legal_order", "record")
	if m == nil {
		return nil
	}
	f := func(name string) string {
		if prefix == "" {
			return name
		}
		return prefix + "." + name
	}
	req := &Request{
		ID:        p.str(m, f("id"), "id", true),
		Source:    p.str(m, f("source"), "source", true),
		Recipient: p.str(m, f("recipient"), "recipient", true),
		Purpose:   p.str(m, f("purpose"), "purpose", true),
		Dataset:   p.str(m, f("dataset"), "dataset", true),
	}
	req.LegalOrder = p.str(m, f("legal_order"), "legal_order", false)
	if raw, ok := m["subject"]; !ok || isJSONNull(raw) {
		p.fail(f("subject"), "required field is missing")
	} else if sm := p.object(raw, f("subject"), "id", "jurisdiction", "minor"); sm != nil {
		req.Subject.ID = p.str(sm, f("subject.id"), "id", true)
		req.Subject.Jurisdiction = p.str(sm, f("subject.jurisdiction"), "jurisdiction", true)
		if req.Subject.Jurisdiction != "" && !ValidCountry(req.Subject.Jurisdiction) {
			p.fail(f("subject.jurisdiction"), "not an ISO 3166-1 alpha-2 country code")
		}
		// Required: a request that does not say whether its subject is a
		// minor would be judged as an adult's, past the parental consent
		// Art. 8 asks for.
		if raw, ok := sm["minor"]; !ok || isJSONNull(raw) {
			p.fail(f("subject.minor"), "required field is missing; say true or false")
		} else if err := json.Unmarshal(raw, &req.Subject.Minor); err != nil {
			p.fail(f("subject.minor"), "want true or false")
		}
	}
	if raw, ok := m["record"]; !ok || isJSONNull(raw) {
		p.fail(f("record"), "required field is missing")
	} else {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		if err := dec.Decode(&req.Record); err != nil || req.Record == nil {
			if bytes.HasPrefix(bytes.TrimSpace(raw), []byte("[")) {
				p.fail(f("record"), "want a JSON object, not an array")
			} else {
				p.fail(f("record"), "want a JSON object")
			}
		} else {
			p.repeated(raw, f("record"))
			for _, path := range clashingPaths(req.Record) {
				p.fail(join(f("record"), shownPath(path)), "field given twice, nested and with dots in a member's name")
			}
		}
	}
	return req
}

// clashingPaths returns, sorted, the dotted paths that more than one member
// of rec names: payment.method given both as {"payment": {"method": …}}
// and as "payment.method", which minimisation (rule 5) would take for the
// same dataset field. The paths go through objects, as a dataset's field
// paths do. A record whose meaning depends on which copy a reader takes is
// refused, as one repeating a key is. Only a member whose name holds a dot
// can make a clash, and a record without one costs a walk and no
// allocation.
func clashingPaths(rec map[string]any) []string {
	if !dottedName(rec) {
		return nil
	}
	seen := map[string]int{}
	var walk func(prefix string, obj map[string]any)
	walk = func(prefix string, obj map[string]any) {
		for k, v := range obj {
			path := prefix + k
			seen[path]++
			if sub, ok := v.(map[string]any); ok {
				walk(path+".", sub)
			}
		}
	}
	walk("", rec)
	var out []string
	for path, n := range seen {
		if n > 1 {
			out = append(out, path)
		}
	}
	slices.Sort(out)
	return out
}

// dottedName reports whether a member of obj, or of an object inside it,
// has a dot in its name.
func dottedName(obj map[string]any) bool {
	for k, v := range obj {
		if strings.IndexByte(k, '.') >= 0 {
			return true
		}
		if sub, ok := v.(map[string]any); ok && dottedName(sub) {
			return true
		}
	}
	return false
}

// shownPath is a dotted path of a record as a problem names it: each
// segment that is not a plain name is written as WithheldName.
func shownPath(path string) string {
	if plainName(path) {
		return path
	}
	segs := strings.Split(path, ".")
	for i, seg := range segs {
		segs[i] = ShownName(seg)
	}
	return strings.Join(segs, ".")
}

// repeated reports every member of an object in value (the record) whose
// name its object has already given: encoding/json would keep the last
// value, and a record whose meaning depends on which copy a reader takes is
// refused instead. value is valid JSON.
func (p *requestParser) repeated(value json.RawMessage, path string) {
	dec := json.NewDecoder(bytes.NewReader(value))
	dec.UseNumber()
	var walk func(path string)
	walk = func(path string) {
		tok, err := dec.Token()
		if err != nil {
			return
		}
		switch tok {
		case json.Delim('{'):
			seen := map[string]bool{}
			for dec.More() {
				tok, err := dec.Token()
				if err != nil {
					return
				}
				key, _ := tok.(string)
				if seen[key] {
					p.fail(join(path, ShownName(key)), "field given twice")
				}
				seen[key] = true
				walk(join(path, ShownName(key)))
			}
			_, _ = dec.Token()
		case json.Delim('['):
			for i := 0; dec.More(); i++ {
				walk(fmt.Sprintf("%s[%d]", path, i))
			}
			_, _ = dec.Token()
		}
	}
	walk(path)
}

// str decodes a string member; required members must be present and
// non-empty, optional ones may be absent or null.
func (p *requestParser) str(m map[string]json.RawMessage, path, key string, required bool) string {
	raw, ok := m[key]
	if !ok || isJSONNull(raw) {
		if required {
			p.fail(path, "required field is missing")
		}
		return ""
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		p.fail(path, "want a string")
		return ""
	}
	if s == "" {
		p.fail(path, "must not be empty")
	}
	return s
}

func isJSONNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

// syntaxProblem describes a JSON syntax error without quoting the input.
func syntaxProblem(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "unexpected end of input"
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return "wrong type " + te.Value
	}
	return "malformed"
}
