package agreements

import (
	"encoding/json"
	"slices"
	"strings"
	"time"
)

// Outcome is "allow" or "deny".
type Outcome string

// The two outcomes of a decision.
const (
	Allow Outcome = "allow"
	Deny  Outcome = "deny"
)

// Reason codes of a decision (DESIGN section 3), in rule order. Field-level
// codes (FieldCategoryNotPermitted, FieldUnclassified) appear only in
// Fields.Removed.
const (
	ReasonSubjectErased                  = "subject_erased"
	ReasonUnknownRecipient               = "unknown_recipient"
	ReasonUnknownDataset                 = "unknown_dataset"
	ReasonUnknownPurpose                 = "unknown_purpose"
	ReasonNoConsent                      = "no_consent"
	ReasonConsentWithdrawn               = "consent_withdrawn"
	ReasonMinorWithoutParentalConsent    = "minor_without_parental_consent"
	ReasonLegalOrderRequired             = "legal_order_required"
	ReasonAgreementExpired               = "agreement_expired"
	ReasonAgreementNotYetValid           = "agreement_not_yet_valid"
	ReasonAgreementSuspended             = "agreement_suspended"
	ReasonPurposeNotCovered              = "purpose_not_covered"
	ReasonNoAgreement                    = "no_agreement"
	ReasonNoPermittedFields              = "no_permitted_fields"
	ReasonForeignAuthorityRequiresReview = "foreign_authority_requires_review"
	ReasonTIAOverdue                     = "tia_overdue"
	ReasonNoTransferMechanism            = "no_transfer_mechanism"

	FieldCategoryNotPermitted = "category_not_permitted"
	FieldUnclassified         = "unclassified_field"
)

// Mechanism values that are not derived from an entry id.
const (
	MechanismDomestic        = "domestic"
	MechanismNone            = "none"
	MechanismExplicitConsent = "derogation:explicit_consent"
	mechanismAdequacyPrefix  = "adequacy:"
	mechanismSCCPrefix       = "scc:"
	mechanismBCRPrefix       = "bcr:"
)

// AgreementRef names an agreement and its version.
type AgreementRef struct {
	ID      string `json:"id"`
	Version int    `json:"version"`
}

// Fields reports minimisation: Kept lists the kept field paths in order,
// Removed the removed paths with their reason.
type Fields struct {
	Kept    []string `json:"kept"`
	Removed Removed  `json:"removed"`
}

// RemovedField is one removed path and why: FieldCategoryNotPermitted or
// FieldUnclassified.
type RemovedField struct {
	Path   string
	Reason string
}

// Removed lists the removed fields in no particular order; its JSON form is
// an object from path to reason, keys sorted (DESIGN section 3).
type Removed []RemovedField

// Reason returns the reason path was removed, or "" if it was not.
func (r Removed) Reason(path string) string {
	for _, f := range r {
		if f.Path == path {
			return f.Reason
		}
	}
	return ""
}

// MarshalJSON writes the removed fields as a JSON object sorted by path.
// A path listed more than once (a record built in code may give one field
// both nested and with dots; ParseRequest refuses such a record) is written
// once, with the reason that sorts first, so that the object never repeats
// a key.
func (r Removed) MarshalJSON() ([]byte, error) {
	sorted := slices.Clone(r)
	slices.SortFunc(sorted, func(a, b RemovedField) int {
		if c := strings.Compare(a.Path, b.Path); c != 0 {
			return c
		}
		return strings.Compare(a.Reason, b.Reason)
	})
	sorted = slices.CompactFunc(sorted, func(a, b RemovedField) bool { return a.Path == b.Path })
	buf := []byte{'{'}
	for i, f := range sorted {
		if i > 0 {
			buf = append(buf, ',')
		}
		k, err := json.Marshal(f.Path)
		if err != nil {
			return nil, err
		}
		v, err := json.Marshal(f.Reason)
		if err != nil {
			return nil, err
		}
		buf = append(append(append(buf, k...), ':'), v...)
	}
	return append(buf, '}'), nil
}

// Decision is the outcome of one request. The exported JSON fields are the
// decision format of DESIGN section 3; the fields tagged `json:"-"` are the
// facts the broker and the audit log need besides.
type Decision struct {
	RequestID  string
	Decision   Outcome
	Reasons    []string
	LegalBasis LegalBasis // empty when the purpose is unknown
	// Agreement is the agreement the decision rests on (or, for an
	// agreement_* reason, the one that failed); nil when there is none. It
	// is shared with the registry and must not be modified.
	Agreement *AgreementRef
	// Mechanism is the Chapter V mechanism ("domestic", "none",
	// "adequacy:<id>", "scc:<id>", "bcr:<id>", "derogation:explicit_consent"),
	// or empty when none holds.
	Mechanism       string
	Fields          Fields
	RegistryVersion string
	At              time.Time

	// Record is the minimised record that may leave; nil on deny. After
	// Engine.DecideInto its maps belong to the Decision, which empties and
	// reuses them for its next decision.
	Record map[string]any `json:"-"`
	// Categories lists the data categories of the kept fields, in order.
	Categories []string `json:"-"`
	// Origin is the subject's jurisdiction; RecipientCountry the
	// destination; Connector the recipient's connector name.
	Origin           string `json:"-"`
	RecipientCountry string `json:"-"`
	Connector        string `json:"-"`
	// LegalOrder is the id of the legal order the transfer answers, when it
	// rests on one instead of an agreement.
	LegalOrder string `json:"-"`
	// RetentionDays is the matched agreement's retention period (0: none
	// recorded).
	RetentionDays int `json:"-"`

	// buffers is the memory Engine.DecideInto reuses; nil until then.
	buffers *decisionBuffers
}

// Allowed reports whether the decision lets the record go.
func (d *Decision) Allowed() bool { return d.Decision == Allow }

// decisionJSON fixes the order and the null handling of the JSON form.
type decisionJSON struct {
	RequestID       string        `json:"request_id"`
	Decision        Outcome       `json:"decision"`
	Reasons         []string      `json:"reasons"`
	LegalBasis      *LegalBasis   `json:"legal_basis"`
	Agreement       *AgreementRef `json:"agreement"`
	Mechanism       *string       `json:"mechanism"`
	Fields          Fields        `json:"fields"`
	RegistryVersion string        `json:"registry_version"`
	At              string        `json:"at"`
}

// MarshalJSON writes the decision format of DESIGN section 3: reasons and
// kept as arrays (never null), removed as an object, legal_basis, agreement
// and mechanism null when there is none, and at in RFC 3339 UTC (with the
// fraction of a second it has, so that it decides again as it did).
func (d *Decision) MarshalJSON() ([]byte, error) {
	j := decisionJSON{
		RequestID:       d.RequestID,
		Decision:        d.Decision,
		Reasons:         d.Reasons,
		Agreement:       d.Agreement,
		Fields:          d.Fields,
		RegistryVersion: d.RegistryVersion,
		At:              d.At.UTC().Format(time.RFC3339Nano),
	}
	if j.Reasons == nil {
		j.Reasons = []string{}
	}
	if j.Fields.Kept == nil {
		j.Fields.Kept = []string{}
	}
	if d.LegalBasis != "" {
		j.LegalBasis = &d.LegalBasis
	}
	if d.Mechanism != "" {
		j.Mechanism = &d.Mechanism
	}
	return json.Marshal(&j)
}

var (
	_ json.Marshaler = (*Decision)(nil)
	_ json.Marshaler = Removed(nil)
)
