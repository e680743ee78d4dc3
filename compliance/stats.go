package compliance

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/uptrace/bun"
)

// The audit store's entry table, read for aggregates. Every query below
// bounds "at" or selects by an indexed column, so it is an index range scan.
const entriesTable = "audit_entries"

// DayCount is the number of decisions of one day, destination and outcome.
type DayCount struct {
	Day      string `bun:"day" json:"day"`
	Country  string `bun:"country" json:"country"`
	Decision string `bun:"decision" json:"decision"`
	Count    int64  `bun:"n" json:"count"`
}

// ReasonCount is how often a refusal reason occurred.
type ReasonCount struct {
	Reason string `json:"reason"`
	Text   string `json:"text"`
	Count  int64  `json:"count"`
}

// Overview holds the console's overview figures for a window.
type Overview struct {
	From       time.Time     `json:"from"`
	To         time.Time     `json:"to"`
	Days       []DayCount    `json:"days"`
	TopReasons []ReasonCount `json:"top_reasons"`
	Allowed    int64         `json:"allowed"`
	Refused    int64         `json:"refused"`
}

// overviewTTL is how long an overview is served from memory: a dashboard
// reloads often, and each refresh reads the log's new entries and the
// window's partial hours (see rollup).
const overviewTTL = 30 * time.Second

type overviewCache struct {
	mu      sync.Mutex
	entries map[[2]time.Time]cachedOverview
}

type cachedOverview struct {
	ov *Overview
	at time.Time
}

// overview returns the figures of [from, to), from the cache when they were
// computed less than overviewTTL ago.
func (s *Server) overview(ctx context.Context, from, to time.Time) (*Overview, error) {
	key := [2]time.Time{from, to}
	now := s.opts.Now()
	c := &s.ovCache
	c.mu.Lock()
	if e, ok := c.entries[key]; ok && now.Sub(e.at) < overviewTTL {
		c.mu.Unlock()
		return e.ov, nil
	}
	c.mu.Unlock()
	ov, err := s.rollupOverview(ctx, from, to)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil || len(c.entries) > 64 {
		c.entries = map[[2]time.Time]cachedOverview{}
	}
	c.entries[key] = cachedOverview{ov: ov, at: now}
	return ov, nil
}

// VersionSeen is a registry or agreement version as the audit log saw it:
// the first and last decision that rested on it, and how many.
type VersionSeen struct {
	AgreementID      string    `bun:"agreement_id" json:"agreement_id,omitempty"`
	AgreementVersion int       `bun:"agreement_version" json:"agreement_version,omitempty"`
	RegistryVersion  string    `bun:"registry_version" json:"registry_version"`
	First            time.Time `bun:"first_at" json:"first"`
	Last             time.Time `bun:"last_at" json:"last"`
	Decisions        int64     `bun:"n" json:"decisions"`
}

// versionKey is an agreement version under a registry version (an empty
// agreement id: decisions that rested on no agreement).
type versionKey struct {
	agreementID      string
	agreementVersion int
	registryVersion  string
}

// versionCells is the versions' rollup (see rollup): per versionKey, the
// first and last decision that rested on it and how many. It has no time
// buckets: the rollup holds the whole log, and the agreement pages read
// only the decisions written since their last call.
type versionCells map[versionKey]VersionSeen

func (c versionCells) count(ctx context.Context, db bun.IDB, _ bucketing, _ bool, where func(*bun.SelectQuery) *bun.SelectQuery) error {
	return addVersions(ctx, db, c, where)
}

func (c versionCells) size() int { return len(c) }

// addVersions merges into cells the decisions where selects.
func addVersions(ctx context.Context, db bun.IDB, cells map[versionKey]VersionSeen, where func(*bun.SelectQuery) *bun.SelectQuery) error {
	var rows []VersionSeen
	q := db.NewSelect().TableExpr(entriesTable).
		ColumnExpr("agreement_id, agreement_version, registry_version").
		ColumnExpr("min(at) AS first_at").ColumnExpr("max(at) AS last_at").ColumnExpr("count(*) AS n").
		Where("event = ?", "decided").GroupExpr("1, 2, 3")
	if err := where(q).Scan(ctx, &rows); err != nil {
		return fmt.Errorf("compliance: versions seen: %w", err)
	}
	for _, r := range rows {
		mergeVersion(cells, versionKey{r.AgreementID, r.AgreementVersion, r.RegistryVersion}, r)
	}
	return nil
}

// mergeVersion adds v's decisions to cells[k].
func mergeVersion(cells map[versionKey]VersionSeen, k versionKey, v VersionSeen) {
	c, ok := cells[k]
	if !ok {
		cells[k] = v
		return
	}
	if v.First.Before(c.First) {
		c.First = v.First
	}
	if v.Last.After(c.Last) {
		c.Last = v.Last
	}
	c.Decisions += v.Decisions
	cells[k] = c
}

// versionsSeen returns the cells of every decision in the log: up to the
// stable sequence from the versions' rollup, which it brings up to date,
// and above it from the log. keep selects the cells wanted, and the
// returned map is the caller's.
func (s *Server) versionsSeen(ctx context.Context, keep func(versionKey) bool) (map[versionKey]VersionSeen, error) {
	db, r := s.opts.DB, &s.versions
	r.mu.Lock()
	hi, err := r.update(keepBuilding(ctx), db, s.opts.Audit, time.Time{})
	if err != nil {
		r.mu.Unlock()
		return nil, err
	}
	out := map[versionKey]VersionSeen{}
	for k, v := range r.cells.(versionCells) {
		if keep(k) {
			out[k] = v
		}
	}
	r.mu.Unlock()
	above := versionCells{}
	if err := above.count(ctx, db, oneBucket, false, func(q *bun.SelectQuery) *bun.SelectQuery { return q.Where("seq > ?", hi) }); err != nil {
		return nil, err
	}
	for k, v := range above {
		if keep(k) {
			mergeVersion(out, k, v)
		}
	}
	return out, nil
}

// sortVersions orders vs oldest first.
func sortVersions(vs []VersionSeen) {
	sort.Slice(vs, func(i, j int) bool {
		a, b := vs[i], vs[j]
		if !a.First.Equal(b.First) {
			return a.First.Before(b.First)
		}
		if a.RegistryVersion != b.RegistryVersion {
			return a.RegistryVersion < b.RegistryVersion
		}
		return a.AgreementVersion < b.AgreementVersion
	})
}

// registryVersions lists every registry version decisions were made with,
// oldest first.
func (s *Server) registryVersions(ctx context.Context) ([]VersionSeen, error) {
	cells, err := s.versionsSeen(ctx, func(k versionKey) bool { return k.registryVersion != "" })
	if err != nil {
		return nil, fmt.Errorf("compliance: registry versions: %w", err)
	}
	return byRegistryVersion(cells), nil
}

// byRegistryVersion merges cells per registry version, oldest first.
func byRegistryVersion(cells map[versionKey]VersionSeen) []VersionSeen {
	merged := map[versionKey]VersionSeen{}
	for k, v := range cells {
		v.AgreementID, v.AgreementVersion = "", 0
		mergeVersion(merged, versionKey{registryVersion: k.registryVersion}, v)
	}
	out := make([]VersionSeen, 0, len(merged))
	for _, v := range merged {
		out = append(out, v)
	}
	sortVersions(out)
	return out
}

// agreementVersions lists the versions of one agreement decisions rested
// on, per registry version, oldest first.
func (s *Server) agreementVersions(ctx context.Context, id string) ([]VersionSeen, error) {
	cells, err := s.versionsSeen(ctx, func(k versionKey) bool { return k.agreementID == id })
	if err != nil {
		return nil, fmt.Errorf("compliance: agreement history: %w", err)
	}
	out := make([]VersionSeen, 0, len(cells))
	for _, v := range cells {
		out = append(out, v)
	}
	sortVersions(out)
	return out, nil
}

// flowRow is one distinct flow of transfers for the records of
// processing. A transfer is a delivery the recipient accepted (an entry of
// event delivered), not an allow decision: an allowed request whose
// delivery fails for good is dead-lettered and transfers nothing.
type flowRow struct {
	Purpose    string `bun:"purpose"`
	LegalBasis string `bun:"legal_basis"`
	Dataset    string `bun:"dataset"`
	Recipient  string `bun:"recipient"`
	Country    string `bun:"recipient_country"`
	Origin     string `bun:"origin"`
	Mechanism  string `bun:"mechanism"`
	Categories string `bun:"categories_sent"`
	Agreement  string `bun:"agreement_id"`
	N          int64  `bun:"n"`
}

// flowCell is one flow of one bucket (flowRow without its count).
type flowCell struct {
	bucket string
	flow   flowRow
}

// flowTally counts the transfers (deliveries) per bucket and flow, and the key
// references entries name per bucket, for the records of processing.
type flowTally struct {
	flows   map[flowCell]int64
	keyRefs map[[2]string]bool
}

func newFlowTally() *flowTally {
	return &flowTally{flows: map[flowCell]int64{}, keyRefs: map[[2]string]bool{}}
}

func (t *flowTally) size() int { return len(t.flows) + len(t.keyRefs) }

// flowColumns are the columns that make a flow.
const flowColumns = "purpose, legal_basis, dataset, recipient, recipient_country, origin, mechanism, categories_sent, agreement_id"

// count adds to t the transfers (deliveries) and key references where
// selects, bucketed by bk; byTime as for whereIs.
func (t *flowTally) count(ctx context.Context, db bun.IDB, bk bucketing, byTime bool, where func(*bun.SelectQuery) *bun.SelectQuery) error {
	var rows []struct {
		Bucket string `bun:"bucket"`
		flowRow
	}
	inner := db.NewSelect().TableExpr(entriesTable).ColumnExpr(bk.group + " AS b").ColumnExpr(flowColumns).
		ColumnExpr("count(*) AS n").GroupExpr("1, " + flowColumns)
	inner = where(whereIs(whereIs(inner, db, byTime, "event", "delivered"), db, byTime, "decision", "allow"))
	if err := grouped(db, bk, inner, flowColumns+", n").Scan(ctx, &rows); err != nil {
		return fmt.Errorf("compliance: records of processing: %w", err)
	}
	for _, r := range rows {
		n := r.N
		r.N = 0
		t.flows[flowCell{r.Bucket, r.flowRow}] += n
	}
	var refs []struct {
		Bucket string `bun:"bucket"`
		KeyRef string `bun:"key_ref"`
	}
	inner = db.NewSelect().TableExpr(entriesTable).ColumnExpr(bk.group + " AS b").ColumnExpr("key_ref").
		Where("key_ref <> ''").GroupExpr("1, 2")
	if err := grouped(db, bk, where(inner), "key_ref").Scan(ctx, &refs); err != nil {
		return fmt.Errorf("compliance: records of processing keys: %w", err)
	}
	for _, r := range refs {
		t.keyRefs[[2]string{r.Bucket, r.KeyRef}] = true
	}
	return nil
}

// add adds to rows and refs the flows and key references of t's buckets
// in [lo, hi) (an empty hi: every bucket).
func (t *flowTally) add(rows map[flowRow]int64, refs map[string]bool, lo, hi string) {
	for c, n := range t.flows {
		if c.bucket >= lo && (hi == "" || c.bucket < hi) {
			rows[c.flow] += n
		}
	}
	for k := range t.keyRefs {
		if k[0] >= lo && (hi == "" || k[0] < hi) {
			refs[k[1]] = true
		}
	}
}

// flowList turns the flows and key references add collected into
// BuildROPA's input, in a stable order.
func flowList(rows map[flowRow]int64, refs map[string]bool) ([]flowRow, []string) {
	out := make([]flowRow, 0, len(rows))
	for f, n := range rows {
		f.N = n
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return fmt.Sprint(out[i]) < fmt.Sprint(out[j]) })
	keys := make([]string, 0, len(refs))
	for k := range refs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return out, keys
}

// flows returns the flows of transfers (deliveries) and the key references
// of [from, to), counted from the log.
func flows(ctx context.Context, db *bun.DB, from, to time.Time) ([]flowRow, []string, error) {
	t := newFlowTally()
	// One bucket for the whole window: nothing to compute per entry.
	err := t.count(ctx, db, oneBucket, true, func(q *bun.SelectQuery) *bun.SelectQuery {
		return q.Where("at >= ?", from).Where("at < ?", to)
	})
	if err != nil {
		return nil, nil, err
	}
	rows, refs := map[flowRow]int64{}, map[string]bool{}
	t.add(rows, refs, "", "")
	list, keys := flowList(rows, refs)
	return list, keys, nil
}

// rollupFlows returns what flows does, the whole days of [from, to) from
// the records of processing's rollup (fromRollup).
func (s *Server) rollupFlows(ctx context.Context, from, to time.Time) ([]flowRow, []string, error) {
	list, keys, _, err := flowsFromRollup(ctx, s.opts.DB, s.opts.Audit, &s.flowRollup, from, to)
	return list, keys, err
}

// flowsFromRollup returns what flows does, the whole days of [from, to)
// from r (windowFromRollup); used says whether the window held any.
func flowsFromRollup(ctx context.Context, db *bun.DB, log AuditLog, r *rollup, from, to time.Time) (list []flowRow, keys []string, used bool, err error) {
	rows, refs := map[flowRow]int64{}, map[string]bool{}
	rest := newFlowTally()
	err = windowFromRollup(ctx, db, log, r, from, to, rest, func(lo, hi string) {
		used = true
		r.cells.(*flowTally).add(rows, refs, lo, hi)
	})
	if err != nil {
		return nil, nil, false, err
	}
	rest.add(rows, refs, "", "")
	list, keys = flowList(rows, refs)
	return list, keys, used, nil
}
