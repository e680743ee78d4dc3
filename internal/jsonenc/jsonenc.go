// Package jsonenc writes JSON by hand, byte for byte as encoding/json writes
// the same values (HTML characters and U+2028/U+2029 escaped, invalid UTF-8
// as U+FFFD, map keys sorted), without reflection. The audit log's chain
// hashes and the payloads sent to recipients are written with it; tests hold
// each writer to encoding/json's output.
package jsonenc

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"unicode/utf8"
)

// AppendStrings appends s as a JSON array of strings; nil as [] (where
// encoding/json writes null).
func AppendStrings(b []byte, s []string) []byte {
	b, _ = AppendStringsSeen(b, s)
	return b
}

// AppendStringsSeen is AppendStrings that also reports what its strings
// held (see Seen).
func AppendStringsSeen(b []byte, s []string) ([]byte, Seen) {
	var seen, sn Seen
	b = append(b, '[')
	for i, v := range s {
		if i > 0 {
			b = append(b, ',')
		}
		b, sn = AppendStringSeen(b, v)
		seen |= sn
	}
	return append(b, ']'), seen
}

// AppendStringMap appends m as a JSON object with its keys in byte order, as
// encoding/json sorts them; nil as {} (where encoding/json writes null).
func AppendStringMap(b []byte, m map[string]string) []byte {
	b, _ = AppendStringMapSeen(b, m)
	return b
}

// AppendStringMapSeen is AppendStringMap that also reports what its keys and
// values held (see Seen).
func AppendStringMapSeen(b []byte, m map[string]string) ([]byte, Seen) {
	var seen, sn Seen
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
		b, sn = AppendStringSeen(b, k)
		seen |= sn
		b = append(b, ':')
		b, sn = AppendStringSeen(b, m[k])
		seen |= sn
	}
	return append(b, '}'), seen
}

// Seen is what a string held among what JSON escapes or replaces: bit c
// for each control byte c (below 0x20) and SeenInvalidUTF8. It lets a
// writer that encodes a string anyway check it for those without reading it
// a second time.
type Seen uint64

// SeenInvalidUTF8 is set when the string held a byte that is not valid UTF-8.
const SeenInvalidUTF8 Seen = 1 << 32

// SeenNUL is set when the string held a NUL byte (control byte 0).
const SeenNUL Seen = 1 << 0

// Controls returns the control bytes seen, bit c for byte c.
func (s Seen) Controls() uint32 { return uint32(s) }

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

const (
	loBits = 0x0101010101010101
	hiBits = 0x8080808080808080
)

// zeroByte is non-zero if and only if one of the eight bytes of x is zero.
func zeroByte(x uint64) uint64 { return (x - loBits) &^ x & hiBits }

// below is non-zero if one of the eight bytes of x is less than n (n <= 128),
// and zero if none is.
func below(x uint64, n byte) uint64 { return (x - loBits*uint64(n)) &^ x & hiBits }

// AppendString appends s as a JSON string exactly as encoding/json does
// (with HTML escaping, its default): '"' and '\\' backslashed; \b, \f, \n, \r
// and \t short; other control bytes and '<', '>', '&' as \u00XX; U+2028 and
// U+2029 as \u2028 and \u2029; each byte of invalid UTF-8 as \ufffd.
func AppendString(b []byte, s string) []byte {
	b, _ = AppendStringSeen(b, s)
	return b
}

// AppendStringSeen is AppendString that also reports what s held (see
// Seen).
func AppendStringSeen(b []byte, s string) ([]byte, Seen) {
	var seen Seen
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		// Eight bytes at a time while none of them needs a look: no byte
		// of 0x80 or more (UTF-8 beyond ASCII), none under 0x20, none of
		// '"', '\\', '<', '>' and '&'.
		if i+8 <= len(s) {
			x := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
				uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
			if x&hiBits|below(x, 0x20)|zeroByte(x^(loBits*'"'))|zeroByte(x^(loBits*'\\'))|
				zeroByte(x^(loBits*'<'))|zeroByte(x^(loBits*'>'))|zeroByte(x^(loBits*'&')) == 0 {
				i += 8
				continue
			}
		}
		if c := s[i]; c < utf8.RuneSelf {
			if jsonSafe[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			if c < 0x20 {
				seen |= 1 << c
			}
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
			seen |= SeenInvalidUTF8
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
	return append(b, '"'), seen
}

// AppendValue appends v, a value of the kinds encoding/json decodes into an
// any with UseNumber (nil, bool, json.Number, string, []any and
// map[string]any, nested), as json.Marshal writes it: numbers as they are
// (after the same check of their syntax), map keys sorted, nil maps and
// slices as null. A value of any other type is written by json.Marshal.
func AppendValue(b []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case bool:
		return strconv.AppendBool(b, v), nil
	case string:
		return AppendString(b, v), nil
	case json.Number:
		n := string(v)
		if n == "" {
			n = "0"
		}
		if !validNumber(n) {
			return b, fmt.Errorf("json: invalid number literal %q", n)
		}
		return append(b, n...), nil
	case map[string]any:
		if v == nil {
			return append(b, "null"...), nil
		}
		var buf [16]string
		keys := buf[:0]
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = AppendString(b, k)
			b = append(b, ':')
			var err error
			if b, err = AppendValue(b, v[k]); err != nil {
				return b, err
			}
		}
		return append(b, '}'), nil
	case []any:
		if v == nil {
			return append(b, "null"...), nil
		}
		b = append(b, '[')
		for i, e := range v {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = AppendValue(b, e); err != nil {
				return b, err
			}
		}
		return append(b, ']'), nil
	}
	j, err := json.Marshal(v)
	if err != nil {
		return b, err
	}
	return append(b, j...), nil
}

// validNumber reports whether s is a JSON number (RFC 8259), the check
// json.Marshal makes of a json.Number.
func validNumber(s string) bool {
	if s == "" {
		return false
	}
	if s[0] == '-' {
		s = s[1:]
		if s == "" {
			return false
		}
	}
	switch {
	case s[0] == '0':
		s = s[1:]
	case '1' <= s[0] && s[0] <= '9':
		s = s[1:]
		for len(s) > 0 && isDigit(s[0]) {
			s = s[1:]
		}
	default:
		return false
	}
	if len(s) >= 2 && s[0] == '.' && isDigit(s[1]) {
		s = s[2:]
		for len(s) > 0 && isDigit(s[0]) {
			s = s[1:]
		}
	}
	if len(s) >= 2 && (s[0] == 'e' || s[0] == 'E') {
		s = s[1:]
		if s[0] == '+' || s[0] == '-' {
			s = s[1:]
			if s == "" {
				return false
			}
		}
		for len(s) > 0 && isDigit(s[0]) {
			s = s[1:]
		}
	}
	return s == ""
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
