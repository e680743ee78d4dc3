package agreements

import (
	"encoding/json"
	"time"
)

// Role is what a party is to the data it receives.
type Role string

// The roles a party can have.
const (
	RoleProcessor  Role = "processor"
	RoleSubsidiary Role = "subsidiary"
	RoleController Role = "controller"
	RoleAuthority  Role = "authority"
)

// LegalBasis is the Art. 6 GDPR basis a purpose rests on.
type LegalBasis string

// The legal bases of Art. 6(1) GDPR.
const (
	BasisConsent             LegalBasis = "consent"
	BasisContract            LegalBasis = "contract"
	BasisLegalObligation     LegalBasis = "legal_obligation"
	BasisVitalInterests      LegalBasis = "vital_interests"
	BasisPublicTask          LegalBasis = "public_task"
	BasisLegitimateInterests LegalBasis = "legitimate_interests"
)

// Kind is the kind of an agreement.
type Kind string

// The kinds of agreement. KindSCC and KindBCR are also Chapter V transfer
// mechanisms; all kinds can carry a disclosure (rule 4).
const (
	KindDPA         Kind = "dpa"
	KindDataSharing Kind = "data_sharing"
	KindIntraGroup  Kind = "intra_group"
	KindSCC         Kind = "scc"
	KindBCR         Kind = "bcr"
)

// Status is the lifecycle state of an agreement. Only StatusActive carries
// transfers.
type Status string

// The agreement states.
const (
	StatusDraft      Status = "draft"
	StatusActive     Status = "active"
	StatusSuspended  Status = "suspended"
	StatusTerminated Status = "terminated"
)

// Source is where an entry was defined: the file, the line of the entry, and
// the line of each of its keys. Entries built in code have a zero Source.
type Source struct {
	File string
	Line int
	path string
	keys map[string]int
	bad  map[string]bool
}

// broken reports whether key was present but could not be decoded; such a
// key has been reported already and is not checked again.
func (s Source) broken(key string) bool { return s.bad[key] }

// line returns the line of key within the entry, or the entry's own line.
func (s Source) line(key string) int {
	if l, ok := s.keys[key]; ok {
		return l
	}
	return s.Line
}

// Zone is a named group of countries, such as the EEA.
type Zone struct {
	ID        string   `json:"id"`
	Countries []string `json:"countries"`
	Src       Source   `json:"-"`
}

// Adequacy is an Art. 45 adequacy decision: transfers From a zone or country
// To the listed zones or countries need no further mechanism. When Requires is
// "dpf_certified" the decision holds only for parties certified under the
// EU-US Data Privacy Framework.
type Adequacy struct {
	ID        string   `json:"id"`
	From      []string `json:"from"`
	To        []string `json:"to"`
	Requires  string   `json:"requires,omitempty"`
	Reference string   `json:"reference,omitempty"`
	Src       Source   `json:"-"`
}

// RequiresDPF is the only Adequacy.Requires value.
const RequiresDPF = "dpf_certified"

// Party is a recipient of data. PublicKey is the raw JSON of the JWK that
// payloads to the party are encrypted to; it is empty for parties that are
// not reached over a webhook.
type Party struct {
	ID           string          `json:"id"`
	Name         string          `json:"name"`
	Role         Role            `json:"role"`
	Country      string          `json:"country"`
	DPFCertified bool            `json:"dpf_certified"`
	Connector    string          `json:"connector"`
	PublicKey    json.RawMessage `json:"public_key,omitempty"`
	Src          Source          `json:"-"`
}

// Dataset is what a producer sends, field by field. Fields maps a dotted
// JSON path of the record to a data category (lower-case ASCII, see
// categoryRule); "special" and the categories starting with "special." are
// Art. 9 special categories. A dataset with Personal false holds no
// personal data (policy 1.3).
type Dataset struct {
	ID       string            `json:"id"`
	Personal bool              `json:"personal"`
	Fields   map[string]string `json:"fields"`
	Src      Source            `json:"-"`
}

// Purpose is a purpose of processing and its Art. 6 legal basis.
type Purpose struct {
	ID         string     `json:"id"`
	LegalBasis LegalBasis `json:"legal_basis"`
	Src        Source     `json:"-"`
}

// TIA is the transfer impact assessment of an SCC or BCR agreement.
type TIA struct {
	Reference string    `json:"reference"`
	ReviewBy  time.Time `json:"review_by"`
}

// Agreement is a contract that lets data flow to its parties for its purposes
// and categories between ValidFrom and ValidUntil (both whole days, UTC,
// inclusive). Destinations (countries, zones expanded) and TIA apply to SCC
// and BCR agreements; Module to SCCs only.
type Agreement struct {
	ID             string    `json:"id"`
	Version        int       `json:"version"`
	Kind           Kind      `json:"kind"`
	Module         string    `json:"module,omitempty"`
	Parties        []string  `json:"parties"`
	Destinations   []string  `json:"destinations,omitempty"`
	Purposes       []string  `json:"purposes"`
	Categories     []string  `json:"categories"`
	ValidFrom      time.Time `json:"valid_from"`
	ValidUntil     time.Time `json:"valid_until"`
	Status         Status    `json:"status"`
	TIA            *TIA      `json:"tia,omitempty"`
	RetentionDays  int       `json:"retention_days,omitempty"`
	DocumentSHA256 string    `json:"document_sha256,omitempty"`
	Src            Source    `json:"-"`
}

// Consent is a data subject's consent to a purpose, for the listed
// recipients or, when Recipients is empty, for any recipient. Parental marks
// a parent's authorisation (Art. 8); TransferConsent an explicit consent to
// a transfer abroad after a risk notice (Art. 49(1)(a)).
type Consent struct {
	Subject         string     `json:"subject"`
	Purpose         string     `json:"purpose"`
	Recipients      []string   `json:"recipients,omitempty"`
	GrantedAt       time.Time  `json:"granted_at"`
	WithdrawnAt     *time.Time `json:"withdrawn_at,omitempty"`
	Parental        bool       `json:"parental"`
	TransferConsent bool       `json:"transfer_consent"`
	NoticeVersion   string     `json:"notice_version,omitempty"`
	Src             Source     `json:"-"`
}

// LegalOrder is a disclosure required by law (policy 3(iii)): Authority may
// receive the Categories of the Subjects until ValidUntil (a whole day, UTC,
// inclusive).
type LegalOrder struct {
	ID         string    `json:"id"`
	Authority  string    `json:"authority"`
	Subjects   []string  `json:"subjects"`
	Categories []string  `json:"categories"`
	ValidUntil time.Time `json:"valid_until"`
	Src        Source    `json:"-"`
}

// Erasure records that a subject's data must no longer flow from At on
// (Art. 17 and 18).
type Erasure struct {
	Subject string    `json:"subject"`
	At      time.Time `json:"at"`
	Src     Source    `json:"-"`
}

// Content is everything a registry holds, as loaded from YAML or built in
// code. New validates it and builds a Registry from it.
type Content struct {
	Zones       []Zone       `json:"zones"`
	Adequacy    []Adequacy   `json:"adequacy"`
	Parties     []Party      `json:"parties"`
	Datasets    []Dataset    `json:"datasets"`
	Purposes    []Purpose    `json:"purposes"`
	Agreements  []Agreement  `json:"agreements"`
	Consents    []Consent    `json:"consents"`
	LegalOrders []LegalOrder `json:"legal_orders"`
	Erasures    []Erasure    `json:"erasures"`
}

// endOfDay returns the first instant after the whole UTC day d.
func endOfDay(d time.Time) time.Time { return d.AddDate(0, 0, 1) }
