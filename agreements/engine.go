package agreements

import (
	"slices"
	"sync/atomic"
	"time"
)

// Engine decides transfer requests against a Registry. It is a pure
// function of the request, the time and the registry: it does no I/O and
// never blocks. An Engine is safe for concurrent use; Update swaps the
// registry atomically, and each decision uses exactly one registry version.
type Engine struct {
	reg atomic.Pointer[Registry]
}

// NewEngine returns an Engine deciding against r.
func NewEngine(r *Registry) *Engine {
	e := &Engine{}
	e.reg.Store(r)
	return e
}

// Registry returns the registry decisions are currently made against.
func (e *Engine) Registry() *Registry { return e.reg.Load() }

// Update makes r the registry of every later decision.
func (e *Engine) Update(r *Registry) { e.reg.Store(r) }

// Decide applies the rules of DESIGN section 3 to req at the instant at and
// returns the decision with every failing reason in rule order. Anything the
// registry does not know is a denial. The request must come from
// ParseRequest (or be equally complete and valid: a record that gives a
// field twice, nested and with dots, which ParseRequest refuses, would
// have both copies kept); Decide does not modify it.
func (e *Engine) Decide(req *Request, at time.Time) *Decision {
	d := &Decision{}
	e.decide(d, nil, req, at)
	return d
}

// DecideInto is Decide writing the decision into d instead of a new
// Decision, reusing the memory d holds from earlier decisions (its reasons,
// field lists and the maps of its minimised record): a caller that decides
// one request after another with the same Decision allocates nothing once
// d has grown to the size of its records (d keeps the memory of the largest
// it has decided). The result is the one Decide returns; nothing of d's
// previous decision is carried over.
//
// Everything d held before is overwritten or emptied, including the maps
// of its previous Record and the backing arrays of its previous Reasons,
// Fields and Categories: a caller must be done with the previous decision,
// and must not keep any of its slices or maps, before it reuses d. A
// Decision is not safe for concurrent use; use one per goroutine, and do
// not reuse two copies of one Decision, which share its memory. The zero
// Decision is ready for use, and so is one returned by Decide (whose slices
// and maps DecideInto leaves alone: it reuses only memory it allocated).
func (e *Engine) DecideInto(d *Decision, req *Request, at time.Time) {
	b := d.buffers
	if b == nil {
		b = &decisionBuffers{}
	}
	b.release()
	*d = Decision{buffers: b}
	e.decide(d, b, req, at)
}

// decide fills the zero decision d; b, when not nil, provides the memory.
func (e *Engine) decide(d *Decision, b *decisionBuffers, req *Request, at time.Time) {
	r := e.reg.Load()
	at = at.UTC()
	d.RequestID, d.RegistryVersion, d.At, d.Origin = req.ID, r.version, at, req.Subject.Jurisdiction
	if b != nil {
		d.Reasons = b.reasons[:0]
	}

	// Rule 1: erasure.
	subject := r.subject(req.Subject.ID)
	if subject.erased(at) {
		d.Reasons = append(d.Reasons, ReasonSubjectErased)
	}

	// Rule 2: everything named must be known.
	party := r.parties[req.Recipient]
	if party == nil {
		d.Reasons = append(d.Reasons, ReasonUnknownRecipient)
	} else {
		d.RecipientCountry, d.Connector = party.p.Country, party.p.Connector
	}
	ds := r.datasets[req.Dataset]
	if ds == nil {
		d.Reasons = append(d.Reasons, ReasonUnknownDataset)
	}
	purpose := r.purposes[req.Purpose]
	if purpose == nil {
		d.Reasons = append(d.Reasons, ReasonUnknownPurpose)
	} else {
		d.LegalBasis = purpose.LegalBasis
	}
	if ds != nil && !ds.ds.Personal {
		finish(d, b, nonPersonal(d, b, req.Record))
		return
	}

	// Rule 3: legal basis.
	var order *orderIndex
	if purpose != nil {
		switch purpose.LegalBasis {
		case BasisConsent:
			if reason := subject.consentReason(req, at); reason != "" {
				d.Reasons = append(d.Reasons, reason)
			}
		case BasisLegalObligation:
			if order = r.validOrder(req, at); order == nil {
				d.Reasons = append(d.Reasons, ReasonLegalOrderRequired)
			}
		}
	}

	// Rule 4: the disclosure agreement, unless a legal order carries it.
	var sc *scope
	switch {
	case order != nil:
		sc = &order.scope
		d.LegalOrder = order.o.ID
	case party != nil && purpose != nil:
		ai, cand, reason := party.agreementFor(purpose.ID, at)
		if ai != nil {
			sc = &ai.scope
			d.RetentionDays = ai.a.RetentionDays
			cand = ai
		} else {
			d.Reasons = append(d.Reasons, reason)
		}
		if cand != nil {
			d.Agreement = &cand.ref
		}
	}

	// Rule 5: minimisation.
	m := r.minimise(ds, sc, req.Record, b)
	d.Fields = Fields{Kept: m.kept, Removed: m.removed}
	if sc != nil && ds != nil && len(m.kept) == 0 {
		d.Reasons = append(d.Reasons, ReasonNoPermittedFields)
	}

	// Rule 6: the Chapter V transfer mechanism.
	if party != nil && purpose != nil && ds != nil {
		mech, reason := r.mechanism(req, party, subject, at)
		d.Mechanism = mech
		if reason != "" {
			d.Reasons = append(d.Reasons, reason)
		}
	}
	finish(d, b, m)
}

// finish sets the outcome; only an allowed decision carries a record. With
// buffers b, it keeps the slices d grew for the next decision, and a denial
// empties the record maps at once.
func finish(d *Decision, b *decisionBuffers, m minimised) {
	if b != nil {
		b.reasons = d.Reasons[:0]
		if len(d.Reasons) == 0 {
			d.Reasons = nil
		}
		if cap(m.removed) > cap(b.removed) {
			b.removed = m.removed[:0]
		}
		if len(m.removed) == 0 {
			d.Fields.Removed = nil
		}
	}
	if len(d.Reasons) > 0 {
		d.Decision = Deny
		if b != nil {
			b.release()
		}
		return
	}
	d.Decision = Allow
	d.Record = m.record
	d.Categories = m.categories
}

// nonPersonal keeps every field of a record of a non-personal dataset
// (policy 1.3); the mechanism is "none" once recipient and purpose are known.
// Kept lists the record's members by name as removed fields are named: a
// name that is not plain is listed as WithheldName, once.
func nonPersonal(d *Decision, b *decisionBuffers, rec map[string]any) minimised {
	var m minimised
	if b == nil {
		m.record, m.kept = make(map[string]any, len(rec)), make([]string, 0, len(rec))
	} else {
		m.record, m.kept = b.newMap(len(rec)), b.list(len(rec))
	}
	withheld := false
	for k, v := range rec {
		m.record[k] = v
		switch {
		case plainName(k):
			m.kept = append(m.kept, k)
		case !withheld:
			withheld = true
			m.kept = append(m.kept, WithheldName)
		}
	}
	slices.Sort(m.kept)
	d.Fields = Fields{Kept: m.kept}
	if d.RecipientCountry != "" && d.LegalBasis != "" {
		d.Mechanism = MechanismNone
	}
	return m
}

// erased reports whether the subject has an erasure in effect at at.
func (s *subjectIndex) erased(at time.Time) bool {
	for _, e := range s.erasures {
		if !e.At.After(at) {
			return true
		}
	}
	return false
}

// consentReason checks rule 3 for a consent purpose and returns the failing
// reason, or "" when a valid consent covers the recipient.
func (s *subjectIndex) consentReason(req *Request, at time.Time) string {
	withdrawn, noParental := false, false
	for _, c := range s.consents {
		if c.Purpose != req.Purpose || !c.coversAt(req.Recipient, at) {
			continue
		}
		switch {
		case c.WithdrawnAt != nil && !c.WithdrawnAt.After(at):
			withdrawn = true
		case req.Subject.Minor && !c.Parental:
			noParental = true
		default:
			return ""
		}
	}
	switch {
	case noParental:
		return ReasonMinorWithoutParentalConsent
	case withdrawn:
		return ReasonConsentWithdrawn
	}
	return ReasonNoConsent
}

// coversAt reports whether the consent was granted by at and names the
// recipient (or any recipient).
func (c *Consent) coversAt(recipient string, at time.Time) bool {
	if c.GrantedAt.After(at) {
		return false
	}
	return len(c.Recipients) == 0 || slices.Contains(c.Recipients, recipient)
}

// validOrder returns the legal order named by the request when its authority
// is the recipient, it names the subject and it is valid at at.
func (r *Registry) validOrder(req *Request, at time.Time) *orderIndex {
	if req.LegalOrder == "" {
		return nil
	}
	o := r.orders[req.LegalOrder]
	if o == nil || o.o.Authority != req.Recipient || !o.subjects[req.Subject.ID] || !at.Before(o.end) {
		return nil
	}
	return o
}

// failureRank orders the agreement reasons from most to least specific.
var failureRank = map[string]int{ReasonAgreementExpired: 0, ReasonAgreementNotYetValid: 1, ReasonAgreementSuspended: 2}

// agreementFor applies rule 4: it returns the agreement in force for the
// party and purpose, or the candidate and reason that explain why there is none.
func (pi *partyIndex) agreementFor(purpose string, at time.Time) (match, cand *agreementIndex, reason string) {
	for _, ai := range pi.forPurpose(purpose) {
		state := ai.state(at)
		if state == "" {
			if match == nil || preferred(ai.a, match.a) {
				match = ai
			}
			continue
		}
		if cand == nil || failureRank[state] < failureRank[reason] {
			cand, reason = ai, state
		}
	}
	switch {
	case match != nil:
		return match, nil, ""
	case cand != nil:
		return nil, cand, reason
	case len(pi.byPurpose) > 0:
		return nil, nil, ReasonPurposeNotCovered
	}
	return nil, nil, ReasonNoAgreement
}

// preferred reports whether a is a better disclosure agreement than b: a
// contract about the disclosure itself (dpa, data_sharing, intra_group)
// before a transfer mechanism (scc, bcr), then the higher version, then the
// smaller id.
func preferred(a, b *Agreement) bool {
	am, bm := a.Kind == KindSCC || a.Kind == KindBCR, b.Kind == KindSCC || b.Kind == KindBCR
	if am != bm {
		return !am
	}
	if a.Version != b.Version {
		return a.Version > b.Version
	}
	return a.ID < b.ID
}
