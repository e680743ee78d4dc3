package compliance

import (
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/erasure"
	"github.com/clearance-broker/clearance/policy"
	"github.com/clearance-broker/clearance/shred"
)

// MaxPageSize caps the limit parameter of a search.
const MaxPageSize = 1000

var (
	tokenRE   = regexp.MustCompile(`^[A-Za-z0-9._:\-]{1,200}$`)
	countryRE = regexp.MustCompile(`^[A-Z]{2}$`)
	hmacRE    = regexp.MustCompile(`^[0-9a-f]{64}$`)
	// paramNameRE is a parameter name an error may repeat: a word as the
	// API's own names are (a typo of one), never a value such as an email
	// address, a customer number or "subject=cust-881" sent as a name.
	paramNameRE = regexp.MustCompile(`^[A-Za-z][A-Za-z_]{0,39}$`)
)

// unknownParam is the error of a parameter k outside known. It names k only
// when k is a plain word: a name is outside input too, and one that may be
// a value (a subject id, a whole "subject=..." pair) is not echoed.
func unknownParam(k string, known []string) error {
	list := "(known: " + strings.Join(known, ", ") + ")"
	if paramNameRE.MatchString(k) {
		return badParam(k, "unknown parameter "+list)
	}
	return badParam("", "an unknown parameter, its name not repeated "+list)
}

// validName reports whether v can be a request id, recipient or purpose of
// an audit entry: what audit.RecordableID allows (the broker records
// recipient and purpose ids that are registry ids or plain names, shorter
// still). White space at either end is accepted: a broker that refuses such
// request ids may run against a log that holds them from before.
func validName(v string) bool { return audit.RecordableID(v) }

// filterEvents are the values of the event filter: the events written to
// the audit log by the broker (audit), by this package, by the live
// registry (policy), by erasure propagation (erasure) and by
// crypto-shredding (shred).
var filterEvents = []audit.Event{audit.EventDecided, audit.EventDelivered, audit.EventDeliveryFailed,
	audit.EventRejected, audit.EventReceived, audit.EventErasureNotified, audit.EventRegistryApplied,
	audit.EventConsentRecorded, audit.EventErasureRecorded, EventAPICall,
	policy.EventLegalOrderRecorded, policy.EventAgreementSuspended,
	erasure.EventErasureEscalated, erasure.EventErasureJustified, shred.EventKeyDestroyed}

// Events lists every event the audit log holds, as the API's event filter
// and clearance audit query take them.
func Events() []audit.Event { return slices.Clone(filterEvents) }

// eventList is filterEvents for an error message.
func eventList() string {
	names := make([]string, len(filterEvents))
	for i, e := range filterEvents {
		names[i] = string(e)
	}
	return strings.Join(names, ", ")
}

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
			return f, unknownParam(k, filterParams)
		}
		if len(v) > 1 {
			return f, badParam(k, "given more than once")
		}
		// An empty filter must not widen a search (subject= would
		// otherwise select every subject).
		if len(v) == 1 && v[0] == "" && slices.Contains(filterParams, k) {
			return f, badParam(k, "empty; leave the parameter out not to filter by it")
		}
	}
	// The problems name the rule, never the value: a subject id (or a
	// request id holding one) is not echoed.
	var err error
	if f.SubjectID = q.Get("subject"); f.SubjectID != "" && (len(f.SubjectID) > 256 || !utf8.ValidString(f.SubjectID) ||
		strings.ContainsFunc(f.SubjectID, isControl)) {
		return f, badParam("subject", "want a subject id of at most 256 printable characters")
	}
	checks := []struct {
		name  string
		dst   *string
		valid func(string) bool
		what  string
	}{
		{"subject_hmac", &f.SubjectHMAC, hmacRE.MatchString, "64 lowercase hex digits"},
		{"request_id", &f.RequestID, validName, "a request id as the broker accepts it: 1 to 256 bytes of UTF-8 without control characters"},
		{"recipient", &f.Recipient, validName, "a recipient (party) id of at most 256 bytes without control characters"},
		{"country", &f.Country, countryRE.MatchString, "an ISO 3166 alpha-2 code in capitals such as DE"},
		{"purpose", &f.Purpose, validName, "a purpose id of at most 256 bytes without control characters"},
	}
	for _, c := range checks {
		if v := q.Get(c.name); v != "" && !c.valid(v) {
			return f, badParam(c.name, "want "+c.what)
		}
		*c.dst = q.Get(c.name)
	}
	switch d := q.Get("decision"); d {
	case "", "allow", "deny":
		f.Decision = d
	default:
		return f, badParam("decision", "want allow or deny")
	}
	if ev := audit.Event(q.Get("event")); ev != "" {
		if !slices.Contains(filterEvents, ev) {
			return f, badParam("event", "not an event of the audit log (events: "+eventList()+")")
		}
		f.Event = ev
	}
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
			return unknownParam(k, allowed)
		}
	}
	return nil
}

func urlEscape(s string) string { return url.QueryEscape(s) }
