package agreements

import (
	"strings"
	"time"
)

// The index types below are built once per registry version and never
// changed; a decision only reads them.

// countrySet is a set of ISO 3166-1 alpha-2 codes as a 26x26 bitmap.
type countrySet [11]uint64

func (s *countrySet) add(i int)      { s[i/64] |= 1 << (i % 64) }
func (s *countrySet) has(i int) bool { return i >= 0 && s[i/64]&(1<<(i%64)) != 0 }
func pairKey(origin, dest int) int   { return origin*676 + dest }

// catSet is a set of category ids (positions in Registry.categories).
type catSet []uint64

func (s catSet) has(id int) bool { return id/64 < len(s) && s[id/64]&(1<<(id%64)) != 0 }
func (s catSet) add(id int)      { s[id/64] |= 1 << (id % 64) }

// scope is a compiled list of permitted categories (exact names, prefix
// patterns such as "contact.*", and "*") as a set over the registry's
// categories. Special categories enter only by exact name.
type scope struct{ cats catSet }

func (r *Registry) compileScope(list []string) scope {
	s := scope{cats: make(catSet, (len(r.categories)+63)/64)}
	for id, c := range r.categories {
		special := isSpecial(c)
		for _, p := range list {
			switch {
			case p == c:
				s.cats.add(id)
			case special:
			case p == "*", strings.HasSuffix(p, ".*") && strings.HasPrefix(c, strings.TrimSuffix(p, "*")):
				s.cats.add(id)
			}
		}
	}
	return s
}

// fieldNode is one segment of a dataset's field paths. A leaf carries its
// category (and category id); an inner node its children. path is the full
// dotted path, computed once so that decisions do not build it.
type fieldNode struct {
	name     string // the last segment of path
	path     string
	category string
	catID    int
	ord      int       // position of the leaf among the dataset's sorted paths
	children *fieldSet // nil for a leaf
}

// fieldSet holds the children of a node by name. A decision looks up every
// member of the record in it, mostly names the dataset does not classify,
// so it groups the names by length and compares strings instead of
// hashing them: a lookup is usually one length check.
type fieldSet struct {
	byLen [][]*fieldNode // byLen[i] lists the children with names of i bytes
	size  int
}

// get returns the child called name, or nil.
func (s *fieldSet) get(name string) *fieldNode {
	if len(name) >= len(s.byLen) {
		return nil
	}
	// Names are never empty (validPath), so byLen[0] is empty and
	// name[0] exists whenever the loop runs.
	for _, n := range s.byLen[len(name)] {
		if n.name[0] == name[0] && n.name == name {
			return n
		}
	}
	return nil
}

func (s *fieldSet) add(n *fieldNode) {
	if l := len(n.name); l >= len(s.byLen) {
		s.byLen = append(s.byLen, make([][]*fieldNode, l+1-len(s.byLen))...)
	}
	s.byLen[len(n.name)] = append(s.byLen[len(n.name)], n)
	s.size++
}

// datasetIndex holds a dataset's field tree, the same leaves by full path
// (for record members written with dots), and the sorted leaf paths.
type datasetIndex struct {
	ds     *Dataset
	root   *fieldSet
	flat   map[string]*fieldNode
	sorted []*fieldNode
}

func (r *Registry) indexDataset(ds *Dataset) *datasetIndex {
	di := &datasetIndex{ds: ds, root: &fieldSet{}, flat: map[string]*fieldNode{}}
	paths := sortedKeys(ds.Fields)
	for ord, path := range paths {
		children := di.root
		segs := strings.Split(path, ".")
		for i, seg := range segs {
			n := children.get(seg)
			if n == nil {
				n = &fieldNode{name: seg, path: strings.Join(segs[:i+1], ".")}
				children.add(n)
				di.flat[n.path] = n
			}
			if i == len(segs)-1 {
				n.category, n.catID, n.ord = ds.Fields[path], r.catID[ds.Fields[path]], ord
				di.sorted = append(di.sorted, n)
				break
			}
			if n.children == nil {
				n.children = &fieldSet{}
			}
			children = n.children
		}
	}
	return di
}

// indexCategories collects the categories of every dataset, sorted.
func (r *Registry) indexCategories() {
	seen := map[string]bool{}
	for _, ds := range r.content.Datasets {
		for _, c := range ds.Fields {
			seen[c] = true
		}
	}
	r.categories = sortedKeys(seen)
	r.catID = make(map[string]int, len(r.categories))
	for i, c := range r.categories {
		r.catID[c] = i
	}
}

// agreementIndex is an agreement with what decisions need precomputed: its
// category scope, the end of its last day, its reference and mechanism
// name, and for SCC and BCR agreements its destinations and TIA deadline.
type agreementIndex struct {
	a         *Agreement
	scope     scope
	end       time.Time // first instant after valid_until
	tiaEnd    time.Time // first instant after tia.review_by; zero without TIA
	ref       AgreementRef
	mechanism string // "scc:<id>" or "bcr:<id>"; empty for other kinds
	dest      countrySet
}

// indexAgreement indexes a, whose categories compile to sc.
func (r *Registry) indexAgreement(a *Agreement, sc scope) *agreementIndex {
	ai := &agreementIndex{a: a, scope: sc, end: endOfDay(a.ValidUntil),
		ref: AgreementRef{ID: a.ID, Version: a.Version}}
	if a.TIA != nil {
		ai.tiaEnd = endOfDay(a.TIA.ReviewBy)
	}
	switch a.Kind {
	case KindSCC:
		ai.mechanism = mechanismSCCPrefix + a.ID
	case KindBCR:
		ai.mechanism = mechanismBCRPrefix + a.ID
	}
	for _, cc := range r.expand(a.Destinations) {
		ai.dest.add(countryIndex(cc))
	}
	return ai
}

// state returns "" when the agreement is in force at at, else the reason it
// is not (see the package documentation for the order).
func (ai *agreementIndex) state(at time.Time) string {
	switch a := ai.a; {
	case a.Status == StatusTerminated, !at.Before(ai.end):
		return ReasonAgreementExpired
	case a.Status == StatusDraft, at.Before(a.ValidFrom):
		return ReasonAgreementNotYetValid
	case a.Status == StatusSuspended:
		return ReasonAgreementSuspended
	}
	return ""
}

type orderIndex struct {
	o        *LegalOrder
	scope    scope
	end      time.Time
	subjects map[string]bool
}

func (r *Registry) indexOrder(o *LegalOrder) *orderIndex {
	oi := &orderIndex{o: o, scope: r.compileScope(o.Categories), end: endOfDay(o.ValidUntil), subjects: make(map[string]bool, len(o.Subjects))}
	for _, s := range o.Subjects {
		oi.subjects[s] = true
	}
	return oi
}

// adequacyIndex is an adequacy decision with its mechanism name.
type adequacyIndex struct {
	a         *Adequacy
	mechanism string
}
