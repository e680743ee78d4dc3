package agreements

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"time"
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
// was granted before At and is not withdrawn yet.
type Withdrawal struct {
	Subject string    `json:"subject"`
	Purpose string    `json:"purpose"`
	At      time.Time `json:"at"`
}

// With returns a new Registry: r with ch applied. r itself is unchanged and
// decisions against it go on unaffected. The new entries are validated
// against r (known purposes, parties, categories; authorities). Only the
// indexes ch touches are copied, so the cost is proportional to their size,
// not to a reload. The new version is the SHA-256 of r's version and the
// canonical JSON of ch: the chain of versions is itself a content hash.
func (r *Registry) With(ch Change) (*Registry, error) {
	if err := r.checkChange(&ch); err != nil {
		return nil, err
	}
	n := *r // shares every index; the ones changed below are copied first
	n.content.Consents = append([]Consent(nil), r.content.Consents...)
	n.content.Erasures = append([]Erasure(nil), r.content.Erasures...)
	n.content.LegalOrders = append([]LegalOrder(nil), r.content.LegalOrders...)

	if len(ch.Consents) > 0 || len(ch.Withdrawals) > 0 {
		n.consents = maps.Clone(r.consents)
	}
	for _, w := range ch.Withdrawals {
		for i := range n.content.Consents {
			if c := &n.content.Consents[i]; c.Subject == w.Subject && c.Purpose == w.Purpose {
				withdraw(c, w.At)
			}
		}
		k := subjectPurpose{w.Subject, w.Purpose}
		list := make([]*Consent, 0, len(n.consents[k]))
		for _, c := range n.consents[k] {
			cp := *c
			if withdraw(&cp, w.At) {
				c = &cp
			}
			list = append(list, c)
		}
		n.consents[k] = list
	}
	for i := range ch.Consents {
		c := ch.Consents[i]
		n.content.Consents = append(n.content.Consents, c)
		k := subjectPurpose{c.Subject, c.Purpose}
		n.consents[k] = append(n.consents[k][:len(n.consents[k]):len(n.consents[k])], &c)
	}
	if len(ch.Erasures) > 0 {
		n.erasures = maps.Clone(r.erasures)
		for i := range ch.Erasures {
			e := ch.Erasures[i]
			n.content.Erasures = append(n.content.Erasures, e)
			n.erasures[e.Subject] = append(n.erasures[e.Subject][:len(n.erasures[e.Subject]):len(n.erasures[e.Subject])], &e)
		}
	}
	if len(ch.LegalOrders) > 0 {
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

// withdraw marks c withdrawn at at when it was granted before and is not
// withdrawn yet, and reports whether it did.
func withdraw(c *Consent, at time.Time) bool {
	if !c.GrantedAt.Before(at) || (c.WithdrawnAt != nil && !c.WithdrawnAt.After(at)) {
		return false
	}
	t := at.UTC()
	c.WithdrawnAt = &t
	return true
}

// suspend replaces the named agreements by suspended copies in the content
// and in every agreement index (copied first).
func (n *Registry) suspend(ids []string) {
	n.content.Agreements = append([]Agreement(nil), n.content.Agreements...)
	repl := map[*Agreement]*agreementIndex{}
	for i := range n.content.Agreements {
		if contains(ids, n.content.Agreements[i].ID) {
			n.content.Agreements[i].Status = StatusSuspended
		}
	}
	n.byParty = maps.Clone(n.byParty)
	n.byPartyPurpose = maps.Clone(n.byPartyPurpose)
	swap := func(list []*agreementIndex) []*agreementIndex {
		out := make([]*agreementIndex, len(list))
		for i, ai := range list {
			out[i] = ai
			if !contains(ids, ai.a.ID) {
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
	for _, id := range ids {
		for i := range n.content.Agreements {
			a := &n.content.Agreements[i]
			if a.ID != id {
				continue
			}
			for _, p := range a.Parties {
				n.byParty[p] = swap(n.byParty[p])
				for _, pu := range a.Purposes {
					k := partyPurpose{p, pu}
					n.byPartyPurpose[k] = swap(n.byPartyPurpose[k])
				}
			}
		}
	}
}

// checkChange validates the entries of ch against r.
func (r *Registry) checkChange(ch *Change) error {
	c := r.content
	c.Consents, c.Erasures, c.LegalOrders = ch.Consents, ch.Erasures, nil
	c.LegalOrders = append(c.LegalOrders, r.content.LegalOrders...)
	c.LegalOrders = append(c.LegalOrders, ch.LegalOrders...)
	v := &validator{c: &c, zones: map[string]*Zone{}, parties: r.parties, purposes: r.purposes, categories: map[string]bool{}}
	for _, ds := range r.content.Datasets {
		for _, cat := range ds.Fields {
			v.categories[cat] = true
		}
	}
	v.checkConsents()
	v.checkErasures()
	v.checkLegalOrders()
	for i, w := range ch.Withdrawals {
		fb := fmt.Sprintf("withdrawals[%d]", i)
		v.required(Source{}, fb, "subject", w.Subject == "")
		v.required(Source{}, fb, "at", w.At.IsZero())
		if _, ok := r.purposes[w.Purpose]; !ok {
			v.fail(Source{}, fb, "purpose", ErrDanglingReference, "no purpose %q", w.Purpose)
		}
	}
	for i, id := range ch.Suspend {
		found := false
		for j := range r.content.Agreements {
			found = found || r.content.Agreements[j].ID == id
		}
		if !found {
			v.fail(Source{}, fmt.Sprintf("suspend[%d]", i), "", ErrDanglingReference, "no agreement %q", id)
		}
	}
	if len(v.errs) > 0 {
		return errors.Join(v.errs...)
	}
	return nil
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
