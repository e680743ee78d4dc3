package agreements

import (
	"strconv"
	"strings"
)

// WithheldName stands for a member name of a request that Clearance does not
// repeat: in an error, a log line, a decision's removed fields and so the
// audit log, which can never be edited afterwards. A record's member names
// are the dataset's schema, and the audit log records the unclassified
// ones by name (DESIGN section 3, "gift_note": "unclassified_field"); but a
// producer decides them, and one that keys an object by an e-mail address,
// a telephone number or a customer's name would have that written in clear
// where nothing personal may be. So only a plain identifier is repeated
// (plainName); any other name is written as WithheldName.
const WithheldName = "(name withheld)"

// maxPlainName is the longest member name repeated as it is.
const maxPlainName = 64

// plainName reports whether name is a plain identifier, repeated as it is
// where a request's member is named: 1 to 64 ASCII letters, digits,
// underscores and hyphens, not starting with a digit or a hyphen, or several
// such joined by dots (a member named with a dotted path). An address, a
// telephone number, an e-mail address or a name with a space in it is not.
func plainName(name string) bool {
	if len(name) == 0 || len(name) > maxPlainName || nameClass[name[0]] != classLetter {
		return false
	}
	// One pass without branches for the usual name: every byte's class
	// ORed together tells whether one is not allowed or is a dot.
	var seen byte
	for i := 1; i < len(name); i++ {
		seen |= nameClass[name[i]]
	}
	switch {
	case seen&classNone != 0:
		return false
	case seen&classDot == 0:
		return true
	}
	// A dotted path: each segment starts with a letter and none is empty.
	for i := 1; i < len(name); i++ {
		if name[i] == '.' && (i == len(name)-1 || nameClass[name[i+1]] != classLetter) {
			return false
		}
	}
	return true
}

// Classes of the bytes of a plain name, as bits: a letter or underscore may
// start a segment; a digit or hyphen may follow; a dot separates segments;
// no other byte is allowed.
const (
	classLetter = 1 << iota
	classFollow
	classDot
	classNone
)

// nameClass holds each byte's class.
var nameClass = func() (t [256]byte) {
	for c := range 256 {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_':
			t[c] = classLetter
		case c >= '0' && c <= '9', c == '-':
			t[c] = classFollow
		case c == '.':
			t[c] = classDot
		default:
			t[c] = classNone
		}
	}
	return t
}()

// ShownName returns name where it may be repeated (an error, a log line,
// the audit log), else WithheldName.
func ShownName(name string) string {
	if plainName(name) {
		return name
	}
	return WithheldName
}

// withheldPath returns the path of a member whose name is not plain, below
// prefix: prefix.(name withheld).
func withheldPath(prefix string) string {
	return joinPath(prefix, WithheldName)
}

// UnknownField returns the member name of an encoding/json error about a
// member its type does not define (Decoder.DisallowUnknownFields), as
// ShownName shows it, and whether err is such an error.
func UnknownField(err error) (string, bool) {
	const prefix = "json: unknown field "
	msg := err.Error()
	if !strings.HasPrefix(msg, prefix) {
		return "", false
	}
	name, uerr := strconv.Unquote(strings.TrimPrefix(msg, prefix))
	if uerr != nil {
		return WithheldName, true
	}
	return ShownName(name), true
}
