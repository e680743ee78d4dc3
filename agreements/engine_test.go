package agreements

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"
)

// defaultAt is the decision time of the engine tests unless a case says
// otherwise.
const defaultAt = "2026-11-28T00:00:00Z"

func engineRegistry(t testing.TB) *Registry {
	t.Helper()
	r, err := Load("testdata/engine")
	if err != nil {
		t.Fatalf("load engine fixture: %v", err)
	}
	return r
}

// give describes a request of the engine table; empty strings take defaults
// (dataset orders, jurisdiction DE, the standard record, defaultAt).
type give struct {
	recipient, purpose, dataset, subject, juris, order, at string
	minor                                                  bool
	record                                                 map[string]any
}

func stdRecord() map[string]any {
	return map[string]any{
		"order_id": "1", "name": "n", "email": "e",
		"payment": map[string]any{"method": "card", "cvv": "123"},
		"gift":    "g",
	}
}

func (g give) request() (*Request, time.Time) {
	req := &Request{ID: "r", Source: "test", Recipient: g.recipient, Purpose: g.purpose, Dataset: g.dataset,
		Subject: Subject{ID: g.subject, Jurisdiction: g.juris, Minor: g.minor}, LegalOrder: g.order, Record: g.record}
	if req.Dataset == "" {
		req.Dataset = "orders"
	}
	if req.Subject.Jurisdiction == "" {
		req.Subject.Jurisdiction = "DE"
	}
	if req.Subject.ID == "" {
		req.Subject.ID = "s-plain"
	}
	if req.Record == nil {
		req.Record = stdRecord()
	}
	at := g.at
	if at == "" {
		at = defaultAt
	}
	ts, err := time.Parse(time.RFC3339, at)
	if err != nil {
		panic(err)
	}
	return req, ts
}

type want struct {
	reasons   []string
	mechanism string
	agreement string
	kept      []string
}

var stdKept = []string{"name", "order_id", "payment.method"}

// ruleTests is the table of TestDecideRules: a case per rule and reason
// code, on both sides.
var ruleTests = []struct {
	name string
	give give
	want want
}{
	// Rule 1: erasure.
	{"erased subject is denied", give{recipient: "p-de", purpose: "delivery", subject: "s-erased"},
		want{reasons: []string{ReasonSubjectErased}, mechanism: "domestic", agreement: "a-de", kept: stdKept}},
	{"erasure not yet in effect allows", give{recipient: "p-de", purpose: "delivery", subject: "s-erased", at: "2026-04-30T23:59:59Z"},
		want{mechanism: "domestic", agreement: "a-de", kept: stdKept}},

	// Rule 2: unknown names; non-personal datasets.
	{"unknown recipient", give{recipient: "nobody", purpose: "delivery"},
		want{reasons: []string{ReasonUnknownRecipient}, kept: []string{}}},
	{"unknown dataset", give{recipient: "p-de", purpose: "delivery", dataset: "nothing"},
		want{reasons: []string{ReasonUnknownDataset}, agreement: "a-de", kept: []string{}}},
	{"unknown purpose", give{recipient: "p-de", purpose: "nothing"},
		want{reasons: []string{ReasonUnknownPurpose}, kept: []string{}}},
	{"everything unknown, in rule order", give{recipient: "x", purpose: "y", dataset: "z", subject: "s-erased"},
		want{reasons: []string{ReasonSubjectErased, ReasonUnknownRecipient, ReasonUnknownDataset, ReasonUnknownPurpose}, kept: []string{}}},
	{"non-personal dataset passes whole with mechanism none", give{recipient: "p-br", purpose: "research", dataset: "stats", record: map[string]any{"units": 3, "week": "W1"}},
		want{mechanism: "none", kept: []string{"units", "week"}}},
	{"non-personal dataset keeps names that are not plain, listed as withheld", give{recipient: "p-br", purpose: "research", dataset: "stats",
		record: map[string]any{"units": 3, "ada.lovelace@example.com": 1, "+44 20 7946 0000": 2}},
		want{mechanism: "none", kept: []string{WithheldName, "units"}}},
	{"non-personal dataset to an unknown recipient is denied", give{recipient: "x", purpose: "research", dataset: "stats", record: map[string]any{"units": 3}},
		want{reasons: []string{ReasonUnknownRecipient}, kept: []string{"units"}}},

	// Rule 3: consent.
	{"consent for the recipient allows", give{recipient: "p-de", purpose: "marketing", subject: "s-ok"},
		want{mechanism: "domestic", agreement: "a-de", kept: stdKept}},
	{"consent for another recipient is no consent", give{recipient: "p-fr", purpose: "marketing", subject: "s-ok"},
		want{reasons: []string{ReasonNoConsent}, mechanism: "domestic", agreement: "a-de", kept: stdKept}},
	{"consent without recipients covers any", give{recipient: "p-fr", purpose: "marketing", subject: "s-any"},
		want{mechanism: "domestic", agreement: "a-de", kept: stdKept}},
	{"no consent at all", give{recipient: "p-de", purpose: "marketing", subject: "s-plain"},
		want{reasons: []string{ReasonNoConsent}, mechanism: "domestic", agreement: "a-de", kept: stdKept}},
	{"withdrawn consent", give{recipient: "p-de", purpose: "marketing", subject: "s-gone"},
		want{reasons: []string{ReasonConsentWithdrawn}, mechanism: "domestic", agreement: "a-de", kept: stdKept}},
	{"consent before its withdrawal allows", give{recipient: "p-de", purpose: "marketing", subject: "s-gone", at: "2026-05-31T23:59:59Z"},
		want{mechanism: "domestic", agreement: "a-de", kept: stdKept}},
	{"a renewed consent after a withdrawal allows", give{recipient: "p-de", purpose: "marketing", subject: "s-mixed"},
		want{mechanism: "domestic", agreement: "a-de", kept: stdKept}},
	{"consent granted after the decision time is no consent", give{recipient: "p-de", purpose: "marketing", subject: "s-late", at: "2026-08-31T00:00:00Z"},
		want{reasons: []string{ReasonNoConsent}, mechanism: "domestic", agreement: "a-de", kept: stdKept}},
	{"minor without parental consent", give{recipient: "p-de", purpose: "marketing", subject: "s-kid", minor: true},
		want{reasons: []string{ReasonMinorWithoutParentalConsent}, mechanism: "domestic", agreement: "a-de", kept: stdKept}},
	{"minor with parental consent allows", give{recipient: "p-de", purpose: "marketing", subject: "s-kid-ok", minor: true},
		want{mechanism: "domestic", agreement: "a-de", kept: stdKept}},
	{"minor without any consent is no consent", give{recipient: "p-de", purpose: "marketing", subject: "s-plain", minor: true},
		want{reasons: []string{ReasonNoConsent}, mechanism: "domestic", agreement: "a-de", kept: stdKept}},

	// Rule 3: legal obligation.
	{"valid legal order allows the authority", give{recipient: "auth-de", purpose: "police", subject: "s-suspect", order: "lo-de"},
		want{mechanism: "domestic", kept: []string{"name"}}},
	{"legal order on its last day allows", give{recipient: "auth-de", purpose: "police", subject: "s-suspect", order: "lo-de", at: "2026-12-31T23:59:59Z"},
		want{mechanism: "domestic", kept: []string{"name"}}},
	{"expired legal order", give{recipient: "auth-de", purpose: "police", subject: "s-suspect", order: "lo-de", at: "2027-01-01T00:00:00Z"},
		want{reasons: []string{ReasonLegalOrderRequired, ReasonNoAgreement}, mechanism: "domestic", kept: []string{}}},
	{"no legal order named", give{recipient: "auth-de", purpose: "police", subject: "s-suspect"},
		want{reasons: []string{ReasonLegalOrderRequired, ReasonNoAgreement}, mechanism: "domestic", kept: []string{}}},
	{"legal order of another authority", give{recipient: "auth-de", purpose: "police", subject: "s-suspect", order: "lo-us"},
		want{reasons: []string{ReasonLegalOrderRequired, ReasonNoAgreement}, mechanism: "domestic", kept: []string{}}},
	{"legal order not naming the subject", give{recipient: "auth-de", purpose: "police", subject: "s-plain", order: "lo-de"},
		want{reasons: []string{ReasonLegalOrderRequired, ReasonNoAgreement}, mechanism: "domestic", kept: []string{}}},
	{"unknown legal order", give{recipient: "auth-de", purpose: "police", subject: "s-suspect", order: "lo-nope"},
		want{reasons: []string{ReasonLegalOrderRequired, ReasonNoAgreement}, mechanism: "domestic", kept: []string{}}},
	{"legal order for a contract purpose is ignored", give{recipient: "auth-de", purpose: "delivery", subject: "s-suspect", order: "lo-de"},
		want{reasons: []string{ReasonNoAgreement}, mechanism: "domestic", kept: []string{}}},

	// Rule 4: the agreement.
	{"agreement on its last day allows", give{recipient: "p-de", purpose: "delivery", at: "2026-12-31T23:59:59Z"},
		want{mechanism: "domestic", agreement: "a-de", kept: stdKept}},
	{"agreement on its first day allows", give{recipient: "p-de", purpose: "delivery", at: "2026-01-01T00:00:00Z"},
		want{mechanism: "domestic", agreement: "a-de", kept: stdKept}},
	{"agreement the day after it ends", give{recipient: "p-de", purpose: "delivery", at: "2027-01-01T00:00:00Z"},
		want{reasons: []string{ReasonAgreementExpired}, mechanism: "domestic", agreement: "a-de", kept: []string{}}},
	{"expired wins over suspended", give{recipient: "p-states", purpose: "returns"},
		want{reasons: []string{ReasonAgreementExpired}, mechanism: "domestic", agreement: "s-expired", kept: []string{}}},
	{"suspended agreement", give{recipient: "p-states", purpose: "research"},
		want{reasons: []string{ReasonAgreementSuspended}, mechanism: "domestic", agreement: "s-suspended", kept: []string{}}},
	{"agreement not yet valid", give{recipient: "p-states", purpose: "delivery"},
		want{reasons: []string{ReasonAgreementNotYetValid}, mechanism: "domestic", agreement: "s-future", kept: []string{}}},
	{"draft agreement is not yet valid", give{recipient: "p-states", purpose: "marketing", subject: "s-any"},
		want{reasons: []string{ReasonAgreementNotYetValid}, mechanism: "domestic", agreement: "s-draft", kept: []string{}}},
	{"terminated agreement has expired", give{recipient: "p-states", purpose: "police", subject: "s-suspect"},
		want{reasons: []string{ReasonLegalOrderRequired, ReasonAgreementExpired}, mechanism: "domestic", agreement: "s-terminated", kept: []string{}}},
	{"purpose not covered", give{recipient: "p-de", purpose: "research"},
		want{reasons: []string{ReasonPurposeNotCovered}, mechanism: "domestic", kept: []string{}}},
	{"no agreement", give{recipient: "p-none", purpose: "delivery"},
		want{reasons: []string{ReasonNoAgreement}, mechanism: "domestic", kept: []string{}}},
	{"a dpa is preferred to an scc as the disclosure agreement", give{recipient: "p-us", purpose: "delivery"},
		want{mechanism: "scc:scc-us", agreement: "s-dpa-pref", kept: []string{"name", "order_id"}}},

	// Rule 5: minimisation.
	{"special category listed by name is kept", give{recipient: "p-de", purpose: "health", record: map[string]any{"order_id": "1", "note": map[string]any{"health": "h"}}},
		want{mechanism: "domestic", agreement: "a-health", kept: []string{"note.health", "order_id"}}},
	{"special category is not reached by a wildcard", give{recipient: "p-fr", purpose: "health", record: map[string]any{"order_id": "1", "note": map[string]any{"health": "h"}}},
		want{mechanism: "domestic", agreement: "a-wild", kept: []string{"order_id"}}},
	{"a dotted member name matches the nested path", give{recipient: "p-de", purpose: "delivery", record: map[string]any{"payment.method": "card", "name": "n"}},
		want{mechanism: "domestic", agreement: "a-de", kept: []string{"name", "payment.method"}}},
	{"nothing permitted", give{recipient: "p-jp", purpose: "health"},
		want{reasons: []string{ReasonNoPermittedFields}, mechanism: "adequacy:adq", agreement: "a-none-fields", kept: []string{}}},

	// Rule 6: transfer mechanisms.
	{"same zone is domestic", give{recipient: "p-fr", purpose: "delivery", juris: "AT"},
		want{mechanism: "domestic", agreement: "a-de", kept: stdKept}},
	{"adequacy", give{recipient: "p-jp", purpose: "delivery"},
		want{mechanism: "adequacy:adq", agreement: "a-de", kept: stdKept}},
	{"adequacy from a country outside its zone does not hold", give{recipient: "p-jp", purpose: "delivery", juris: "CH"},
		want{reasons: []string{ReasonNoTransferMechanism}, agreement: "a-de", kept: stdKept}},
	{"dpf adequacy for a certified party", give{recipient: "p-us-dpf", purpose: "delivery"},
		want{mechanism: "adequacy:dpf", agreement: "a-de", kept: stdKept}},
	{"scc for a party that is not certified", give{recipient: "p-us", purpose: "delivery"},
		want{mechanism: "scc:scc-us", agreement: "s-dpa-pref", kept: []string{"name", "order_id"}}},
	{"scc holds for a subject from outside the EEA", give{recipient: "p-us", purpose: "delivery", juris: "GB"},
		want{mechanism: "scc:scc-us", agreement: "s-dpa-pref", kept: []string{"name", "order_id"}}},
	{"tia overdue", give{recipient: "p-us-tia", purpose: "delivery"},
		want{reasons: []string{ReasonTIAOverdue}, agreement: "a-de", kept: stdKept}},
	{"tia on its review day still holds", give{recipient: "p-us-tia", purpose: "delivery", at: "2026-06-30T12:00:00Z"},
		want{mechanism: "scc:scc-us-tia", agreement: "a-de", kept: stdKept}},
	{"explicit consent holds despite an overdue tia", give{recipient: "p-us-tia", purpose: "delivery", subject: "s-abroad-tia"},
		want{mechanism: "derogation:explicit_consent", agreement: "a-de", kept: stdKept}},
	{"bcr", give{recipient: "p-sg", purpose: "delivery"},
		want{mechanism: "bcr:bcr-sg", agreement: "a-de", kept: stdKept}},
	{"no mechanism", give{recipient: "p-br", purpose: "delivery"},
		want{reasons: []string{ReasonNoTransferMechanism}, agreement: "a-de", kept: stdKept}},
	{"explicit transfer consent", give{recipient: "p-br", purpose: "delivery", subject: "s-abroad"},
		want{mechanism: "derogation:explicit_consent", agreement: "a-de", kept: stdKept}},
	{"withdrawn transfer consent", give{recipient: "p-br", purpose: "delivery", subject: "s-abroad-gone"},
		want{reasons: []string{ReasonNoTransferMechanism}, agreement: "a-de", kept: stdKept}},
	{"a minor's transfer consent needs a parent", give{recipient: "p-br", purpose: "delivery", subject: "s-abroad-kid", minor: true},
		want{reasons: []string{ReasonNoTransferMechanism}, agreement: "a-de", kept: stdKept}},
	{"foreign authority with a valid order", give{recipient: "auth-us", purpose: "police", subject: "s-suspect", order: "lo-us"},
		want{reasons: []string{ReasonForeignAuthorityRequiresReview}, kept: []string{"name"}}},
	{"foreign authority is not served on explicit consent", give{recipient: "auth-us", purpose: "police", subject: "s-abroad-auth", order: "lo-us"},
		want{reasons: []string{ReasonLegalOrderRequired, ReasonNoAgreement, ReasonForeignAuthorityRequiresReview}, kept: []string{}}},
	{"domestic authority from another zone country", give{recipient: "auth-de", purpose: "police", subject: "s-suspect", order: "lo-de", juris: "FR"},
		want{mechanism: "domestic", kept: []string{"name"}}},
}

func TestDecideRules(t *testing.T) {
	e := NewEngine(engineRegistry(t))
	for _, tt := range ruleTests {
		t.Run(tt.name, func(t *testing.T) {
			req, at := tt.give.request()
			d := e.Decide(req, at)
			wantOutcome := Allow
			if len(tt.want.reasons) > 0 {
				wantOutcome = Deny
			}
			if d.Decision != wantOutcome || !slices.Equal(d.Reasons, nonNil(tt.want.reasons)) {
				t.Errorf("decision = %s %v, want %s %v", d.Decision, d.Reasons, wantOutcome, tt.want.reasons)
			}
			if d.Mechanism != tt.want.mechanism {
				t.Errorf("mechanism = %q, want %q", d.Mechanism, tt.want.mechanism)
			}
			gotAgreement := ""
			if d.Agreement != nil {
				gotAgreement = d.Agreement.ID
			}
			if gotAgreement != tt.want.agreement {
				t.Errorf("agreement = %q, want %q", gotAgreement, tt.want.agreement)
			}
			if !slices.Equal(nonNil(d.Fields.Kept), tt.want.kept) {
				t.Errorf("kept = %v, want %v", d.Fields.Kept, tt.want.kept)
			}
			if (d.Record != nil) != (wantOutcome == Allow) {
				t.Errorf("record present = %v on %s", d.Record != nil, d.Decision)
			}
		})
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func TestDecideMinimisesRecord(t *testing.T) {
	e := NewEngine(engineRegistry(t))
	req, at := give{recipient: "p-de", purpose: "delivery"}.request()
	d := e.Decide(req, at)
	got, err := json.Marshal(d.Record)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"name":"n","order_id":"1","payment":{"method":"card"}}`; string(got) != want {
		t.Errorf("record = %s, want %s", got, want)
	}
	wantRemoved := map[string]string{"email": FieldCategoryNotPermitted, "payment.cvv": FieldUnclassified, "gift": FieldUnclassified}
	if len(d.Fields.Removed) != len(wantRemoved) {
		t.Errorf("removed = %v, want %v", d.Fields.Removed, wantRemoved)
	}
	for k, v := range wantRemoved {
		if got := d.Fields.Removed.Reason(k); got != v {
			t.Errorf("removed[%s] = %q, want %q", k, got, v)
		}
	}
	if want := []string{"financial.payment", "identity.name", "order.reference"}; !slices.Equal(d.Categories, want) {
		t.Errorf("categories = %v, want %v", d.Categories, want)
	}
	if d.Origin != "DE" || d.RecipientCountry != "DE" || d.Connector != "hook" {
		t.Errorf("facts = %s %s %s", d.Origin, d.RecipientCountry, d.Connector)
	}
	if _, ok := req.Record["email"]; !ok {
		t.Error("Decide modified the request's record")
	}
}

func TestDecideLegalOrderFacts(t *testing.T) {
	e := NewEngine(engineRegistry(t))
	req, at := give{recipient: "auth-de", purpose: "police", subject: "s-suspect", order: "lo-de"}.request()
	d := e.Decide(req, at)
	if d.LegalOrder != "lo-de" || d.Agreement != nil {
		t.Errorf("legal order = %q, agreement = %v", d.LegalOrder, d.Agreement)
	}
}

// TestWithdrawalAtGrantInstant: a consent is in force from the instant it
// was granted, so a withdrawal dated that very instant withdraws it, change
// by change and in a run, and the engine refuses from then on; one dated
// before the grant withdraws nothing.
func TestWithdrawalAtGrantInstant(t *testing.T) {
	base := engineRegistry(t)
	granted := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	grant := Change{Consents: []Consent{{Subject: "s-w", Purpose: "marketing", GrantedAt: granted}}}
	req, _ := give{recipient: "p-de", purpose: "marketing", subject: "s-w"}.request()
	later := granted.Add(30 * 24 * time.Hour)
	for _, tc := range []struct {
		name      string
		at        time.Time
		withdrawn bool
	}{
		{"at the grant", granted, true},
		{"after it", granted.Add(time.Second), true},
		{"before it", granted.Add(-time.Second), false},
	} {
		chs := []Change{grant, {Withdrawals: []Withdrawal{{Subject: "s-w", Purpose: "marketing", At: tc.at}}}}
		one, err := base.With(chs[0])
		if err != nil {
			t.Fatal(err)
		}
		if one, err = one.With(chs[1]); err != nil {
			t.Fatal(err)
		}
		run := base.withPeople(chs, make([]string, 2))
		for name, r := range map[string]*Registry{"With": one, "a run": run} {
			d := NewEngine(r).Decide(req, later)
			if d.Allowed() == tc.withdrawn {
				t.Errorf("withdrawal %s, %s: allowed %v, reasons %v", tc.name, name, d.Allowed(), d.Reasons)
			}
			if tc.withdrawn && !slices.Contains(d.Reasons, ReasonConsentWithdrawn) {
				t.Errorf("withdrawal %s, %s: reasons %v, want %s", tc.name, name, d.Reasons, ReasonConsentWithdrawn)
			}
		}
	}
}

// TestNonPersonalWithholdsNames: a record of a non-personal dataset goes
// whole, but its kept members are named in the decision (and so the audit
// log) as removed ones are: a name that is not plain is withheld.
func TestNonPersonalWithholdsNames(t *testing.T) {
	e := NewEngine(engineRegistry(t))
	req, at := give{recipient: "p-br", purpose: "research", dataset: "stats",
		record: map[string]any{"units": 3, "ada.lovelace@example.com": 1, "Ada Lovelace": 2}}.request()
	var reused Decision
	e.DecideInto(&reused, req, at)
	for _, d := range []*Decision{e.Decide(req, at), &reused} {
		if !d.Allowed() || len(d.Record) != 3 {
			t.Fatalf("decision = %s %v, record of %d members, want allow with all 3", d.Decision, d.Reasons, len(d.Record))
		}
		got, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"ada.lovelace", "Ada Lovelace"} {
			if strings.Contains(string(got), name) {
				t.Errorf("decision names %q: %s", name, got)
			}
		}
		if want := []string{WithheldName, "units"}; !slices.Equal(d.Fields.Kept, want) {
			t.Errorf("kept = %q, want %q", d.Fields.Kept, want)
		}
	}
}
