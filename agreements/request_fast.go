package agreements

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
	"unsafe"
)

// fastRequest decodes a well-formed transfer request in one pass over data,
// without the token stream and the intermediate raw members of the strict
// parser (request). It accepts only what the strict parser accepts and
// builds exactly the Request it builds; on anything else (a syntax error,
// an unknown, duplicate, missing or empty member, a null required member,
// a record field given twice (clashingPaths), a wrong type, a bad country
// code, a \u escape, invalid UTF-8, deep nesting) it reports false
// and ParseRequest runs the strict parser, which names the problem. Most
// requests a broker sees are well formed, and for them this is several times
// cheaper; FuzzParseRequestFast checks the two agree on every input.
func fastRequest(data []byte) (*Request, bool) {
	return fastRequestOf(fastScanner{data: data})
}

// fastRequestOf is fastRequest with the scanner s.
func fastRequestOf(s fastScanner) (*Request, bool) {
	req := &Request{}
	var seen uint16
	if !s.object(func(key []byte) bool {
		bit, str := requestMember(req, key)
		if bit == 0 || seen&bit != 0 {
			return false
		}
		seen |= bit
		switch {
		case bit == memberLegalOrder && s.literal("null"):
			// optional: null is as absent
		case str != nil:
			v, ok := s.string()
			if !ok || v == "" {
				return false
			}
			*str = v
		case bit == memberSubject:
			return s.subject(&req.Subject)
		default: // record
			m, ok := s.objectValue(0)
			if !ok || s.dotted && clashingPaths(m) != nil {
				return false
			}
			req.Record = m
		}
		return true
	}) {
		return nil, false
	}
	s.space()
	if s.pos != len(s.data) || seen&requiredMembers != requiredMembers {
		return nil, false
	}
	return req, true
}

// Members of a request, as bits of a set.
const (
	memberID uint16 = 1 << iota
	memberSource
	memberRecipient
	memberPurpose
	memberDataset
	memberSubject
	memberLegalOrder
	memberRecord

	requiredMembers = memberID | memberSource | memberRecipient | memberPurpose | memberDataset | memberSubject | memberRecord
)

// requestMember returns the bit of the member key and, for a string member,
// where its value goes.
func requestMember(req *Request, key []byte) (uint16, *string) {
	switch string(key) {
	case "id":
		return memberID, &req.ID
	case "source":
		return memberSource, &req.Source
	case "recipient":
		return memberRecipient, &req.Recipient
	case "purpose":
		return memberPurpose, &req.Purpose
	case "dataset":
		return memberDataset, &req.Dataset
	case "subject":
		return memberSubject, nil
	case "legal_order":
		return memberLegalOrder, &req.LegalOrder
	case "record":
		return memberRecord, nil
	}
	return 0, nil
}

// maxFastDepth bounds the nesting the fast path follows; deeper records go
// to the strict parser (encoding/json has its own, much higher, limit).
const maxFastDepth = 64

type fastScanner struct {
	data []byte
	pos  int
	// shared: the strings and map keys it returns share data's memory
	// instead of copying it (ParseRequestShared).
	shared bool
	// dotted: a member of the record has a dot in its name, and so may
	// give a field twice (clashingPaths).
	dotted bool
}

// str returns b as a string: b itself when the scanner shares data's
// memory, a copy otherwise.
func (s *fastScanner) str(b []byte) string {
	if s.shared {
		return unsafe.String(unsafe.SliceData(b), len(b))
	}
	return string(b)
}

func (s *fastScanner) space() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// consume skips white space and the byte c, reporting whether it was there.
func (s *fastScanner) consume(c byte) bool {
	s.space()
	if s.pos < len(s.data) && s.data[s.pos] == c {
		s.pos++
		return true
	}
	return false
}

// object reads an object, calling member for each key with the scanner at
// its value; member reads the value and reports whether all is well.
func (s *fastScanner) object(member func(key []byte) bool) bool {
	if !s.consume('{') {
		return false
	}
	if s.consume('}') {
		return true
	}
	for {
		s.space()
		key, ok := s.rawString()
		if !ok || !s.consume(':') {
			return false
		}
		s.space()
		if !member(key) {
			return false
		}
		if s.consume('}') {
			return true
		}
		if !s.consume(',') {
			return false
		}
	}
}

func (s *fastScanner) subject(sub *Subject) bool {
	var seen uint8
	if !s.object(func(key []byte) bool {
		switch string(key) {
		case "id", "jurisdiction":
			bit := uint8(1)
			dst := &sub.ID
			if key[0] == 'j' {
				bit, dst = 2, &sub.Jurisdiction
			}
			if seen&bit != 0 {
				return false
			}
			seen |= bit
			v, ok := s.string()
			if !ok || v == "" {
				return false
			}
			*dst = v
			return true
		case "minor":
			if seen&4 != 0 {
				return false
			}
			seen |= 4
			switch {
			case s.literal("true"):
				sub.Minor = true
			case s.literal("false"):
			default:
				return false // null too: the strict parser names it
			}
			return true
		}
		return false
	}) {
		return false
	}
	return seen == 7 && ValidCountry(sub.Jurisdiction)
}

func (s *fastScanner) literal(lit string) bool {
	if len(s.data)-s.pos >= len(lit) && string(s.data[s.pos:s.pos+len(lit)]) == lit {
		s.pos += len(lit)
		return true
	}
	return false
}

// string reads a string value; null is not one.
func (s *fastScanner) string() (string, bool) {
	b, ok := s.rawString()
	return s.str(b), ok
}

// rawString reads a string at the scanner and returns its content, valid
// UTF-8 with the simple escapes resolved. A \u escape, a control character
// or invalid UTF-8 reports false: encoding/json's handling of those
// (surrogates, replacement characters) is left to it.
func (s *fastScanner) rawString() ([]byte, bool) {
	if s.pos >= len(s.data) || s.data[s.pos] != '"' {
		return nil, false
	}
	start := s.pos + 1
	ascii := true
	for i := start; i < len(s.data); i++ {
		switch c := s.data[i]; {
		case c == '"':
			s.pos = i + 1
			b := s.data[start:i]
			if !ascii && !utf8.Valid(b) {
				return nil, false
			}
			return b, true
		case c == '\\':
			return s.escapedString(start, i)
		case c < ' ':
			return nil, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return nil, false
}

// escapedString finishes a string whose first escape is at i.
func (s *fastScanner) escapedString(start, i int) ([]byte, bool) {
	out := make([]byte, 0, i-start+16)
	out = append(out, s.data[start:i]...)
	for i < len(s.data) {
		c := s.data[i]
		switch {
		case c == '"':
			s.pos = i + 1
			if !utf8.Valid(out) {
				return nil, false
			}
			return out, true
		case c == '\\':
			if i+1 >= len(s.data) {
				return nil, false
			}
			switch e := s.data[i+1]; e {
			case '"', '\\', '/':
				out = append(out, e)
			case 'b':
				out = append(out, '\b')
			case 'f':
				out = append(out, '\f')
			case 'n':
				out = append(out, '\n')
			case 'r':
				out = append(out, '\r')
			case 't':
				out = append(out, '\t')
			default:
				return nil, false
			}
			i += 2
		case c < ' ':
			return nil, false
		default:
			out = append(out, c)
			i++
		}
	}
	return nil, false
}

// objectValue reads an object of the record as encoding/json does into a
// map[string]any with UseNumber. A repeated key reports false: the strict
// parser refuses it, naming it.
func (s *fastScanner) objectValue(depth int) (map[string]any, bool) {
	if depth > maxFastDepth {
		return nil, false
	}
	m := map[string]any{}
	ok := s.object(func(key []byte) bool {
		if !s.dotted && bytes.IndexByte(key, '.') >= 0 {
			s.dotted = true
		}
		v, ok := s.value(depth + 1)
		if !ok {
			return false
		}
		n := len(m)
		m[s.str(key)] = v
		return len(m) > n
	})
	return m, ok
}

func (s *fastScanner) value(depth int) (any, bool) {
	if s.pos >= len(s.data) {
		return nil, false
	}
	switch c := s.data[s.pos]; {
	case c == '"':
		return s.string()
	case c == '{':
		return s.objectValue(depth)
	case c == '[':
		return s.array(depth)
	case c == 't':
		return true, s.literal("true")
	case c == 'f':
		return false, s.literal("false")
	case c == 'n':
		return nil, s.literal("null")
	case c == '-' || (c >= '0' && c <= '9'):
		return s.number()
	}
	return nil, false
}

func (s *fastScanner) array(depth int) (any, bool) {
	if depth > maxFastDepth {
		return nil, false
	}
	s.pos++ // '['
	out := []any{}
	if s.consume(']') {
		return out, true
	}
	for {
		s.space()
		v, ok := s.value(depth + 1)
		if !ok {
			return nil, false
		}
		out = append(out, v)
		if s.consume(']') {
			return out, true
		}
		if !s.consume(',') {
			return nil, false
		}
	}
}

// number reads a JSON number (RFC 8259 grammar) as a json.Number holding
// its text.
func (s *fastScanner) number() (any, bool) {
	start := s.pos
	d := s.data
	i := s.pos
	if d[i] == '-' {
		i++
	}
	switch {
	case i < len(d) && d[i] == '0':
		i++
	case i < len(d) && d[i] >= '1' && d[i] <= '9':
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
	default:
		return nil, false
	}
	if i < len(d) && d[i] == '.' {
		i++
		if i >= len(d) || d[i] < '0' || d[i] > '9' {
			return nil, false
		}
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		if i >= len(d) || d[i] < '0' || d[i] > '9' {
			return nil, false
		}
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
	}
	s.pos = i
	return json.Number(s.str(d[start:i])), true
}
