package audit

import (
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// The canonical JSON of an entry is what the chain hash covers. It is the
// form encoding/json gave it when the log was first written (field order of
// Entry, HTML characters and U+2028/U+2029 escaped, map keys sorted, times
// in RFC 3339 with up to microseconds), and every hash already stored
// depends on it byte for byte; the encoder below writes it by hand, without
// reflection, and TestCanonicalMatchesEncodingJSON holds it to
// encoding/json's output.

// span is where a part of an encoded body lies: body[start:end].
type span struct{ start, end int32 }

// bodyLists are the spans of an entry's lists in its hash body, which are
// also the JSON stored in the columns reasons, categories_sent and
// fields_removed.
type bodyLists struct {
	reasons, categories, fieldsRemoved span
}

// appendHashBody appends e's canonical JSON between its sequence and its
// prev_hash (see hashPrefix) to b: the fields from "time" to "subject_hmac"
// with their trailing comma. e is taken in canonical form whatever it holds:
// its time in UTC truncated to microseconds, nil lists and maps as empty
// ones. The spans of the lists are relative to the start of the body. It
// reports false, with b unchanged, for a time whose year has not 4 digits,
// which RFC 3339 (and so encoding/json) cannot write.
func appendHashBody(b []byte, e *Entry) ([]byte, bodyLists, bool) {
	var ls bodyLists
	t := e.Time.UTC().Truncate(time.Microsecond)
	if y := t.Year(); y < 0 || y > 9999 {
		return b, ls, false
	}
	n := len(b)
	b = append(b, `"time":"`...)
	b = t.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","event":`...)
	b = appendJSONString(b, string(e.Event))
	b = append(b, `,"request_id":`...)
	b = appendJSONString(b, e.RequestID)
	b = append(b, `,"source":`...)
	b = appendJSONString(b, e.Source)
	b = append(b, `,"recipient":`...)
	b = appendJSONString(b, e.Recipient)
	b = append(b, `,"recipient_country":`...)
	b = appendJSONString(b, e.RecipientCountry)
	b = append(b, `,"origin_jurisdiction":`...)
	b = appendJSONString(b, e.Origin)
	b = append(b, `,"purpose":`...)
	b = appendJSONString(b, e.Purpose)
	b = append(b, `,"dataset":`...)
	b = appendJSONString(b, e.Dataset)
	b = append(b, `,"decision":`...)
	b = appendJSONString(b, e.Decision)
	b = append(b, `,"reasons":`...)
	ls.reasons.start = int32(len(b) - n)
	b = appendJSONList(b, e.Reasons)
	ls.reasons.end = int32(len(b) - n)
	b = append(b, `,"legal_basis":`...)
	b = appendJSONString(b, e.LegalBasis)
	b = append(b, `,"agreement_id":`...)
	b = appendJSONString(b, e.AgreementID)
	b = append(b, `,"agreement_version":`...)
	b = strconv.AppendInt(b, int64(e.AgreementVersion), 10)
	b = append(b, `,"mechanism":`...)
	b = appendJSONString(b, e.Mechanism)
	b = append(b, `,"categories_sent":`...)
	ls.categories.start = int32(len(b) - n)
	b = appendJSONList(b, e.CategoriesSent)
	ls.categories.end = int32(len(b) - n)
	b = append(b, `,"fields_removed":`...)
	ls.fieldsRemoved.start = int32(len(b) - n)
	b = appendJSONMap(b, e.FieldsRemoved)
	ls.fieldsRemoved.end = int32(len(b) - n)
	b = append(b, `,"key_ref":`...)
	b = appendJSONString(b, e.KeyRef)
	b = append(b, `,"payload_digest":`...)
	b = appendJSONString(b, e.PayloadDigest)
	b = append(b, `,"registry_version":`...)
	b = appendJSONString(b, e.RegistryVersion)
	b = append(b, `,"subject_hmac":`...)
	b = appendJSONString(b, e.SubjectHMAC)
	b = append(b, ',')
	return b, ls, true
}

// appendJSONList appends s as a JSON array of strings; nil as [] (the
// canonical form).
func appendJSONList(b []byte, s []string) []byte {
	b = append(b, '[')
	for i, v := range s {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, v)
	}
	return append(b, ']')
}

// appendJSONMap appends m as a JSON object with its keys in byte order, as
// encoding/json sorts them; nil as {} (the canonical form).
func appendJSONMap(b []byte, m map[string]string) []byte {
	b = append(b, '{')
	var buf [8]string
	keys := buf[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		b = append(b, ':')
		b = appendJSONString(b, m[k])
	}
	return append(b, '}')
}

// jsonSafe marks the ASCII bytes that encoding/json writes as they are in a
// string with HTML escaping on: printable ones other than '"', '\\', '<', '>'
// and '&'.
var jsonSafe = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

const lowerHex = "0123456789abcdef"

// appendJSONString appends s as a JSON string exactly as encoding/json does
// (with HTML escaping, its default): '"' and '\\' backslashed; \b, \f, \n, \r
// and \t short; other control bytes and '<', '>', '&' as \u00XX; U+2028 and
// U+2029 as \u2028 and \u2029; each byte of invalid UTF-8 as \ufffd.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if jsonSafe[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', lowerHex[c>>4], lowerHex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', lowerHex[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
