package agreements

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
	"unicode/utf8"
)

// Change is a live update of a registry: consents granted or withdrawn,
// erasures, legal orders and agreement suspensions that arrive at run time
// (over the API or NATS) rather than from the registry files.
type Change struct {
	Consents    []Consent    `json:"consents,omitempty"`
	Withdrawals []Withdrawal `json:"withdrawals,omitempty"`
	Erasures    []Erasure    `json:"erasures,omitempty"`
	LegalOrders []LegalOrder `json:"legal_orders,omitempty"`
	// Suspend lists ids of agreements to set to StatusSuspended.
	Suspend []string `json:"suspend,omitempty"`
}

// Withdrawal withdraws, as of At, every consent of Subject for Purpose that
// was granted by At and is not withdrawn by then: those recorded before it
// and those recorded after it alike (a consent sent late, one dated a few
// minutes ahead, the same consent sent again), so that what a registry
// holds does not depend on the order in which they arrived. A withdrawal
// that finds no such consent is kept all the same, for the consents that
// come after it.
type Withdrawal struct {
	Subject string    `json:"subject"`
	Purpose string    `json:"purpose"`
	At      time.Time `json:"at"`
}

// With returns a new Registry: r with ch applied. r itself is unchanged and
// decisions against it go on unaffected. The new entries are validated
// against r (known purposes, parties, categories; authorities). The new
// registry shares with r what ch does not touch, and the subject index and
// the lists of consents and erasures are shared too, with the changes kept
// beside them until they are many (people.go): the cost grows with the
// size of ch and the square root of the registry's subjects, not with a
// reload. The new version is the SHA-256 of r's version and the canonical
// JSON of ch: the chain of versions is itself a content hash.
//
// The registry keeps every withdrawal ch and the changes before it
// recorded (Withdrawals): a consent ch records is withdrawn by the first
// of them at or after its grant, as one recorded before them was.
func (r *Registry) With(ch Change) (*Registry, error) {
	if err := r.checkChange(&ch); err != nil {
		return nil, err
	}
	n := *r // shares every index; the ones changed below are copied first

	if people := len(ch.Consents) + len(ch.Withdrawals) + len(ch.Erasures); people > 0 {
		n.subjects = r.subjects.derive()
		n.subjects.withdrawals = r.subjects.withdrawals.with(ch.Withdrawals)
		// Copies: the caller's Change may be used again.
		p := &pendingChange{prev: r.pending, consents: slices.Clone(ch.Consents), withdrawals: slices.Clone(ch.Withdrawals),
			erasures: slices.Clone(ch.Erasures), entries: people}
		if r.pending != nil {
			p.entries += r.pending.entries
		}
		n.pending = p
		if p.entries >= foldAt(len(r.content.Consents)+len(r.content.Erasures)) {
			n.content.Consents, n.content.Erasures = n.people()
			n.pending = nil
		}
	}
	copied := map[string]*subjectIndex{}
	subject := func(id string) *subjectIndex {
		if s := copied[id]; s != nil {
			return s
		}
		s := &subjectIndex{}
		if old := r.subjects.get(id); old != nil {
			s.erasures = slices.Clone(old.erasures)
			s.consents = slices.Clone(old.consents)
		}
		copied[id], n.subjects.delta[id] = s, s
		return s
	}
	for _, w := range ch.Withdrawals {
		s := subject(w.Subject)
		for i, c := range s.consents {
			if c.Purpose != w.Purpose {
				continue
			}
			if cp := *c; withdraw(&cp, w.At) {
				s.consents[i] = &cp
			}
		}
	}
	for i := range ch.Consents {
		c := ch.Consents[i]
		n.subjects.withdrawals.withdrawn(&c) // ch's own withdrawals included
		s := subject(c.Subject)
		s.consents = append(s.consents, &c)
	}
	for i := range ch.Erasures {
		e := ch.Erasures[i]
		s := subject(e.Subject)
		s.erasures = append(s.erasures, &e)
	}
	if len(ch.LegalOrders) > 0 {
		n.content.LegalOrders = slices.Clone(r.content.LegalOrders)
		n.orders = maps.Clone(r.orders)
		for i := range ch.LegalOrders {
			o := ch.LegalOrders[i]
			n.content.LegalOrders = append(n.content.LegalOrders, o)
			n.orders[o.ID] = n.indexOrder(&o)
		}
	}
	if len(ch.Suspend) > 0 {
		n.suspend(ch.Suspend)
	}
	sum, err := changeHash(r.version, &ch)
	if err != nil {
		return nil, err
	}
	n.version = "sha256:" + sum
	return &n, nil
}

// WithEach applies chs in order as With applied to each in turn would,
// leaving out every change With refuses, and returns the registry and how
// many changes it took: the same registry, version included, as the loop.
// It is the loop made cheap for many changes (a registry applied anew
// takes every run-time change made so far): With keeps a change beside
// the lists of consents and erasures and folds them in once they are many,
// so a long loop folds the whole registry every square root of its
// subjects; WithEach applies a run of changes that hold only consents,
// withdrawals and erasures to one copy of the lists, each change checked
// as With checks it and the version chained change by change as With
// chains it, and indexes the subjects once. A short run, under what With
// keeps before a fold, goes through With.
func (r *Registry) WithEach(chs []Change) (*Registry, int) {
	r, versions := r.WithEachVersions(chs)
	taken := 0
	for _, v := range versions {
		if v != "" {
			taken++
		}
	}
	return r, taken
}

// WithEachVersions is WithEach that also returns the version each change
// gave the registry, "" for a change it left out: a store replaying its
// changes checks the versions it recorded against them without hashing
// each change a second time.
func (r *Registry) WithEachVersions(chs []Change) (*Registry, []string) {
	versions := make([]string, len(chs))
	for i := 0; i < len(chs); {
		j, entries := i, 0
		for j < len(chs) && peopleOnly(&chs[j]) {
			entries += len(chs[j].Consents) + len(chs[j].Withdrawals) + len(chs[j].Erasures)
			j++
		}
		if j-i > 1 && entries >= foldAt(r.People()) {
			r = r.withPeople(chs[i:j], versions[i:j])
			i = j
			continue
		}
		for j = max(j, i+1); i < j; i++ {
			if n, err := r.With(chs[i]); err == nil {
				r, versions[i] = n, n.version
			}
		}
	}
	return r, versions
}

// peopleOnly reports whether ch holds nothing but consents, withdrawals
// and erasures.
func peopleOnly(ch *Change) bool { return len(ch.LegalOrders) == 0 && len(ch.Suspend) == 0 }

// withPeople applies run, changes that hold only consents, withdrawals and
// erasures, as With applied to each in turn would, and returns the
// registry; versions[k] is set to the version run[k] gave it, and left ""
// when With would refuse it.
func (r *Registry) withPeople(run []Change, versions []string) *Registry {
	l := r.lists(run)
	version, taken := r.version, 0
	var withdrawals []Withdrawal
	for k := range run {
		ch := run[k]
		if r.checkChange(&ch) != nil {
			continue // refused, as With refuses it
		}
		sum, err := changeHash(version, &ch)
		if err != nil {
			continue
		}
		version, taken = "sha256:"+sum, taken+1
		versions[k] = version
		l.apply(ch.Withdrawals, ch.Consents, ch.Erasures)
		withdrawals = append(withdrawals, ch.Withdrawals...)
	}
	if taken == 0 {
		return r
	}
	n := *r // shares every index but the subjects'
	n.content.Consents, n.content.Erasures, n.pending = l.consents, l.erasures, nil
	n.indexPeople()
	n.subjects.withdrawals = r.subjects.withdrawals.with(withdrawals)
	n.version = version
	return &n
}

// Withdrawals returns the withdrawals of every change r took since New or
// Restore built it (and those RestoreWithdrawals gave it back), ordered by
// subject, purpose and time: what r keeps, beside its Content, to withdraw
// the consents that later changes record (With). Content does not list
// them, so a store that keeps r's content to rebuild it keeps them too.
func (r *Registry) Withdrawals() []Withdrawal { return r.subjects.withdrawals.list() }

// RestoreWithdrawals returns r holding ws as withdrawals recorded before,
// for a registry Restore rebuilt from the content of one With derived: ws
// are that registry's Withdrawals, which its content does not list. The
// consents r holds are taken as they are (a derived registry's content
// has its withdrawals applied); the consents later changes record are
// withdrawn by ws as by their own withdrawals. Version and content stay
// r's; r itself is unchanged.
func (r *Registry) RestoreWithdrawals(ws []Withdrawal) *Registry {
	n := *r
	n.subjects.withdrawals = r.subjects.withdrawals.with(ws)
	return &n
}

// withdraw marks c withdrawn at at when it is in force then (granted by
// at, as the engine counts a consent granted at the very instant of a
// request, and not withdrawn yet), and reports whether it did.
func withdraw(c *Consent, at time.Time) bool {
	if c.GrantedAt.After(at) || (c.WithdrawnAt != nil && !c.WithdrawnAt.After(at)) {
		return false
	}
	t := at.UTC()
	c.WithdrawnAt = &t
	return true
}

// suspend replaces the named agreements by suspended copies in the content
// and in the index of each of their parties (copied first).
func (r *Registry) suspend(ids []string) {
	r.content.Agreements = slices.Clone(r.content.Agreements)
	r.parties = maps.Clone(r.parties)
	repl := map[*Agreement]*agreementIndex{}
	swap := func(list []*agreementIndex) []*agreementIndex {
		out := slices.Clone(list)
		for i, ai := range out {
			if !slices.Contains(ids, ai.a.ID) {
				continue
			}
			if repl[ai.a] == nil {
				a := *ai.a
				a.Status = StatusSuspended
				cp := *ai
				cp.a = &a
				repl[ai.a] = &cp
			}
			out[i] = repl[ai.a]
		}
		return out
	}
	done := map[string]bool{}
	for i := range r.content.Agreements {
		a := &r.content.Agreements[i]
		if !slices.Contains(ids, a.ID) {
			continue
		}
		a.Status = StatusSuspended
		for _, p := range a.Parties {
			if done[p] {
				continue
			}
			done[p] = true
			old := r.parties[p]
			pi := &partyIndex{p: old.p, byPurpose: make([]purposeAgreements, len(old.byPurpose))}
			for i, pa := range old.byPurpose {
				pi.byPurpose[i] = purposeAgreements{purpose: pa.purpose, agreements: swap(pa.agreements)}
			}
			r.parties[p] = pi
		}
	}
}

// checkChange validates the entries of ch against r.
func (r *Registry) checkChange(ch *Change) error {
	c := r.content
	c.Consents, c.Erasures, c.LegalOrders = ch.Consents, ch.Erasures, nil
	c.LegalOrders = append(c.LegalOrders, r.content.LegalOrders...)
	c.LegalOrders = append(c.LegalOrders, ch.LegalOrders...)
	v := &validator{c: &c, zones: map[string]*Zone{}, parties: map[string]*Party{}, purposes: r.purposes, categories: map[string]bool{},
		lookup: func(id string) *Party {
			if pi := r.parties[id]; pi != nil {
				return pi.p
			}
			return nil
		}}
	for _, ds := range r.content.Datasets {
		for _, cat := range ds.Fields {
			v.categories[cat] = true
		}
	}
	v.checkConsents()
	v.checkErasures()
	v.checkLegalOrders()
	checkText(v, ch)
	for i, w := range ch.Withdrawals {
		fb := fmt.Sprintf("withdrawals[%d]", i)
		v.required(Source{}, fb, "subject", w.Subject == "")
		v.required(Source{}, fb, "at", w.At.IsZero())
		if _, ok := r.purposes[w.Purpose]; !ok {
			v.fail(Source{}, fb, "purpose", ErrDanglingReference, "no purpose %s", shownID(w.Purpose))
		}
	}
	for i, id := range ch.Suspend {
		found := false
		for j := range r.content.Agreements {
			found = found || r.content.Agreements[j].ID == id
		}
		if !found {
			v.fail(Source{}, fmt.Sprintf("suspend[%d]", i), "", ErrDanglingReference, "no agreement %s", shownID(id))
		}
	}
	if len(v.errs) > 0 {
		return errors.Join(v.errs...)
	}
	return nil
}

// checkText refuses every text of ch that is not valid UTF-8, naming its
// field. JSON cannot carry such text as it is (encoding/json writes
// U+FFFD for each invalid byte), so a change holding it would be hashed
// into the version in one form and stored in another: every instance that
// reads it from the store would derive another version than its writer
// and stop there.
func checkText(v *validator, ch *Change) {
	text := func(fb, key string, s string) {
		if !utf8.ValidString(s) {
			v.fail(Source{}, fb, key, ErrInvalidValue, "not valid UTF-8")
		}
	}
	list := func(fb, key string, ss []string) {
		for j, s := range ss {
			text(fb, fmt.Sprintf("%s[%d]", key, j), s)
		}
	}
	for i, c := range ch.Consents {
		fb := fmt.Sprintf("consents[%d]", i)
		text(fb, "subject", c.Subject)
		text(fb, "purpose", c.Purpose)
		list(fb, "recipients", c.Recipients)
		text(fb, "notice_version", c.NoticeVersion)
	}
	for i, w := range ch.Withdrawals {
		fb := fmt.Sprintf("withdrawals[%d]", i)
		text(fb, "subject", w.Subject)
		text(fb, "purpose", w.Purpose)
	}
	for i, e := range ch.Erasures {
		text(fmt.Sprintf("erasures[%d]", i), "subject", e.Subject)
	}
	for i, o := range ch.LegalOrders {
		fb := fmt.Sprintf("legal_orders[%d]", i)
		text(fb, "id", o.ID)
		text(fb, "authority", o.Authority)
		list(fb, "subjects", o.Subjects)
		list(fb, "categories", o.Categories)
	}
	for i, id := range ch.Suspend {
		text(fmt.Sprintf("suspend[%d]", i), "", id)
	}
}

func changeHash(parent string, ch *Change) (string, error) {
	data, err := json.Marshal(ch)
	if err != nil {
		return "", fmt.Errorf("agreements: hash change: %w", err)
	}
	h := sha256.New()
	h.Write([]byte(parent))
	h.Write([]byte{0})
	h.Write(data)
	return hex.EncodeToString(h.Sum(nil)), nil
}
