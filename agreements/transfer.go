package agreements

import "time"

// mechanism applies rule 6 (GDPR Chapter V) and returns the mechanism that
// holds, or the reason none does. The origin is the subject's jurisdiction,
// the destination the recipient's country.
func (r *Registry) mechanism(req *Request, pi *partyIndex, subject *subjectIndex, at time.Time) (string, string) {
	party := pi.p
	origin, dest := countryIndex(req.Subject.Jurisdiction), countryIndex(party.Country)
	if origin < 0 || dest < 0 {
		return "", ReasonNoTransferMechanism
	}
	if origin == dest || r.zoneMask[origin]&r.zoneMask[dest] != 0 {
		return MechanismDomestic, ""
	}
	// Art. 48: a foreign authority's request is never served automatically,
	// whatever mechanism might otherwise hold.
	if party.Role == RoleAuthority {
		return "", ReasonForeignAuthorityRequiresReview
	}
	for _, ad := range r.adequacy[pairKey(origin, dest)] {
		if ad.a.Requires == RequiresDPF && !party.DPFCertified {
			continue
		}
		return ad.mechanism, ""
	}
	tiaOverdue := false
	for _, ai := range pi.forPurpose(req.Purpose) {
		if ai.mechanism == "" || !ai.dest.has(dest) || ai.state(at) != "" {
			continue
		}
		if ai.a.TIA != nil && !at.Before(ai.tiaEnd) {
			tiaOverdue = true
			continue
		}
		return ai.mechanism, ""
	}
	if subject.transferConsent(req, at) {
		return MechanismExplicitConsent, ""
	}
	if tiaOverdue {
		return "", ReasonTIAOverdue
	}
	return "", ReasonNoTransferMechanism
}

// transferConsent reports whether an unwithdrawn explicit consent to the
// transfer (Art. 49(1)(a)) covers subject, purpose and recipient; a minor's
// needs a parent's authorisation.
func (s *subjectIndex) transferConsent(req *Request, at time.Time) bool {
	for _, c := range s.consents {
		if !c.TransferConsent || c.Purpose != req.Purpose || !c.coversAt(req.Recipient, at) {
			continue
		}
		if c.WithdrawnAt != nil && !c.WithdrawnAt.After(at) {
			continue
		}
		if req.Subject.Minor && !c.Parental {
			continue
		}
		return true
	}
	return false
}
