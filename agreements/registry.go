package agreements

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Registry is one immutable version of the policy: the validated Content and
// the indexes the Engine decides with. Every lookup a decision makes is a map
// access, so a decision costs the same with ten agreements as with a hundred
// thousand. A Registry is never changed after New or With returns it and is
// safe for concurrent use; With derives the next version.
type Registry struct {
	version string
	content Content

	parties  map[string]*Party
	datasets map[string]*datasetIndex
	purposes map[string]*Purpose
	// byPartyPurpose holds the agreements listing a party and a purpose;
	// byParty those listing the party at all (for purpose_not_covered).
	byPartyPurpose map[partyPurpose][]*agreementIndex
	byParty        map[string][]*agreementIndex
	consents       map[subjectPurpose][]*Consent
	erasures       map[string][]*Erasure
	orders         map[string]*orderIndex
	// adequacy maps origin*676+destination to the decisions covering it;
	// sameZone holds the pairs of countries sharing a zone.
	adequacy map[int][]*Adequacy
	sameZone map[int]bool
}

type partyPurpose struct{ party, purpose string }
type subjectPurpose struct{ subject, purpose string }

// datasetIndex holds a dataset's field paths: leaves maps a classified path
// to its category, inner holds every proper prefix of a classified path.
type datasetIndex struct {
	ds     *Dataset
	leaves map[string]string
	inner  map[string]bool
}

// agreementIndex is an agreement with its compiled category scope and, for
// SCC and BCR agreements, its destinations as a country set.
type agreementIndex struct {
	a     *Agreement
	scope scope
	dest  countrySet
}

type orderIndex struct {
	o        *LegalOrder
	scope    scope
	subjects map[string]bool
}

// countrySet is a set of ISO 3166-1 alpha-2 codes as a 26x26 bitmap.
type countrySet [11]uint64

func (s *countrySet) add(i int)      { s[i/64] |= 1 << (i % 64) }
func (s *countrySet) has(i int) bool { return i >= 0 && s[i/64]&(1<<(i%64)) != 0 }
func pairKey(origin, dest int) int   { return origin*676 + dest }

// scope is a compiled list of categories: exact names, prefix patterns
// ("contact.*") and "*". Special categories match exact names only.
type scope struct {
	exact    map[string]bool
	prefixes []string
	all      bool
}

func compileScope(cats []string) scope {
	s := scope{exact: make(map[string]bool, len(cats))}
	for _, c := range cats {
		switch {
		case c == "*":
			s.all = true
		case strings.HasSuffix(c, ".*"):
			s.prefixes = append(s.prefixes, strings.TrimSuffix(c, "*"))
		default:
			s.exact[c] = true
		}
	}
	return s
}

func (s *scope) permits(category string) bool {
	if s.exact[category] {
		return true
	}
	if strings.HasPrefix(category, "special.") {
		return false
	}
	if s.all {
		return true
	}
	for _, p := range s.prefixes {
		if strings.HasPrefix(category, p) {
			return true
		}
	}
	return false
}

// New validates c and builds a Registry from it. Problems are reported as
// for Load; entries built in code name their key by position
// ("agreements[4].parties[0]") instead of file and line.
func New(c Content) (*Registry, error) {
	if errs := validate(&c); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	r := &Registry{content: c}
	r.index()
	sum, err := canonicalHash(&r.content)
	if err != nil {
		return nil, err
	}
	r.version = "sha256:" + sum
	return r, nil
}

// index builds every index from r.content.
func (r *Registry) index() {
	c := &r.content
	r.parties = make(map[string]*Party, len(c.Parties))
	for i := range c.Parties {
		r.parties[c.Parties[i].ID] = &c.Parties[i]
	}
	r.datasets = make(map[string]*datasetIndex, len(c.Datasets))
	for i := range c.Datasets {
		r.datasets[c.Datasets[i].ID] = indexDataset(&c.Datasets[i])
	}
	r.purposes = make(map[string]*Purpose, len(c.Purposes))
	for i := range c.Purposes {
		r.purposes[c.Purposes[i].ID] = &c.Purposes[i]
	}
	r.byPartyPurpose = make(map[partyPurpose][]*agreementIndex, len(c.Agreements))
	r.byParty = make(map[string][]*agreementIndex, len(c.Agreements))
	for i := range c.Agreements {
		r.addAgreement(r.indexAgreement(&c.Agreements[i]))
	}
	r.consents = make(map[subjectPurpose][]*Consent, len(c.Consents))
	for i := range c.Consents {
		k := subjectPurpose{c.Consents[i].Subject, c.Consents[i].Purpose}
		r.consents[k] = append(r.consents[k], &c.Consents[i])
	}
	r.erasures = make(map[string][]*Erasure, len(c.Erasures))
	for i := range c.Erasures {
		r.erasures[c.Erasures[i].Subject] = append(r.erasures[c.Erasures[i].Subject], &c.Erasures[i])
	}
	r.orders = make(map[string]*orderIndex, len(c.LegalOrders))
	for i := range c.LegalOrders {
		r.orders[c.LegalOrders[i].ID] = indexOrder(&c.LegalOrders[i])
	}
	r.sameZone = map[int]bool{}
	for _, z := range c.Zones {
		for _, a := range z.Countries {
			for _, b := range z.Countries {
				r.sameZone[pairKey(countryIndex(a), countryIndex(b))] = true
			}
		}
	}
	r.adequacy = map[int][]*Adequacy{}
	for i := range c.Adequacy {
		a := &c.Adequacy[i]
		for _, from := range r.expand(a.From) {
			for _, to := range r.expand(a.To) {
				k := pairKey(countryIndex(from), countryIndex(to))
				r.adequacy[k] = append(r.adequacy[k], a)
			}
		}
	}
}

func indexDataset(ds *Dataset) *datasetIndex {
	di := &datasetIndex{ds: ds, leaves: make(map[string]string, len(ds.Fields)), inner: map[string]bool{}}
	for path, cat := range ds.Fields {
		di.leaves[path] = cat
		for p := parentPath(path); p != ""; p = parentPath(p) {
			di.inner[p] = true
		}
	}
	return di
}

func indexOrder(o *LegalOrder) *orderIndex {
	oi := &orderIndex{o: o, scope: compileScope(o.Categories), subjects: make(map[string]bool, len(o.Subjects))}
	for _, s := range o.Subjects {
		oi.subjects[s] = true
	}
	return oi
}

func (r *Registry) indexAgreement(a *Agreement) *agreementIndex {
	ai := &agreementIndex{a: a, scope: compileScope(a.Categories)}
	for _, cc := range r.expand(a.Destinations) {
		ai.dest.add(countryIndex(cc))
	}
	return ai
}

// addAgreement puts ai into the agreement indexes (which the caller owns).
func (r *Registry) addAgreement(ai *agreementIndex) {
	for _, p := range ai.a.Parties {
		r.byParty[p] = append(r.byParty[p], ai)
		for _, pu := range ai.a.Purposes {
			k := partyPurpose{p, pu}
			r.byPartyPurpose[k] = append(r.byPartyPurpose[k], ai)
		}
	}
}

// expand resolves zones and countries to countries.
func (r *Registry) expand(places []string) []string {
	var out []string
	for _, p := range places {
		if cs := r.zoneCountries(p); cs != nil {
			out = append(out, cs...)
		} else {
			out = append(out, p)
		}
	}
	return out
}

func (r *Registry) zoneCountries(id string) []string {
	for _, z := range r.content.Zones {
		if z.ID == id {
			return z.Countries
		}
	}
	return nil
}

// Version returns the registry's content hash, "sha256:<hex>". Two registries
// with the same content (whatever the files' layout or comments) have the
// same version; a derived registry's version hashes its parent's version
// with the change (see With).
func (r *Registry) Version() string { return r.version }

// Party returns the party with the given id, or ErrUnknownParty.
func (r *Registry) Party(id string) (Party, error) {
	p, ok := r.parties[id]
	if !ok {
		return Party{}, ErrUnknownParty
	}
	return *p, nil
}

// Content returns a copy of the registry's entries, for storing or listing
// them. The slices are fresh; the entries' own slices and maps are shared
// and must not be modified.
func (r *Registry) Content() Content {
	c := r.content
	c.Zones = append([]Zone(nil), c.Zones...)
	c.Adequacy = append([]Adequacy(nil), c.Adequacy...)
	c.Parties = append([]Party(nil), c.Parties...)
	c.Datasets = append([]Dataset(nil), c.Datasets...)
	c.Purposes = append([]Purpose(nil), c.Purposes...)
	c.Agreements = append([]Agreement(nil), c.Agreements...)
	c.Consents = append([]Consent(nil), c.Consents...)
	c.LegalOrders = append([]LegalOrder(nil), c.LegalOrders...)
	c.Erasures = append([]Erasure(nil), c.Erasures...)
	return c
}

// canonicalHash hashes the JSON of c with every list sorted, so that the
// order of files and entries does not change the version.
func canonicalHash(c *Content) (string, error) {
	s := *c
	s.Zones = sortedCopy(c.Zones, func(z Zone) string { return z.ID })
	s.Adequacy = sortedCopy(c.Adequacy, func(a Adequacy) string { return a.ID })
	s.Parties = sortedCopy(c.Parties, func(p Party) string { return p.ID })
	s.Datasets = sortedCopy(c.Datasets, func(d Dataset) string { return d.ID })
	s.Purposes = sortedCopy(c.Purposes, func(p Purpose) string { return p.ID })
	s.Agreements = sortedCopy(c.Agreements, func(a Agreement) string { return a.ID })
	s.LegalOrders = sortedCopy(c.LegalOrders, func(o LegalOrder) string { return o.ID })
	s.Consents = sortedByJSON(c.Consents)
	s.Erasures = sortedByJSON(c.Erasures)
	data, err := json.Marshal(&s)
	if err != nil {
		return "", fmt.Errorf("agreements: hash registry: %w", err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:]), nil
}

func sortedCopy[T any](list []T, key func(T) string) []T {
	out := append([]T(nil), list...)
	sort.SliceStable(out, func(i, j int) bool { return key(out[i]) < key(out[j]) })
	return out
}

// sortedByJSON sorts entries without an id by their JSON encoding.
func sortedByJSON[T any](list []T) []T {
	type pair struct {
		key string
		v   T
	}
	ps := make([]pair, len(list))
	for i, v := range list {
		b, _ := json.Marshal(v) // plain structs of strings, times and bools
		ps[i] = pair{string(b), v}
	}
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].key < ps[j].key })
	out := make([]T, len(ps))
	for i, p := range ps {
		out[i] = p.v
	}
	return out
}
