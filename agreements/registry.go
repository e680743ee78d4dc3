package agreements

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Registry is one immutable version of the policy: the validated Content and
// the indexes the Engine decides with. Every lookup a decision makes is a map
// access or a scan of one party's own purposes, so a decision costs the same
// with ten agreements as with a hundred thousand. A Registry is never
// changed after New or With returns it and is safe for concurrent use; With
// derives the next version.
type Registry struct {
	version string
	content Content

	// parties and subjects gather everything a decision needs about a
	// recipient and a data subject behind one lookup each.
	parties  map[string]*partyIndex
	subjects subjectMap
	datasets map[string]*datasetIndex
	purposes map[string]*Purpose
	orders   map[string]*orderIndex
	// pending holds the consents, withdrawals and erasures of the changes
	// With took that content's lists do not (people.go).
	pending *pendingChange
	// adequacy maps origin*676+destination to the decisions covering it;
	// zoneMask holds, per country, a bit for each zone it belongs to.
	adequacy map[int][]adequacyIndex
	zoneMask [676]uint64
	// categories lists every category the datasets use, sorted; catID
	// maps a category to its position (scopes are bitsets over it).
	categories []string
	catID      map[string]int
}

// partyIndex is a party with the agreements listing it, by purpose (every
// agreement has at least one). A party has few purposes, so they are a
// list, not a map: a scan of a handful of names costs less than hashing,
// and a registry of many parties stays small for the garbage collector,
// which walks it.
type partyIndex struct {
	p         *Party
	byPurpose []purposeAgreements
}

// purposeAgreements lists a party's agreements for one purpose.
type purposeAgreements struct {
	purpose    string
	agreements []*agreementIndex
}

// forPurpose returns the party's agreements for purpose.
func (pi *partyIndex) forPurpose(purpose string) []*agreementIndex {
	for i := range pi.byPurpose {
		if pi.byPurpose[i].purpose == purpose {
			return pi.byPurpose[i].agreements
		}
	}
	return nil
}

// subjectIndex holds a data subject's erasures and consents (all purposes).
type subjectIndex struct {
	erasures []*Erasure
	consents []*Consent
}

// subject returns the index entry of id, or an empty one.
func (r *Registry) subject(id string) *subjectIndex {
	if s := r.subjects.get(id); s != nil {
		return s
	}
	return &noSubject
}

// noSubject is the entry of a subject without consents or erasures; it is
// never modified.
var noSubject subjectIndex

// New validates c and builds a Registry from it. Problems are reported as
// for Load; entries built in code name their key by position
// ("agreements[4].parties[0]") instead of file and line.
//
// Category names are checked as registries were stored before the rule
// registry files are held to (categoryRule, which Parse and Load apply),
// so that a registry stored by an earlier version still loads.
func New(c Content) (*Registry, error) { return newRegistry(c, false) }

// newRegistry is New; files says that c comes from registry files (Parse).
func newRegistry(c Content, files bool) (*Registry, error) {
	r, err := build(c, files)
	if err != nil {
		return nil, err
	}
	sum, err := canonicalHash(&r.content)
	if err != nil {
		return nil, err
	}
	r.version = "sha256:" + sum
	return r, nil
}

// Restore rebuilds a registry stored with the version it had: it validates
// and indexes c as New does and takes version as its version instead of
// hashing c, since the version of a registry With derived names its chain
// of changes, not its content. The caller vouches for the pair (the
// registry store checks the version against the event that made it).
func Restore(c Content, version string) (*Registry, error) {
	if version == "" {
		return nil, errors.New("agreements: restore: no version")
	}
	r, err := build(c, false)
	if err != nil {
		return nil, err
	}
	r.version = version
	return r, nil
}

// build validates c and indexes it, without a version; files says that c
// comes from registry files.
func build(c Content, files bool) (*Registry, error) {
	if errs := validate(&c, files); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	r := &Registry{content: c}
	r.index()
	return r, nil
}

// indexPeople builds the subject index from r.content's consents and
// erasures.
func (r *Registry) indexPeople() {
	c := &r.content
	subjects := make(map[string]*subjectIndex, len(c.Consents)+len(c.Erasures))
	r.subjects = subjectMap{base: subjects}
	entry := func(id string) *subjectIndex {
		s := subjects[id]
		if s == nil {
			s = &subjectIndex{}
			subjects[id] = s
		}
		return s
	}
	for i := range c.Consents {
		s := entry(c.Consents[i].Subject)
		s.consents = append(s.consents, &c.Consents[i])
	}
	for i := range c.Erasures {
		s := entry(c.Erasures[i].Subject)
		s.erasures = append(s.erasures, &c.Erasures[i])
	}
}

// index builds every index from r.content.
func (r *Registry) index() {
	c := &r.content
	r.indexCategories()
	r.parties = make(map[string]*partyIndex, len(c.Parties))
	for i := range c.Parties {
		r.parties[c.Parties[i].ID] = &partyIndex{p: &c.Parties[i]}
	}
	r.datasets = make(map[string]*datasetIndex, len(c.Datasets))
	for i := range c.Datasets {
		r.datasets[c.Datasets[i].ID] = r.indexDataset(&c.Datasets[i])
	}
	r.purposes = make(map[string]*Purpose, len(c.Purposes))
	for i := range c.Purposes {
		r.purposes[c.Purposes[i].ID] = &c.Purposes[i]
	}
	// Agreements with the same categories share one compiled scope.
	scopes := map[string]scope{}
	for i := range c.Agreements {
		a := &c.Agreements[i]
		key := scopeKey(a.Categories)
		sc, ok := scopes[key]
		if !ok {
			sc = r.compileScope(a.Categories)
			scopes[key] = sc
		}
		r.addAgreement(r.indexAgreement(a, sc))
	}
	r.indexPeople()
	r.orders = make(map[string]*orderIndex, len(c.LegalOrders))
	for i := range c.LegalOrders {
		r.orders[c.LegalOrders[i].ID] = r.indexOrder(&c.LegalOrders[i])
	}
	for zi, z := range c.Zones {
		for _, cc := range z.Countries {
			r.zoneMask[countryIndex(cc)] |= 1 << zi
		}
	}
	r.adequacy = map[int][]adequacyIndex{}
	for i := range c.Adequacy {
		a := &c.Adequacy[i]
		ai := adequacyIndex{a: a, mechanism: mechanismAdequacyPrefix + a.ID}
		for _, from := range r.expand(a.From) {
			for _, to := range r.expand(a.To) {
				k := pairKey(countryIndex(from), countryIndex(to))
				r.adequacy[k] = append(r.adequacy[k], ai)
			}
		}
	}
}

// scopeKey returns a key equal for two lists of categories only when the
// lists are equal: each name is written after its length, so that no
// character a name may hold can make two lists read alike.
func scopeKey(categories []string) string {
	var b strings.Builder
	for _, c := range categories {
		b.WriteString(strconv.Itoa(len(c)))
		b.WriteByte(':')
		b.WriteString(c)
	}
	return b.String()
}

// addAgreement puts ai into the index of each of its parties.
func (r *Registry) addAgreement(ai *agreementIndex) {
	for _, p := range ai.a.Parties {
		pi := r.parties[p]
	purposes:
		for _, pu := range ai.a.Purposes {
			for i := range pi.byPurpose {
				if pa := &pi.byPurpose[i]; pa.purpose == pu {
					pa.agreements = append(pa.agreements, ai)
					continue purposes
				}
			}
			pi.byPurpose = append(pi.byPurpose, purposeAgreements{purpose: pu, agreements: []*agreementIndex{ai}})
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
	pi, ok := r.parties[id]
	if !ok {
		return Party{}, ErrUnknownParty
	}
	return *pi.p, nil
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
	c.LegalOrders = append([]LegalOrder(nil), c.LegalOrders...)
	c.Consents, c.Erasures = r.people()
	return c
}

// Dataset returns the dataset id, and whether the registry defines it.
func (r *Registry) Dataset(id string) (Dataset, bool) {
	if di := r.datasets[id]; di != nil {
		return *di.ds, true
	}
	return Dataset{}, false
}

// Purpose returns the purpose id, and whether the registry defines it.
func (r *Registry) Purpose(id string) (Purpose, bool) {
	if p := r.purposes[id]; p != nil {
		return *p, true
	}
	return Purpose{}, false
}

// LegalOrder returns the legal order id, and whether the registry holds it.
func (r *Registry) LegalOrder(id string) (LegalOrder, bool) {
	if oi := r.orders[id]; oi != nil {
		return *oi.o, true
	}
	return LegalOrder{}, false
}

// Subject returns the consents and erasures the registry holds of the
// subject id, as Content lists them (withdrawals applied), from the
// subject index: copies, without reading the other subjects'.
func (r *Registry) Subject(id string) (consents []Consent, erasures []Erasure) {
	s := r.subject(id)
	for _, c := range s.consents {
		consents = append(consents, *c)
	}
	for _, e := range s.erasures {
		erasures = append(erasures, *e)
	}
	return consents, erasures
}

// Agreements returns a copy of the registry's agreements, without copying
// the rest of its content (Content copies every list, consents and
// erasures included, which may hold millions).
func (r *Registry) Agreements() []Agreement {
	return append([]Agreement(nil), r.content.Agreements...)
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
