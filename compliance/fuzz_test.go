package compliance

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"
)

// FuzzParseFilter feeds arbitrary query strings to the audit search's
// parameter parser: it must never panic, and every refusal must be a
// parameter error naming a parameter.
func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{"", "subject=cust-1&limit=10", "from=2026-11-01&to=2026-10-01",
		"country=DE&decision=deny&after=99", "limit=-1", "x=1", "subject_hmac=zz", "event=%00", "subject%3Dcust-1=1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		flt, err := parseFilter(q, 100)
		if err != nil {
			// A parameter error names the parameter, unless it is an
			// unknown one whose name may hold a value (unknownParam).
			var pe *paramError
			if !errors.As(err, &pe) || pe.name == "" && !strings.HasPrefix(pe.problem, "an unknown parameter") {
				t.Fatalf("error %v is not a parameter error", err)
			}
			return
		}
		if flt.Limit < 1 || flt.Limit > MaxPageSize || flt.AfterSequence < 0 {
			t.Fatalf("accepted limit %d after %d", flt.Limit, flt.AfterSequence)
		}
		if !flt.From.IsZero() && !flt.To.IsZero() && !flt.From.Before(flt.To) {
			t.Fatal("accepted an empty window")
		}
	})
}

// FuzzWindow checks the report window parser the same way.
func FuzzWindow(f *testing.F) {
	f.Add("2026-11-01", "2026-12-01")
	f.Add("", "")
	f.Add("2026-11-28T10:00:00Z", "2026-11-28T09:00:00Z")
	now := time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, from, to string) {
		a, b, err := window(url.Values{"from": {from}, "to": {to}}, now, 30)
		if err == nil && !a.Before(b) {
			t.Fatalf("window %v..%v accepted", a, b)
		}
	})
}
