package agreements

import (
	"math/bits"
	"strings"
)

// minimised is the result of rule 5 for one record.
type minimised struct {
	record     map[string]any
	kept       []string
	removed    Removed
	categories []string
	// withheld holds the objects (by path) whose members with names that
	// are not plain are already reported, as one WithheldName entry each.
	withheld map[string]bool
}

// minimise applies rule 5: a field is kept when the dataset classifies its
// path and sc permits the category. Paths are dotted: a record member that
// is an object is walked when the dataset classifies paths below it, and a
// member named with dots ("payment.method") matches the same path. An
// unclassified member is removed whole. With no scope (no agreement or legal
// order in force) every field is reported removed; with no dataset every
// top-level member is unclassified. Kept paths and categories come out
// sorted and distinct. With buffers b, the lists and maps come from b.
func (r *Registry) minimise(di *datasetIndex, sc *scope, rec map[string]any, b *decisionBuffers) minimised {
	var m minimised
	if b != nil {
		m.removed = b.removed[:0]
	}
	if di == nil {
		for k := range rec {
			m.removeUnclassified("", k, len(rec))
		}
		return m
	}
	var keepBuf [64]bool
	var keep []bool
	if n := len(di.sorted); n <= len(keepBuf) {
		keep = keepBuf[:n]
	} else {
		keep = make([]bool, n)
	}
	w := walker{di: di, sc: sc, m: &m, b: b, keep: keep, size: len(rec)}
	m.record = w.walk(di.root, "", rec)
	w.joinNested()
	if sc == nil {
		return m
	}
	var catBuf [4]uint64
	var cats catSet
	if n := (len(r.categories) + 63) / 64; n <= len(catBuf) {
		cats = catBuf[:n]
	} else {
		cats = make(catSet, n)
	}
	count, ncats := 0, 0
	for ord, k := range keep {
		if k {
			count++
			cats.add(di.sorted[ord].catID)
		}
	}
	for _, word := range cats {
		ncats += bits.OnesCount64(word)
	}
	// One allocation holds both lists; kept is capped so that an append to
	// it cannot write into categories.
	var lists []string
	if b == nil {
		lists = make([]string, 0, count+ncats)
	} else {
		lists = b.list(count + ncats)
	}
	for ord, k := range keep {
		if k {
			lists = append(lists, di.sorted[ord].path)
		}
	}
	for id, c := range r.categories {
		if cats.has(id) {
			lists = append(lists, c)
		}
	}
	m.kept, m.categories = lists[:count:count], lists[count:]
	return m
}

// walker carries one minimisation through the record.
type walker struct {
	di   *datasetIndex
	sc   *scope
	m    *minimised
	b    *decisionBuffers // nil: allocate
	keep []bool           // by leaf position in di.sorted
	size int
	// nested lists the first unclassified members found inside objects:
	// their paths are joined to their prefixes in one string at the end.
	nested  [8]nestedRemoval
	nNested int
}

// nestedRemoval is an entry of minimised.removed whose Path holds only the
// member's name, yet to be prefixed.
type nestedRemoval struct {
	i      int
	prefix string
}

// walk minimises rec, whose members are the children given, and returns
// the kept members (nil when none is kept).
func (w *walker) walk(children *fieldSet, prefix string, rec map[string]any) (out map[string]any) {
	for k, v := range rec {
		n := children.get(k)
		if n == nil && strings.IndexByte(k, '.') >= 0 {
			n = w.di.flat[joinPath(prefix, k)]
		}
		switch {
		case n == nil:
			w.removeUnclassified(prefix, k)
		case n.children == nil: // a classified leaf
			if w.sc == nil || !w.sc.cats.has(n.catID) {
				w.m.remove(n.path, FieldCategoryNotPermitted, w.size)
				continue
			}
			if out == nil {
				out = w.newMap(min(len(rec), children.size))
			}
			out[k] = v
			w.keep[n.ord] = true
		default:
			sub, ok := v.(map[string]any)
			if !ok {
				w.m.remove(n.path, FieldUnclassified, w.size)
				continue
			}
			if subOut := w.walk(n.children, n.path, sub); subOut != nil {
				if out == nil {
					out = w.newMap(min(len(rec), children.size))
				}
				out[k] = subOut
			}
		}
	}
	return out
}

func (w *walker) newMap(size int) map[string]any {
	if w.b == nil {
		return make(map[string]any, size)
	}
	return w.b.newMap(size)
}

// removeUnclassified removes the member k of the object at prefix. The
// first few paths inside objects are joined later, all in one allocation;
// for a reused decision they come from the paths its buffers remember. A
// name that is not plain is reported as WithheldName, once per object.
func (w *walker) removeUnclassified(prefix, k string) {
	if !plainName(k) {
		w.m.removeUnclassified(prefix, k, w.size)
		return
	}
	if prefix != "" && w.b != nil {
		w.m.remove(w.b.joinPath(prefix, k), FieldUnclassified, w.size)
		return
	}
	if prefix == "" || w.nNested == len(w.nested) {
		w.m.remove(joinPath(prefix, k), FieldUnclassified, w.size)
		return
	}
	w.m.remove(k, FieldUnclassified, w.size)
	w.nested[w.nNested] = nestedRemoval{i: len(w.m.removed) - 1, prefix: prefix}
	w.nNested++
}

// joinNested completes the paths left by removeUnclassified.
func (w *walker) joinNested() {
	nested := w.nested[:w.nNested]
	if len(nested) == 0 {
		return
	}
	size := 0
	for _, nr := range nested {
		size += len(nr.prefix) + 1 + len(w.m.removed[nr.i].Path)
	}
	var b strings.Builder
	b.Grow(size)
	for _, nr := range nested {
		b.WriteString(nr.prefix)
		b.WriteByte('.')
		b.WriteString(w.m.removed[nr.i].Path)
	}
	joined := b.String()
	for _, nr := range nested {
		f := &w.m.removed[nr.i]
		n := len(nr.prefix) + 1 + len(f.Path)
		f.Path, joined = joined[:n], joined[n:]
	}
}

func joinPath(prefix, k string) string {
	if prefix == "" {
		return k
	}
	return prefix + "." + k
}

// removeUnclassified reports the member k of the object at prefix removed as
// unclassified: by its path, or, when k is not a plain name, as
// prefix.(name withheld), once for all such members of the object.
func (m *minimised) removeUnclassified(prefix, k string, size int) {
	if plainName(k) {
		m.remove(joinPath(prefix, k), FieldUnclassified, size)
		return
	}
	if m.withheld == nil {
		m.withheld = make(map[string]bool)
	}
	if !m.withheld[prefix] {
		m.withheld[prefix] = true
		m.remove(withheldPath(prefix), FieldUnclassified, size)
	}
}

func (m *minimised) remove(path, reason string, size int) {
	if m.removed == nil {
		m.removed = make(Removed, 0, size)
	}
	m.removed = append(m.removed, RemovedField{Path: path, Reason: reason})
}
