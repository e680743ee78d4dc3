package agreements

import "slices"

// minimised is the result of rule 5 for one record.
type minimised struct {
	record     map[string]any
	kept       []string
	removed    map[string]string
	categories []string
}

// minimise applies rule 5: a field is kept when the dataset classifies its
// path and sc permits the category. Paths are dotted: a record member that
// is an object is walked when the dataset classifies paths below it, and a
// member named with dots ("payment.method") matches the same path. An
// unclassified member is removed whole. With no scope (no agreement or legal
// order in force, or an unknown dataset) every field is reported removed.
func minimise(ds *datasetIndex, sc *scope, rec map[string]any) minimised {
	m := minimised{}
	if sc != nil && ds != nil {
		m.record = make(map[string]any, len(rec))
		m.kept = make([]string, 0, len(rec))
	}
	m.walk(ds, sc, "", rec, m.record)
	if len(m.kept) > 1 {
		slices.Sort(m.kept)
	}
	if len(m.categories) > 1 {
		slices.Sort(m.categories)
		m.categories = slices.Compact(m.categories)
	}
	return m
}

func (m *minimised) walk(ds *datasetIndex, sc *scope, prefix string, rec, out map[string]any) {
	for k, v := range rec {
		path := k
		if prefix != "" {
			path = prefix + "." + k
		}
		if ds == nil {
			m.remove(path, FieldUnclassified)
			continue
		}
		if cat, ok := ds.leaves[path]; ok {
			if sc == nil || !sc.permits(cat) {
				m.remove(path, FieldCategoryNotPermitted)
				continue
			}
			out[k] = v
			m.kept = append(m.kept, path)
			m.categories = append(m.categories, cat)
			continue
		}
		if sub, ok := v.(map[string]any); ok && ds.inner[path] {
			var subOut map[string]any
			if out != nil {
				subOut = make(map[string]any, len(sub))
			}
			m.walk(ds, sc, path, sub, subOut)
			if len(subOut) > 0 {
				out[k] = subOut
			}
			continue
		}
		m.remove(path, FieldUnclassified)
	}
}

func (m *minimised) remove(path, reason string) {
	if m.removed == nil {
		m.removed = make(map[string]string, 4)
	}
	m.removed[path] = reason
}
