package agreements

import (
	"maps"
	"math"
	"slices"
)

// A registry derived by With shares what it does not change with the one
// it came from. Consents and erasures are the part that grows: a registry
// may hold one consent per customer, and each arrives as a change of its
// own. So neither the subject index nor the content's lists are copied
// whole per change, which would cost every consent as much as all the
// others (a registry of a million subjects took 0.2 s a change):
//
//   - the subject index is a base map, shared and never modified once
//     shared, and a delta of the subjects changed since (subjectMap);
//   - the content's consents and erasures are base lists, likewise shared,
//     and the changes since (pendingChange), which Content replays.
//
// Both are folded into new bases once the changes since outnumber
// foldAt of the base, so a change costs about the square root of the
// registry's subjects, and a look-up one or two map reads.

// foldAt is how many changed subjects, or pending consents, withdrawals and
// erasures, With keeps beside a base of n before folding them into a new
// one: at least 256, else the square root of n.
func foldAt(n int) int { return max(256, int(math.Sqrt(float64(n)))) }

// subjectMap is the subject index: base, never modified once a registry
// holds it, and delta, the entries With replaced or added since base was
// built, looked up first.
type subjectMap struct {
	base, delta map[string]*subjectIndex
}

func (m *subjectMap) get(id string) *subjectIndex {
	if s, ok := m.delta[id]; ok {
		return s
	}
	return m.base[id]
}

// derive returns a map for a registry With builds from m's: the same base
// and a copy of delta, or, once delta has reached foldAt of base, a new
// base holding both and an empty delta.
func (m *subjectMap) derive() subjectMap {
	if len(m.delta) >= foldAt(len(m.base)) {
		base := make(map[string]*subjectIndex, len(m.base)+len(m.delta))
		maps.Copy(base, m.base)
		maps.Copy(base, m.delta)
		return subjectMap{base: base, delta: map[string]*subjectIndex{}}
	}
	delta := make(map[string]*subjectIndex, len(m.delta)+1)
	maps.Copy(delta, m.delta)
	return subjectMap{base: m.base, delta: delta}
}

// pendingChange is the part of a change With took that the content's
// consents and erasures do not hold yet; prev is the change before it
// (nil: the content's lists hold every one before). entries counts the
// consents, withdrawals and erasures of this change and every one before
// it, up to the lists.
type pendingChange struct {
	prev        *pendingChange
	consents    []Consent
	withdrawals []Withdrawal
	erasures    []Erasure
	entries     int
}

// people returns the consents and erasures of r as Content lists them:
// the content's lists with the pending changes applied in order, as With
// once applied each to a copy of the lists (withdrawals first, to the
// consents recorded before them, then the new consents and erasures). The
// lists are new.
func (r *Registry) people() ([]Consent, []Erasure) {
	l := r.lists(nil)
	// Empty lists are nil, as Content gave them before (JSON null).
	if len(l.consents) == 0 {
		l.consents = nil
	}
	if len(l.erasures) == 0 {
		l.erasures = nil
	}
	return l.consents, l.erasures
}

// peopleLists are lists of consents and erasures that take changes as With
// takes them.
type peopleLists struct {
	consents []Consent
	erasures []Erasure
	// named holds the positions of the consents that the withdrawals to
	// come name, by subject and purpose, so that each withdrawal reads only
	// those rather than the whole list.
	named map[consentKey][]int
}

type consentKey struct{ subject, purpose string }

func (l *peopleLists) add(c Consent) {
	k := consentKey{c.Subject, c.Purpose}
	if at, ok := l.named[k]; ok {
		l.named[k] = append(at, len(l.consents))
	}
	l.consents = append(l.consents, c)
}

// apply takes a change's withdrawals, to the consents recorded before
// them, then its consents and erasures.
func (l *peopleLists) apply(withdrawals []Withdrawal, consents []Consent, erasures []Erasure) {
	for _, w := range withdrawals {
		for _, i := range l.named[consentKey{w.Subject, w.Purpose}] {
			withdraw(&l.consents[i], w.At)
		}
	}
	for _, c := range consents {
		l.add(c)
	}
	l.erasures = append(l.erasures, erasures...)
}

// lists returns new lists of r's consents and erasures, its pending
// changes applied, ready to take the changes more too.
func (r *Registry) lists(more []Change) *peopleLists {
	var chain []*pendingChange
	nc, ne := len(r.content.Consents), len(r.content.Erasures)
	for p := r.pending; p != nil; p = p.prev {
		chain = append(chain, p)
		nc += len(p.consents)
		ne += len(p.erasures)
	}
	slices.Reverse(chain)
	l := &peopleLists{named: map[consentKey][]int{}}
	for _, p := range chain {
		for _, w := range p.withdrawals {
			l.named[consentKey{w.Subject, w.Purpose}] = nil
		}
	}
	for k := range more {
		for _, w := range more[k].Withdrawals {
			l.named[consentKey{w.Subject, w.Purpose}] = nil
		}
	}
	l.consents = make([]Consent, 0, nc)
	for _, c := range r.content.Consents {
		l.add(c)
	}
	l.erasures = append(make([]Erasure, 0, ne), r.content.Erasures...)
	for _, p := range chain {
		l.apply(p.withdrawals, p.consents, p.erasures)
	}
	return l
}

// Erasures returns a copy of the registry's erasures, in the order Content
// lists them, without its consents.
func (r *Registry) Erasures() []Erasure {
	var chain []*pendingChange
	n := len(r.content.Erasures)
	for p := r.pending; p != nil; p = p.prev {
		chain = append(chain, p)
		n += len(p.erasures)
	}
	out := append(make([]Erasure, 0, n), r.content.Erasures...)
	for i := len(chain) - 1; i >= 0; i-- {
		out = append(out, chain[i].erasures...)
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// People returns how many consents and erasures the registry holds, as
// Content would list them, without listing them: the measure of its size
// that grows with run-time changes.
func (r *Registry) People() int {
	n := len(r.content.Consents) + len(r.content.Erasures)
	for p := r.pending; p != nil; p = p.prev {
		n += len(p.consents) + len(p.erasures)
	}
	return n
}
