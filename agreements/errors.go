package agreements

import (
	"errors"
	"fmt"
)

// Error classes of a registry that does not load. Every *LoadError wraps one
// of them, so callers and tests can tell problems apart with errors.Is.
var (
	// ErrSyntax is a file that is not valid YAML or not shaped as a registry
	// (a list where a mapping belongs, a string where a number belongs).
	ErrSyntax = errors.New("invalid syntax")
	// ErrUnknownKey is a key the registry format does not define.
	ErrUnknownKey = errors.New("unknown key")
	// ErrMissingKey is a required key that is absent or empty.
	ErrMissingKey = errors.New("missing required key")
	// ErrDuplicate is an id (or a mapping key) defined twice.
	ErrDuplicate = errors.New("duplicate")
	// ErrDanglingReference is a reference to a party, purpose, zone or
	// category that the registry does not define.
	ErrDanglingReference = errors.New("unknown reference")
	// ErrInvalidCountry is a country that is not an ISO 3166-1 alpha-2 code.
	ErrInvalidCountry = errors.New("invalid country code")
	// ErrInvalidValue is a value outside its enumeration or range, a
	// malformed date, or an inconsistent combination of keys.
	ErrInvalidValue = errors.New("invalid value")
	// ErrNoFiles is a registry directory without any .yaml or .yml file.
	ErrNoFiles = errors.New("no registry files")
)

// ErrUnknownParty is returned by Registry.Party for an id the registry does
// not define.
var ErrUnknownParty = errors.New("agreements: unknown party")

// ErrInvalidRequest is the class of every error of ParseRequest and
// ParseRequests: the request cannot be decided and must be rejected.
var ErrInvalidRequest = errors.New("invalid_request")

// LoadError is one problem of a registry: where it is (file and line, when
// the registry came from files), which key (a path such as
// "agreements[2].parties[0]"), and its class (one of the Err* variables
// above) with details. Messages never quote subject identifiers.
type LoadError struct {
	File   string
	Line   int
	Key    string
	Err    error
	Detail string
}

// Error formats the problem as "file:line: key: class: detail".
func (e *LoadError) Error() string {
	loc := ""
	switch {
	case e.File != "" && e.Line > 0:
		loc = fmt.Sprintf("%s:%d: ", e.File, e.Line)
	case e.File != "":
		loc = e.File + ": "
	}
	key := ""
	if e.Key != "" {
		key = e.Key + ": "
	}
	if e.Detail == "" {
		return fmt.Sprintf("%s%s%v", loc, key, e.Err)
	}
	return fmt.Sprintf("%s%s%v: %s", loc, key, e.Err, e.Detail)
}

// Unwrap returns the error class.
func (e *LoadError) Unwrap() error { return e.Err }

// Problems splits an error returned by Load, Parse or New into its
// individual problems, in the order they were found.
func Problems(err error) []error {
	if err == nil {
		return nil
	}
	var out []error
	var walk func(error)
	walk = func(e error) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, inner := range j.Unwrap() {
				walk(inner)
			}
			return
		}
		out = append(out, e)
	}
	walk(err)
	return out
}

// RequestError is a malformed transfer request: Field names the offending
// field as a path ("subject.jurisdiction", or "[3].record" inside an array)
// and Problem says what is wrong, without quoting any value.
type RequestError struct {
	Field   string
	Problem string
}

// Error formats the problem as "invalid_request: field: problem".
func (e *RequestError) Error() string {
	if e.Field == "" {
		return "invalid_request: " + e.Problem
	}
	return "invalid_request: " + e.Field + ": " + e.Problem
}

// Unwrap returns ErrInvalidRequest.
func (e *RequestError) Unwrap() error { return ErrInvalidRequest }
