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

// Rule status values of an Explanation.
const (
	RulePassed     = "passed"
	RuleFailed     = "failed"
	RuleNotApplied = "not_applicable"
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
// reg where the registry still holds them. Entries that are not decisions
// get the rules that their reasons name.
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
	if e.Event == audit.EventRejected || len(other) > 0 && e.Decision == "deny" && len(byRule) == 0 {
		for i := range x.Rules {
			x.Rules[i].Status = RuleNotApplied
			x.Rules[i].Detail = "the request was not decided: " + strings.Join(other, "; ")
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

func findAgreement(reg *agreements.Registry, id string) *agreements.Agreement {
	if reg == nil {
		return nil
	}
	c := reg.Content()
	i := slices.IndexFunc(c.Agreements, func(a agreements.Agreement) bool { return a.ID == id })
	if i < 0 {
		return nil
	}
	return &c.Agreements[i]
}
