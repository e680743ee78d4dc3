package compliance

import (
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/clearance-broker/clearance/agreements"
)

// ExpiryWarningDays is how far ahead agreement and TIA dates warn.
const ExpiryWarningDays = 30

// Agreement warnings.
const (
	WarnExpired        = "expired"
	WarnExpiresSoon    = "expires_within_30_days"
	WarnNotYetValid    = "not_yet_valid"
	WarnInactive       = "not_active"
	WarnTIAOverdue     = "tia_overdue"
	WarnTIAReviewSoon  = "tia_review_within_30_days"
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
	day := now.UTC().Truncate(24 * time.Hour)
	soon := day.AddDate(0, 0, ExpiryWarningDays)
	out := []AgreementStatus{}
	for _, a := range reg.Content().Agreements {
		st := AgreementStatus{Agreement: a, Warnings: []string{}}
		st.DaysLeft = int(a.ValidUntil.Sub(day).Hours() / 24)
		switch {
		case a.ValidUntil.Before(day):
			st.Warnings = append(st.Warnings, WarnExpired)
		case a.ValidUntil.Before(soon):
			st.Warnings = append(st.Warnings, WarnExpiresSoon)
		}
		if a.ValidFrom.After(day) {
			st.Warnings = append(st.Warnings, WarnNotYetValid)
		}
		if a.Status != agreements.StatusActive {
			st.Warnings = append(st.Warnings, WarnInactive)
		}
		if a.TIA != nil {
			st.TIAReview = a.TIA.ReviewBy.Format(warnDateLayout)
			switch {
			case a.TIA.ReviewBy.Before(day):
				st.Warnings = append(st.Warnings, WarnTIAOverdue)
			case a.TIA.ReviewBy.Before(soon):
				st.Warnings = append(st.Warnings, WarnTIAReviewSoon)
			}
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

// RegistryView is the registry in force.
type RegistryView struct {
	Version string             `json:"version"`
	Content agreements.Content `json:"content"`
	Note    string             `json:"note"`
}

func (s *Server) getRegistry(w http.ResponseWriter, r *http.Request) {
	if err := onlyParams(r.URL.Query()); err != nil {
		s.fail(w, err)
		return
	}
	reg := s.opts.Registry.Registry()
	writeJSON(w, http.StatusOK, RegistryView{Version: reg.Version(), Content: reg.Content(), Note: registryStoreNotes})
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
