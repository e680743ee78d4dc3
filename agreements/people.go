package agreements

import (
	"cmp"
	"maps"
	"math"
	"slices"
	"time"
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
// built, looked up first; and the withdrawals the changes recorded of its
// subjects. indexPeople builds a new index without withdrawals: a caller
// that keeps them sets them again.
type subjectMap struct {
	base, delta map[string]*subjectIndex
	withdrawals withdrawalMap
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
		return subjectMap{base: base, delta: map[string]*subjectIndex{}, withdrawals: m.withdrawals}
	}
	delta := make(map[string]*subjectIndex, len(m.delta)+1)
	maps.Copy(delta, m.delta)
	return subjectMap{base: m.base, delta: delta, withdrawals: m.withdrawals}
}

// withdrawalMap holds the withdrawals of every change a registry took
// since New or Restore built it, by subject and purpose: their times,
// ascending, without repeats. A withdrawal withdraws, as of its time, every
// matching consent granted by then, whichever of the two was recorded
// first: a consent recorded after it (sent late, dated a few minutes
// ahead, or sent again) is withdrawn by the first of them at or after its
// grant (withdrawn), as one recorded before it was. Content does not list
// them; a registry rebuilt from its content takes them back with
// RestoreWithdrawals. Like the subject index it is a base, never modified
// once shared, and a delta looked up first.
type withdrawalMap struct {
	base, delta map[consentKey][]time.Time
}

func (m withdrawalMap) get(k consentKey) []time.Time {
	if ts, ok := m.delta[k]; ok {
		return ts
	}
	return m.base[k]
}

// with returns m holding ws too; m is unchanged. The delta is copied, or
// folded into a new base once it has reached foldAt of the base.
func (m withdrawalMap) with(ws []Withdrawal) withdrawalMap {
	if len(ws) == 0 {
		return m
	}
	n := withdrawalMap{base: m.base, delta: make(map[consentKey][]time.Time, len(m.delta)+len(ws))}
	if len(m.delta) >= foldAt(len(m.base)) {
		n.base = make(map[consentKey][]time.Time, len(m.base)+len(m.delta))
		maps.Copy(n.base, m.base)
		maps.Copy(n.base, m.delta)
	} else {
		maps.Copy(n.delta, m.delta)
	}
	for _, w := range ws {
		k := consentKey{w.Subject, w.Purpose}
		n.delta[k] = insertTime(n.get(k), w.At)
	}
	return n
}

// insertTime returns ts, ascending, with t added unless it holds that
// instant already; ts itself is not modified.
func insertTime(ts []time.Time, t time.Time) []time.Time {
	i, found := slices.BinarySearchFunc(ts, t, time.Time.Compare)
	if found {
		return ts
	}
	return slices.Insert(slices.Clip(ts), i, t.UTC()) // Clip: a new array
}

// firstAfter returns the first of ts, ascending, at or after t.
func firstAfter(ts []time.Time, t time.Time) (time.Time, bool) {
	i, _ := slices.BinarySearchFunc(ts, t, time.Time.Compare)
	if i == len(ts) {
		return time.Time{}, false
	}
	return ts[i], true
}

// withdrawn withdraws c as the withdrawals of m recorded of its subject
// and purpose withdraw it: as of the first of them at or after its grant.
func (m withdrawalMap) withdrawn(c *Consent) {
	if at, ok := firstAfter(m.get(consentKey{c.Subject, c.Purpose}), c.GrantedAt); ok {
		withdraw(c, at)
	}
}

// list returns the withdrawals of m ordered by subject, purpose and time.
func (m withdrawalMap) list() []Withdrawal {
	keys := slices.Collect(maps.Keys(m.base))
	for k := range m.delta {
		if _, ok := m.base[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b consentKey) int {
		return cmp.Or(cmp.Compare(a.subject, b.subject), cmp.Compare(a.purpose, b.purpose))
	})
	var out []Withdrawal
	for _, k := range keys {
		for _, t := range m.get(k) {
			out = append(out, Withdrawal{Subject: k.subject, Purpose: k.purpose, At: t})
		}
	}
	return out
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
// consents recorded before them, then the new consents and erasures, each
// consent withdrawn by the withdrawals r holds). The lists are new.
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
	// recorded are the withdrawals of the registry the lists are built
	// from, and taken those of the changes taken since: a consent added
	// is withdrawn by them, as by the withdrawals that come after it.
	recorded withdrawalMap
	taken    map[consentKey][]time.Time
}

type consentKey struct{ subject, purpose string }

// keep appends c as it is: a consent of the content's lists, which hold
// the withdrawals recorded before them applied.
func (l *peopleLists) keep(c Consent) {
	k := consentKey{c.Subject, c.Purpose}
	if at, ok := l.named[k]; ok {
		l.named[k] = append(at, len(l.consents))
	}
	l.consents = append(l.consents, c)
}

// add appends c, a consent a change records, withdrawn first by the
// withdrawals recorded before it.
func (l *peopleLists) add(c Consent) {
	l.recorded.withdrawn(&c)
	if at, ok := firstAfter(l.taken[consentKey{c.Subject, c.Purpose}], c.GrantedAt); ok {
		withdraw(&c, at)
	}
	l.keep(c)
}

// apply takes a change's withdrawals, to the consents recorded before
// them, then its consents and erasures.
func (l *peopleLists) apply(withdrawals []Withdrawal, consents []Consent, erasures []Erasure) {
	for _, w := range withdrawals {
		k := consentKey{w.Subject, w.Purpose}
		for _, i := range l.named[k] {
			withdraw(&l.consents[i], w.At)
		}
		if l.taken != nil {
			l.taken[k] = insertTime(l.taken[k], w.At)
		}
	}
	for _, c := range consents {
		l.add(c)
	}
	l.erasures = append(l.erasures, erasures...)
}

// lists returns new lists of r's consents and erasures, its pending
// changes applied, ready to take the changes more too. The withdrawals r
// holds include those of its pending changes, so a pending consent is
// withdrawn by every one of them, before or after it, as With withdrew it.
func (r *Registry) lists(more []Change) *peopleLists {
	var chain []*pendingChange
	nc, ne := len(r.content.Consents), len(r.content.Erasures)
	for p := r.pending; p != nil; p = p.prev {
		chain = append(chain, p)
		nc += len(p.consents)
		ne += len(p.erasures)
	}
	slices.Reverse(chain)
	l := &peopleLists{named: map[consentKey][]int{}, recorded: r.subjects.withdrawals}
	if len(more) > 0 {
		l.taken = map[consentKey][]time.Time{}
	}
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
		l.keep(c)
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
