package agreements

import "strings"

// minimised is the result of rule 5 for one record.
type minimised struct {
	record     map[string]any
	kept       []string
	removed    Removed
	categories []string
}

// minimise applies rule 5: a field is kept when the dataset classifies its
// path and sc permits the category. Paths are dotted: a record member that
// is an object is walked when the dataset classifies paths below it, and a
// member named with dots ("payment.method") matches the same path. An
// unclassified member is removed whole. With no scope (no agreement or legal
// order in force) every field is reported removed; with no dataset every
// top-level member is unclassified. Kept paths and categories come out
// sorted and distinct.
func (r *Registry) minimise(di *datasetIndex, sc *scope, rec map[string]any) minimised {
	var m minimised
	if di == nil {
		for k := range rec {
			m.remove(k, FieldUnclassified, len(rec))
		}
		return m
	}
	var keepBuf [64]bool
	keep := keepBuf[:0]
	if n := len(di.sorted); n <= len(keepBuf) {
		keep = keepBuf[:n]
	} else {
		keep = make([]bool, n)
	}
	w := walker{di: di, sc: sc, m: &m, keep: keep, size: len(rec)}
	m.record = w.walk(di.root, "", rec)
	if sc == nil {
		return m
	}
	var catBuf [4]uint64
	cats := catSet(catBuf[:0])
	if n := (len(r.categories) + 63) / 64; n <= len(catBuf) {
		cats = catBuf[:n]
	} else {
		cats = make(catSet, n)
	}
	count := 0
	for ord, k := range keep {
		if k {
			count++
			cats.add(di.sorted[ord].catID)
		}
	}
	m.kept = make([]string, 0, count)
	m.categories = make([]string, 0, count)
	for ord, k := range keep {
		if k {
			m.kept = append(m.kept, di.sorted[ord].path)
		}
	}
	for id, c := range r.categories {
		if cats.has(id) {
			m.categories = append(m.categories, c)
		}
	}
	return m
}

// walker carries one minimisation through the record.
type walker struct {
	di   *datasetIndex
	sc   *scope
	m    *minimised
	keep []bool // by leaf position in di.sorted
	size int
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
			w.m.remove(joinPath(prefix, k), FieldUnclassified, w.size)
		case n.children == nil: // a classified leaf
			if w.sc == nil || !w.sc.cats.has(n.catID) {
				w.m.remove(n.path, FieldCategoryNotPermitted, w.size)
				continue
			}
			if out == nil {
				out = make(map[string]any, min(len(rec), children.size))
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
					out = make(map[string]any, min(len(rec), children.size))
				}
				out[k] = subOut
			}
		}
	}
	return out
}

func joinPath(prefix, k string) string {
	if prefix == "" {
		return k
	}
	return prefix + "." + k
}

func (m *minimised) remove(path, reason string, size int) {
	if m.removed == nil {
		m.removed = make(Removed, 0, size)
	}
	m.removed = append(m.removed, RemovedField{Path: path, Reason: reason})
}
