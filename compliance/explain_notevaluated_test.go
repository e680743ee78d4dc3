package compliance_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/compliance"
	"github.com/clearance-broker/clearance/compliance/compliancetest"
)

const (
	pass = compliance.RulePassed
	fail = compliance.RuleFailed
	nev  = compliance.RuleNotEvaluated
	na   = compliance.RuleNotApplied
)

// decidedEntry decides the example request id, with recipient, purpose
// and dataset replaced where given, as the broker would, and returns its
// "decided" entry.
func decidedEntry(t *testing.T, engine *agreements.Engine, id, recipient, purpose, dataset string) *audit.Entry {
	t.Helper()
	reqs := compliancetest.Requests(t)
	i := slices.IndexFunc(reqs, func(r *agreements.Request) bool { return r.ID == id })
	if i < 0 {
		t.Fatalf("no example request %s", id)
	}
	req := *reqs[i]
	for dst, v := range map[*string]string{&req.Recipient: recipient, &req.Purpose: purpose, &req.Dataset: dataset} {
		if v != "" {
			*dst = v
		}
	}
	d := engine.Decide(&req, compliancetest.Now)
	return compliancetest.Entries(&req, d, compliancetest.Now)[0]
}

func statuses(x *compliance.Explanation) []string {
	out := make([]string, len(x.Rules))
	for i, r := range x.Rules {
		out[i] = r.Status
	}
	return out
}

// TestExplainNotEvaluated checks that a rule the engine did not check,
// because an earlier rule found the recipient, dataset or purpose unknown
// or no agreement was in force, is shown as not evaluated, never as
// passed; and that a dataset of no personal data has rules 3 to 6 not
// applicable.
func TestExplainNotEvaluated(t *testing.T) {
	f := compliancetest.New(t)
	tests := []struct {
		name                            string
		id, recipient, purpose, dataset string
		wantDecision                    string
		want                            []string
		wantReasons                     []string
	}{
		{"allowed", "ord-10023-delivery", "", "", "", "allow",
			[]string{pass, pass, pass, pass, pass, pass}, nil},
		{"unknown recipient", "ord-10023-delivery", "nobody-xx", "", "", "deny",
			[]string{pass, fail, pass, nev, nev, nev}, []string{agreements.ReasonUnknownRecipient}},
		{"unknown purpose", "ord-10023-delivery", "", "no-such-purpose", "", "deny",
			[]string{pass, fail, nev, nev, nev, nev}, []string{agreements.ReasonUnknownPurpose}},
		{"unknown dataset", "ord-10023-delivery", "", "", "no.such.dataset", "deny",
			[]string{pass, fail, pass, pass, nev, nev}, []string{agreements.ReasonUnknownDataset}},
		{"everything unknown", "ord-10023-delivery", "nobody-xx", "no-such-purpose", "no.such.dataset", "deny",
			[]string{pass, fail, nev, nev, nev, nev},
			[]string{agreements.ReasonUnknownRecipient, agreements.ReasonUnknownDataset, agreements.ReasonUnknownPurpose}},
		{"agreement expired", "ret-501-pickup", "", "", "", "deny",
			[]string{pass, pass, pass, fail, nev, pass}, []string{agreements.ReasonAgreementExpired}},
		{"erased: every later rule still checked", "ord-10029-delivery", "", "", "", "deny",
			[]string{fail, pass, pass, pass, pass, pass}, []string{agreements.ReasonSubjectErased}},
		{"erased and unknown recipient", "ord-10029-delivery", "nobody-xx", "", "", "deny",
			[]string{fail, fail, pass, nev, nev, nev}, []string{agreements.ReasonSubjectErased, agreements.ReasonUnknownRecipient}},
		{"no personal data", "stats-2026-w47", "", "", "", "allow",
			[]string{pass, pass, na, na, na, na}, nil},
		{"no personal data, unknown recipient", "stats-2026-w47", "nobody-xx", "", "", "deny",
			[]string{pass, fail, na, na, na, na}, []string{agreements.ReasonUnknownRecipient}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := decidedEntry(t, f.Engine, tt.id, tt.recipient, tt.purpose, tt.dataset)
			if e.Decision != tt.wantDecision || !slices.Equal(e.Reasons, tt.wantReasons) {
				t.Fatalf("decision %s %q, want %s %q: the example registry changed", e.Decision, e.Reasons, tt.wantDecision, tt.wantReasons)
			}
			x := compliance.Explain(e, f.Engine.Registry())
			if got := statuses(x); !slices.Equal(got, tt.want) {
				t.Fatalf("statuses %q, want %q\n%+v", got, tt.want, x.Rules)
			}
			for _, r := range x.Rules {
				if r.Status == nev && !strings.HasPrefix(r.Detail, "not evaluated: ") {
					t.Errorf("rule %d detail %q does not say why it was not evaluated", r.Number, r.Detail)
				}
				if r.Status == fail && len(r.Reasons) == 0 {
					t.Errorf("rule %d failed without a reason", r.Number)
				}
			}
		})
	}
}

// TestExplainNotADecision checks that an entry recording no decision (a
// registry change, an API call) has no rule shown as passed.
func TestExplainNotADecision(t *testing.T) {
	tests := []struct {
		name string
		give audit.Entry
	}{
		{"registry applied", audit.Entry{Event: audit.EventRegistryApplied, RequestID: "registry-event-1", Source: "registry"}},
		{"api call", audit.Entry{Event: compliance.EventAPICall, RequestID: "api-1", Decision: "allow", Reasons: []string{"POST /v1/whatif", "role:officer", "status:OK"}}},
		{"rejected", audit.Entry{Event: audit.EventRejected, RequestID: "x", Decision: "deny", Reasons: []string{"invalid_request: subject.id: required field is missing"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := compliance.Explain(&tt.give, nil)
			if got, want := statuses(x), []string{na, na, na, na, na, na}; !slices.Equal(got, want) {
				t.Fatalf("statuses %q, want %q", got, want)
			}
		})
	}
}

// TestEntryPageShowsNotEvaluated checks the API and the console page of
// an entry of an unknown recipient: rules 4 to 6 are not evaluated, and
// the page says so in words.
func TestEntryPageShowsNotEvaluated(t *testing.T) {
	f := compliancetest.New(t)
	e := decidedEntry(t, f.Engine, "ord-10023-delivery", "nobody-xx", "", "")
	seq, err := f.Log.Append(context.Background(), e)
	if err != nil {
		t.Fatal(err)
	}
	c := client{t: t, base: f.HTTP.URL, token: f.Token(t, compliance.RoleViewer)}
	code, b := c.get("/v1/audit/entries/" + strconv.FormatInt(seq, 10))
	var det compliance.EntryDetail
	if code != http.StatusOK || json.Unmarshal(b, &det) != nil {
		t.Fatalf("%d %s", code, b)
	}
	if got, want := statuses(det.Explanation), []string{pass, fail, pass, nev, nev, nev}; !slices.Equal(got, want) {
		t.Fatalf("API statuses %q, want %q", got, want)
	}
	code, b = c.get("/console/audit/" + strconv.FormatInt(seq, 10))
	if code != http.StatusOK {
		t.Fatalf("console: %d %s", code, b)
	}
	page := string(b)
	start, end := strings.Index(page, `id="explanation"`), strings.Index(page, "</ol>")
	if start < 0 || end < start {
		t.Fatalf("no explanation on the page:\n%s", page)
	}
	list := page[start:end]
	if n := strings.Count(list, `<span class="badge not_evaluated">not evaluated</span>`); n != 3 {
		t.Errorf("%d rules shown not evaluated, want 3:\n%s", n, list)
	}
	if n := strings.Count(list, `<span class="badge passed">passed</span>`); n != 2 {
		t.Errorf("%d rules shown passed, want 2 (rules 1 and 3):\n%s", n, list)
	}
}
