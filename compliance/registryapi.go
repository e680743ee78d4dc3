package compliance

import (
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/clearance-broker/clearance/agreements"
)

// ExpiryWarningDays is how far ahead agreement and TIA dates warn.
const ExpiryWarningDays = agreements.WarnWithinDays

// Agreement warnings (agreements.Agreement.Warnings).
const (
	WarnExpired        = agreements.WarnExpired
	WarnExpiresSoon    = agreements.WarnExpiresSoon
	WarnNotYetValid    = agreements.WarnNotYetValid
	WarnInactive       = agreements.WarnInactive
	WarnTIAOverdue     = agreements.WarnTIAOverdue
	WarnTIAReviewSoon  = agreements.WarnTIAReviewSoon
	warnDateLayout     = time.DateOnly
	registryStoreNotes = "the registry is the one in force; versions are those decisions were made with, as the audit log records them"
	storedVersionsNote = "stored versions come from the registry store; decisions per version from the audit log"
	noStoreNote        = "no registry store configured: versions are those decisions were made with, as the audit log records them"
)

// AgreementStatus is an agreement with its validity as of now.
type AgreementStatus struct {
	agreements.Agreement
	DaysLeft  int      `json:"days_left"`
	Warnings  []string `json:"warnings"`
	TIAReview string   `json:"tia_review_by,omitempty"`
}

// agreementStatuses lists the registry's agreements with warnings, those
// needing attention first.
func agreementStatuses(reg *agreements.Registry, now time.Time) []AgreementStatus {
	out := []AgreementStatus{}
	for _, a := range reg.Agreements() {
		st := AgreementStatus{Agreement: a, Warnings: a.Warnings(now), DaysLeft: agreements.DaysFrom(now, a.ValidUntil)}
		if a.TIA != nil {
			st.TIAReview = a.TIA.ReviewBy.Format(warnDateLayout)
		}
		out = append(out, st)
	}
	slices.SortStableFunc(out, func(a, b AgreementStatus) int {
		if (len(a.Warnings) > 0) != (len(b.Warnings) > 0) {
			if len(a.Warnings) > 0 {
				return -1
			}
			return 1
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// RegistryView is the registry in force. Content is an agreements.Content
// for officers and admins, a RedactedContent for everyone else.
type RegistryView struct {
	Version string `json:"version"`
	Content any    `json:"content"`
	Note    string `json:"note"`
}

// RedactedContent is the registry as a viewer sees it: the subjects of
// consents, legal orders and erasures are given as their HMACs (as the
// audit log keeps them; none without the subject key), never in clear. It
// names each section it shows, so that a section agreements.Content gains
// is not shown to viewers until it is added here.
type RedactedContent struct {
	Zones       []agreements.Zone      `json:"zones"`
	Adequacy    []agreements.Adequacy  `json:"adequacy"`
	Parties     []agreements.Party     `json:"parties"`
	Datasets    []agreements.Dataset   `json:"datasets"`
	Purposes    []agreements.Purpose   `json:"purposes"`
	Agreements  []agreements.Agreement `json:"agreements"`
	Consents    []RedactedConsent      `json:"consents"`
	LegalOrders []LegalOrderView       `json:"legal_orders"`
	Erasures    []ErasureView          `json:"erasures"`
}

// RedactedConsent is one consent by its subject's HMAC.
type RedactedConsent struct {
	SubjectHMAC string `json:"subject_hmac,omitempty"`
	ConsentView
}

// redactedContent returns c with every subject id replaced by its HMAC.
func (s *Server) redactedContent(c agreements.Content) RedactedContent {
	out := RedactedContent{Zones: c.Zones, Adequacy: c.Adequacy, Parties: c.Parties, Datasets: c.Datasets,
		Purposes: c.Purposes, Agreements: c.Agreements, Consents: make([]RedactedConsent, 0, len(c.Consents)),
		LegalOrders: make([]LegalOrderView, 0, len(c.LegalOrders)), Erasures: make([]ErasureView, 0, len(c.Erasures))}
	for _, x := range c.Consents {
		v := ConsentView{Purpose: x.Purpose, Recipients: x.Recipients, GrantedAt: x.GrantedAt.UTC(), WithdrawnAt: x.WithdrawnAt,
			Parental: x.Parental, TransferConsent: x.TransferConsent, NoticeVersion: x.NoticeVersion}
		if v.Recipients == nil {
			v.Recipients = []string{}
		}
		out.Consents = append(out.Consents, RedactedConsent{SubjectHMAC: s.subjectHMAC(x.Subject), ConsentView: v})
	}
	for _, o := range c.LegalOrders {
		out.LegalOrders = append(out.LegalOrders, s.legalOrderView(o, false))
	}
	for _, e := range c.Erasures {
		out.Erasures = append(out.Erasures, ErasureView{SubjectHMAC: s.subjectHMAC(e.Subject), At: e.At.UTC()})
	}
	return out
}

// getRegistry answers the registry in force: in full to officers and
// admins, to viewers without a subject id in clear (RedactedContent).
func (s *Server) getRegistry(w http.ResponseWriter, r *http.Request) {
	if err := onlyParams(r.URL.Query()); err != nil {
		s.fail(w, err)
		return
	}
	reg := s.opts.Registry.Registry()
	var content any = reg.Content()
	if p := principalOf(r.Context()); p == nil || p.Role < RoleOfficer {
		content = s.redactedContent(reg.Content())
	}
	writeJSON(w, http.StatusOK, RegistryView{Version: reg.Version(), Content: content, Note: registryStoreNotes})
}

func (s *Server) getRegistryVersions(w http.ResponseWriter, r *http.Request) {
	if err := onlyParams(r.URL.Query()); err != nil {
		s.fail(w, err)
		return
	}
	vs, err := s.registryVersions(r.Context())
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"current": s.opts.Registry.Registry().Version(), "versions": vs, "note": registryStoreNotes,
	})
}

func (s *Server) getAgreements(w http.ResponseWriter, r *http.Request) {
	if err := onlyParams(r.URL.Query()); err != nil {
		s.fail(w, err)
		return
	}
	reg := s.opts.Registry.Registry()
	writeJSON(w, http.StatusOK, map[string]any{
		"registry_version": reg.Version(), "agreements": agreementStatuses(reg, s.opts.Now()),
	})
}

// AgreementHistory is one agreement: its current terms and the versions
// decisions rested on.
type AgreementHistory struct {
	ID      string           `json:"id"`
	Current *AgreementStatus `json:"current"`
	// Stored lists every version the registry store holds, oldest first
	// (empty without a store).
	Stored []agreements.Agreement `json:"stored_versions"`
	// Versions are the versions decisions rested on, per registry version.
	Versions []VersionSeen `json:"versions"`
	Note     string        `json:"note"`
}

func (s *Server) agreementHistory(r *http.Request, id string) (*AgreementHistory, error) {
	if !tokenRE.MatchString(id) {
		return nil, badParam("id", "want an agreement id")
	}
	h := &AgreementHistory{ID: id, Note: noStoreNote, Stored: []agreements.Agreement{}}
	if s.opts.Versions != nil {
		stored, err := s.opts.Versions.AgreementVersions(r.Context(), id)
		if err != nil {
			return nil, err
		}
		h.Stored = append(h.Stored, stored...)
		h.Note = storedVersionsNote
	}
	for _, st := range agreementStatuses(s.opts.Registry.Registry(), s.opts.Now()) {
		if st.ID == id {
			h.Current = &st
		}
	}
	vs, err := s.agreementVersions(r.Context(), id)
	if err != nil {
		return nil, err
	}
	h.Versions = vs
	return h, nil
}

func (s *Server) getAgreementHistory(w http.ResponseWriter, r *http.Request) {
	if err := onlyParams(r.URL.Query()); err != nil {
		s.fail(w, err)
		return
	}
	h, err := s.agreementHistory(r, r.PathValue("id"))
	if err != nil {
		s.fail(w, err)
		return
	}
	if h.Current == nil && len(h.Versions) == 0 && len(h.Stored) == 0 {
		writeJSON(w, http.StatusNotFound, apiError{Error: "not_found", Message: "no agreement " + h.ID + " in the registry or the audit log"})
		return
	}
	writeJSON(w, http.StatusOK, h)
}
