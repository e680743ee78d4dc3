package agreements

// decisionBuffers is the memory a Decision passed to Engine.DecideInto keeps
// between decisions, so that a caller deciding one request after another
// allocates nothing once its Decision has grown to the size of its records.
type decisionBuffers struct {
	reasons []string // backing of Decision.Reasons
	removed Removed  // backing of Decision.Fields.Removed
	lists   []string // backing of Decision.Fields.Kept and Decision.Categories
	// maps holds the objects of the minimised record; the first used of
	// them are in use by the current decision.
	maps []map[string]any
	used int
	// paths remembers the dotted paths of unclassified members inside
	// objects ("payment.cvv"), which are the same from one record of a
	// dataset to the next; key is a scratch buffer to look them up with.
	paths map[string]string
	key   []byte
}

// maxRememberedPaths bounds decisionBuffers.paths: records with ever new
// member names cost a string each, not an ever larger map.
const maxRememberedPaths = 256

// release empties the record maps of the previous decision, so that a
// reused Decision keeps no record data beyond the next decision, and makes
// them available again.
func (b *decisionBuffers) release() {
	for _, m := range b.maps[:b.used] {
		clear(m)
	}
	b.used = 0
}

// newMap returns an empty map for an object of the minimised record.
func (b *decisionBuffers) newMap(size int) map[string]any {
	if b.used < len(b.maps) {
		b.used++
		return b.maps[b.used-1]
	}
	m := make(map[string]any, size)
	b.maps = append(b.maps, m)
	b.used++
	return m
}

// list returns an empty slice with room for n strings.
func (b *decisionBuffers) list(n int) []string {
	if b.lists == nil || cap(b.lists) < n {
		b.lists = make([]string, 0, n)
	}
	return b.lists[:0]
}

// joinPath returns prefix + "." + name, allocating only for a path it has
// not returned before.
func (b *decisionBuffers) joinPath(prefix, name string) string {
	b.key = append(append(append(b.key[:0], prefix...), '.'), name...)
	if p, ok := b.paths[string(b.key)]; ok {
		return p
	}
	p := string(b.key)
	switch {
	case b.paths == nil:
		b.paths = make(map[string]string)
	case len(b.paths) == maxRememberedPaths:
		clear(b.paths)
	}
	b.paths[p] = p
	return p
}
