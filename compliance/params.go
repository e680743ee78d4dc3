package compliance

import (
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/clearance-broker/clearance/audit"
)

// MaxPageSize caps the limit parameter of a search.
const MaxPageSize = 1000

var (
	tokenRE   = regexp.MustCompile(`^[A-Za-z0-9._:\-]{1,200}$`)
	countryRE = regexp.MustCompile(`^[A-Z]{2}$`)
	hmacRE    = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// filterParams are the query parameters of an audit search, in the order
// they are checked.
var filterParams = []string{"subject", "subject_hmac", "request_id", "recipient", "country",
	"purpose", "decision", "event", "from", "to", "after", "limit"}

// parseFilter reads an audit filter from query parameters. Unknown
// parameters are errors (a typo must not silently widen a search), except
// those in extra.
func parseFilter(q url.Values, defLimit int, extra ...string) (audit.Filter, error) {
	f := audit.Filter{}
	known := map[string]bool{}
	for _, k := range append(filterParams, extra...) {
		known[k] = true
	}
	for k, v := range q {
		if k == "" {
			return f, badParam("(empty)", "a parameter without a name")
		}
		if !known[k] {
			return f, badParam(k, "unknown parameter (known: "+strings.Join(filterParams, ", ")+")")
		}
		if len(v) > 1 {
			return f, badParam(k, "given more than once")
		}
	}
	str := func(name string, re *regexp.Regexp, what string) (string, error) {
		v := q.Get(name)
		if v == "" || re == nil || re.MatchString(v) {
			return v, nil
		}
		return "", badParam(name, "want "+what)
	}
	var err error
	if f.SubjectID = q.Get("subject"); f.SubjectID != "" && (len(f.SubjectID) > 256 || !utf8.ValidString(f.SubjectID)) {
		return f, badParam("subject", "want a subject id of at most 256 characters")
	}
	checks := []struct {
		name string
		dst  *string
		re   *regexp.Regexp
		what string
	}{
		{"subject_hmac", &f.SubjectHMAC, hmacRE, "64 lowercase hex digits"},
		{"request_id", &f.RequestID, tokenRE, "an id of letters, digits, '.', '_', ':' or '-'"},
		{"recipient", &f.Recipient, tokenRE, "a party id"},
		{"country", &f.Country, countryRE, "an ISO 3166 alpha-2 code such as DE"},
		{"purpose", &f.Purpose, tokenRE, "a purpose id"},
	}
	for _, c := range checks {
		if *c.dst, err = str(c.name, c.re, c.what); err != nil {
			return f, err
		}
	}
	switch d := q.Get("decision"); d {
	case "", "allow", "deny":
		f.Decision = d
	default:
		return f, badParam("decision", "want allow or deny")
	}
	ev, err := str("event", tokenRE, "an event name such as decided")
	if err != nil {
		return f, err
	}
	f.Event = audit.Event(ev)
	if f.From, err = parseTime(q, "from"); err != nil {
		return f, err
	}
	if f.To, err = parseTime(q, "to"); err != nil {
		return f, err
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		return f, badParam("to", "must be after from")
	}
	if v := q.Get("after"); v != "" {
		if f.AfterSequence, err = strconv.ParseInt(v, 10, 64); err != nil || f.AfterSequence < 0 {
			return f, badParam("after", "want a sequence number (0 or more)")
		}
	}
	f.Limit = defLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxPageSize {
			return f, badParam("limit", "want a number from 1 to "+strconv.Itoa(MaxPageSize))
		}
		f.Limit = n
	}
	return f, nil
}

// parseTime reads an RFC 3339 time or a date (YYYY-MM-DD, midnight UTC).
func parseTime(q url.Values, name string) (time.Time, error) {
	v := q.Get(name)
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return t, nil
	}
	return time.Time{}, badParam(name, "want an RFC 3339 time (2026-11-28T00:00:00Z) or a date (2026-11-28)")
}

// window reads from and to with a default span ending now.
func window(q url.Values, now time.Time, days int) (from, to time.Time, err error) {
	if from, err = parseTime(q, "from"); err != nil {
		return
	}
	if to, err = parseTime(q, "to"); err != nil {
		return
	}
	if to.IsZero() {
		// The end of the current minute: repeated requests share a window
		// (and the overview's cache).
		to = now.UTC().Truncate(time.Minute).Add(time.Minute)
	}
	if from.IsZero() {
		from = to.AddDate(0, 0, -days)
	}
	if !from.Before(to) {
		err = badParam("to", "must be after from")
	}
	return
}

// onlyParams rejects parameters outside allowed.
func onlyParams(q url.Values, allowed ...string) error {
	for k := range q {
		if k == "" {
			return badParam("(empty)", "a parameter without a name")
		}
		ok := false
		for _, a := range allowed {
			ok = ok || a == k
		}
		if !ok {
			return badParam(k, "unknown parameter (known: "+strings.Join(allowed, ", ")+")")
		}
	}
	return nil
}

func urlEscape(s string) string { return url.QueryEscape(s) }
