package compliance

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/audit"
)

// Rule status values of an Explanation. The engine checks every rule it
// can and reports every failing reason (DESIGN section 3), but a rule that
// needs what an earlier one found unknown is not checked: it is
// RuleNotEvaluated, never RulePassed.
const (
	// RulePassed: the rule was checked and holds.
	RulePassed = "passed"
	// RuleFailed: the rule was checked and gave the reasons listed.
	RuleFailed = "failed"
	// RuleNotApplied: the rule does not apply to the entry (a request
	// rejected before any decision, an entry that records no decision,
	// a dataset that holds no personal data).
	RuleNotApplied = "not_applicable"
	// RuleNotEvaluated: the rule was not checked because an earlier rule
	// left it nothing to check (an unknown recipient, dataset or purpose;
	// no agreement or legal order to minimise by).
	RuleNotEvaluated = "not_evaluated"
)

// RuleResult is one rule of DESIGN section 3 as it applied to one decision.
type RuleResult struct {
	Number  int      `json:"number"`
	Title   string   `json:"title"`
	Status  string   `json:"status"`
	Reasons []string `json:"reasons"`
	Detail  string   `json:"detail"`
}

// Explanation walks a recorded decision rule by rule.
type Explanation struct {
	Outcome string       `json:"outcome"`
	Rules   []RuleResult `json:"rules"`
	// RegistryNote says whether the registry in force is the one the
	// decision was made with.
	RegistryNote string `json:"registry_note"`
}

// ruleOf maps each reason code to the rule that produces it.
var ruleOf = map[string]int{
	agreements.ReasonSubjectErased:                  1,
	agreements.ReasonUnknownRecipient:               2,
	agreements.ReasonUnknownDataset:                 2,
	agreements.ReasonUnknownPurpose:                 2,
	agreements.ReasonNoConsent:                      3,
	agreements.ReasonConsentWithdrawn:               3,
	agreements.ReasonMinorWithoutParentalConsent:    3,
	agreements.ReasonLegalOrderRequired:             3,
	agreements.ReasonAgreementExpired:               4,
	agreements.ReasonAgreementNotYetValid:           4,
	agreements.ReasonAgreementSuspended:             4,
	agreements.ReasonPurposeNotCovered:              4,
	agreements.ReasonNoAgreement:                    4,
	agreements.ReasonNoPermittedFields:              5,
	agreements.ReasonForeignAuthorityRequiresReview: 6,
	agreements.ReasonTIAOverdue:                     6,
	agreements.ReasonNoTransferMechanism:            6,
}

// reasonText is the plain-language meaning of each reason code.
var reasonText = map[string]string{
	agreements.ReasonSubjectErased:                  "the subject asked for erasure or restriction (Art. 17/18) before this transfer",
	agreements.ReasonUnknownRecipient:               "the recipient is not a party in the registry",
	agreements.ReasonUnknownDataset:                 "the dataset is not described in the registry",
	agreements.ReasonUnknownPurpose:                 "the purpose is not in the registry",
	agreements.ReasonNoConsent:                      "the purpose rests on consent and the subject gave none for this recipient",
	agreements.ReasonConsentWithdrawn:               "the subject withdrew the consent this purpose needs",
	agreements.ReasonMinorWithoutParentalConsent:    "the subject is a minor and no parental authorisation is recorded (Art. 8)",
	agreements.ReasonLegalOrderRequired:             "the purpose is a legal obligation and no valid legal order names this authority and subject",
	agreements.ReasonAgreementExpired:               "the agreement with the recipient had expired",
	agreements.ReasonAgreementNotYetValid:           "the agreement with the recipient was not yet in force",
	agreements.ReasonAgreementSuspended:             "the agreement with the recipient is suspended or terminated",
	agreements.ReasonPurposeNotCovered:              "the recipient's agreement does not cover this purpose",
	agreements.ReasonNoAgreement:                    "no agreement with the recipient exists",
	agreements.ReasonNoPermittedFields:              "no field of the record is in a category the agreement permits",
	agreements.ReasonForeignAuthorityRequiresReview: "a foreign authority is never served automatically (Art. 48); a person must review",
	agreements.ReasonTIAOverdue:                     "the transfer impact assessment of the SCC/BCR is past its review date",
	agreements.ReasonNoTransferMechanism:            "no adequacy decision, SCC, BCR or explicit consent covers this country",
}

// ReasonText returns the plain-language meaning of a reason code, or the
// code itself when it is not a decision reason.
func ReasonText(code string) string {
	if t, ok := reasonText[code]; ok {
		return t
	}
	return code
}

var ruleTitles = []string{
	"Erasure (Art. 17/18)",
	"Known recipient, dataset and purpose",
	"Legal basis (Art. 6, Art. 8)",
	"Disclosure agreement",
	"Minimisation (only permitted categories)",
	"Transfer mechanism (Chapter V)",
}

// Explain walks the decision recorded in e rule by rule, with details from
// reg where the registry still holds them. A rule the engine did not check
// (see RuleNotEvaluated) is never shown as passed. Entries that are not
// decisions get the rules that their reasons name; the other rules do not
// apply to them.
func Explain(e *audit.Entry, reg *agreements.Registry) *Explanation {
	x := &Explanation{Outcome: e.Decision}
	byRule := map[int][]string{}
	var other []string
	for _, r := range e.Reasons {
		if n, ok := ruleOf[r]; ok {
			byRule[n] = append(byRule[n], r)
		} else {
			other = append(other, r)
		}
	}
	for i, title := range ruleTitles {
		n := i + 1
		rr := RuleResult{Number: n, Title: title, Status: RulePassed, Reasons: byRule[n]}
		if rr.Reasons == nil {
			rr.Reasons = []string{}
		}
		if len(rr.Reasons) > 0 {
			rr.Status = RuleFailed
		}
		rr.Detail = ruleDetail(n, e, reg, rr.Reasons)
		x.Rules = append(x.Rules, rr)
	}
	for n, why := range unchecked(e, reg) {
		if rr := &x.Rules[n-1]; rr.Status == RulePassed {
			rr.Status, rr.Detail = why.status, why.detail
		}
	}
	switch {
	case e.Event == audit.EventRejected || len(other) > 0 && e.Decision == "deny" && len(byRule) == 0:
		for i := range x.Rules {
			x.Rules[i].Status = RuleNotApplied
			x.Rules[i].Detail = "the request was not decided: " + strings.Join(other, "; ")
		}
	case !slices.Contains(decisionEvents, e.Event):
		for i := range x.Rules {
			if x.Rules[i].Status != RuleFailed {
				x.Rules[i].Status = RuleNotApplied
				x.Rules[i].Detail = "this entry records " + string(e.Event) + ", not a transfer decision"
			}
		}
	}
	switch {
	case reg == nil:
		x.RegistryNote = "no registry available"
	case reg.Version() == e.RegistryVersion:
		x.RegistryNote = "the registry in force is the one this decision was made with"
	default:
		x.RegistryNote = "the registry has changed since this decision; details below come from the registry in force (" + short(reg.Version()) + "), the decision from " + short(e.RegistryVersion)
	}
	return x
}

// decisionEvents are the events whose entries carry a transfer decision's
// facts (the decision, or the delivery of an allowed one).
var decisionEvents = []audit.Event{audit.EventDecided, audit.EventDelivered, audit.EventDeliveryFailed, audit.EventReceived}

// skip is why a rule was not checked.
type skip struct{ status, detail string }

// unchecked returns the rules the engine did not check for the decision
// in e, by number, following its order (agreements.Engine.Decide): a
// dataset that holds no personal data is allowed after rule 2; an unknown
// purpose has no legal basis to check (rule 3); an unknown recipient or
// purpose has no agreement to look up (rule 4); without an agreement or
// legal order in force, or with an unknown dataset, there are no permitted
// categories to minimise by (rule 5); and without recipient, dataset and
// purpose there is no transfer to find a mechanism for (rule 6).
func unchecked(e *audit.Entry, reg *agreements.Registry) map[int]skip {
	has := func(codes ...string) bool {
		return slices.ContainsFunc(e.Reasons, func(r string) bool { return slices.Contains(codes, r) })
	}
	recipient, dataset, purpose := has(agreements.ReasonUnknownRecipient), has(agreements.ReasonUnknownDataset), has(agreements.ReasonUnknownPurpose)
	out := map[int]skip{}
	if !dataset && nonPersonal(e, reg) {
		d := "not checked: dataset " + e.Dataset + " holds no personal data (personal: false), which rule 2 allows with every field and mechanism none"
		for n := 3; n <= 6; n++ {
			out[n] = skip{RuleNotApplied, d}
		}
		return out
	}
	notEvaluated := func(n int, why string) { out[n] = skip{RuleNotEvaluated, "not evaluated: " + why} }
	if purpose {
		notEvaluated(3, "the purpose is unknown (rule 2), so there is no legal basis to check")
	}
	if recipient || purpose {
		notEvaluated(4, "the recipient or the purpose is unknown (rule 2), so there is no agreement to look up")
	}
	switch {
	case dataset:
		notEvaluated(5, "the dataset is unknown (rule 2), so no field has a category to check")
	case recipient || purpose || has(ruleReasons(4)...):
		notEvaluated(5, "no agreement or legal order is in force (rule 4), so no category is permitted to check the fields against")
	}
	if recipient || dataset || purpose {
		notEvaluated(6, "the recipient, dataset or purpose is unknown (rule 2), so there is no transfer to find a mechanism for")
	}
	return out
}

// ruleReasons returns the reason codes rule n gives.
func ruleReasons(n int) []string {
	var out []string
	for r, m := range ruleOf {
		if m == n {
			out = append(out, r)
		}
	}
	return out
}

// nonPersonal reports whether the decision in e was about a dataset that
// holds no personal data: the engine records mechanism none for it (when
// recipient and purpose are known), else the registry says so.
func nonPersonal(e *audit.Entry, reg *agreements.Registry) bool {
	if e.Mechanism == agreements.MechanismNone {
		return true
	}
	if reg == nil || e.Dataset == "" {
		return false
	}
	d, ok := reg.Dataset(e.Dataset)
	return ok && !d.Personal
}

func short(v string) string {
	if len(v) > 19 {
		return v[:19] + "…"
	}
	if v == "" {
		return "an unrecorded version"
	}
	return v
}

func texts(reasons []string) string {
	parts := make([]string, len(reasons))
	for i, r := range reasons {
		parts[i] = ReasonText(r)
	}
	return strings.Join(parts, "; ")
}

func ruleDetail(n int, e *audit.Entry, reg *agreements.Registry, reasons []string) string {
	if len(reasons) > 0 && n == 6 {
		return texts(reasons) + fmt.Sprintf(" (from %s to %s)", orDash(e.Origin), orDash(e.RecipientCountry))
	}
	if len(reasons) > 0 && n != 5 {
		return texts(reasons)
	}
	switch n {
	case 1:
		return "no erasure recorded for the subject at " + e.Time.UTC().Format(time.RFC3339)
	case 2:
		return fmt.Sprintf("recipient %s (%s), dataset %s, purpose %s", e.Recipient, orDash(e.RecipientCountry), e.Dataset, e.Purpose)
	case 3:
		return "legal basis " + orDash(e.LegalBasis)
	case 4:
		if o := e.LegalOrder(); o != "" {
			d := "no agreement needed: legal order " + o + " carries the transfer"
			if lo := findLegalOrder(reg, o); lo != nil {
				d += fmt.Sprintf(" (authority %s, valid until %s)", lo.Authority, lo.ValidUntil.Format(time.DateOnly))
			}
			return d
		}
		if e.AgreementID == "" {
			return "no agreement needed or recorded (a legal order or non-personal data carries the transfer)"
		}
		d := fmt.Sprintf("agreement %s version %d", e.AgreementID, e.AgreementVersion)
		if a := findAgreement(reg, e.AgreementID); a != nil {
			d += fmt.Sprintf(" (%s, %s, valid %s to %s)", a.Kind, a.Status, a.ValidFrom.Format(time.DateOnly), a.ValidUntil.Format(time.DateOnly))
		}
		return d
	case 5:
		var parts []string
		if len(reasons) > 0 {
			parts = append(parts, texts(reasons))
		}
		if len(e.CategoriesSent) > 0 {
			parts = append(parts, "sent: "+strings.Join(e.CategoriesSent, ", "))
		}
		if len(e.FieldsRemoved) > 0 {
			keys := make([]string, 0, len(e.FieldsRemoved))
			for k := range e.FieldsRemoved {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			var rm []string
			for _, k := range keys {
				rm = append(rm, k+" ("+strings.ReplaceAll(e.FieldsRemoved[k], "_", " ")+")")
			}
			parts = append(parts, "removed: "+strings.Join(rm, ", "))
		}
		if len(parts) == 0 {
			return "no field removed"
		}
		return strings.Join(parts, "; ")
	case 6:
		return fmt.Sprintf("from %s to %s: %s", orDash(e.Origin), orDash(e.RecipientCountry), orDash(e.Mechanism))
	}
	return ""
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

// findLegalOrder returns the legal order id of reg, or nil.
func findLegalOrder(reg *agreements.Registry, id string) *agreements.LegalOrder {
	if reg == nil {
		return nil
	}
	if o, ok := reg.LegalOrder(id); ok {
		return &o
	}
	return nil
}

// findAgreement returns the agreement id of reg, or nil.
func findAgreement(reg *agreements.Registry, id string) *agreements.Agreement {
	if reg == nil {
		return nil
	}
	return byID(reg.Agreements(), id, func(a *agreements.Agreement) string { return a.ID })
}

// byID returns the element of list whose idOf is id, or nil.
func byID[T any](list []T, id string, idOf func(*T) string) *T {
	for i := range list {
		if idOf(&list[i]) == id {
			return &list[i]
		}
	}
	return nil
}
