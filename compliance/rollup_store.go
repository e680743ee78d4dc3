package compliance

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/uptrace/bun"
)

// A rollup is also saved in the store (compliance_rollups), so that a new
// console process, or one started again, goes on from the counts a process
// left instead of counting the window or the whole log once more: on a log
// of hundreds of millions of entries that first count takes minutes to
// hours. A saved rollup is only a starting point. It is taken only when it
// still describes the log: the same last archive, a sequence not above the
// log's stable one, and at that sequence the same entry hash (a log
// restored from another database, or written again from the start, has
// other hashes). A rollup's counts then advance from its sequence as they
// do in memory.
//
// Each process saves the rollups it holds after a build, and otherwise at
// most once a minute while they advance; of two processes the one whose
// rollup holds more entries wins. Saving is best effort: a failure is
// logged and the rollup goes on in memory.

// rollupRow is one saved rollup.
type rollupRow struct {
	bun.BaseModel `bun:"table:compliance_rollups"`

	// Name is the rollup's name and the format of its cells
	// ("overview/1"): a process reads only the format it writes.
	Name     string    `bun:"name,pk"`
	Hi       int64     `bun:"hi,notnull"`
	HiHash   string    `bun:"hi_hash,notnull"`
	Archived int64     `bun:"archived,notnull"`
	From     time.Time `bun:"from_time,notnull"`
	SavedAt  time.Time `bun:"saved_at,notnull"`
	Cells    string    `bun:"cells,notnull"`
}

// saveRollupEvery is how often a rollup that advanced is saved, at most.
// A variable for tests.
var saveRollupEvery = time.Minute

// entryHash returns the hash of the entry with sequence seq, or "" when the
// log holds none (an empty log, or a sequence an archive removed).
func entryHash(ctx context.Context, db bun.IDB, seq int64) (string, error) {
	var h string
	err := db.NewSelect().TableExpr(entriesTable).Column("hash").Where("seq = ?", seq).Scan(ctx, &h)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("compliance: entry %d: %w", seq, err)
	}
	return h, nil
}

// restore takes r's saved state when it still describes the log, whose
// stable sequence and last archive are given, and reports whether it did.
// A saved rollup that no longer applies is left for the next save to
// replace.
func (r *rollup) restore(ctx context.Context, db *bun.DB, stable, archived int64) (bool, error) {
	var row rollupRow
	err := db.NewSelect().Model(&row).Where("name = ?", r.name).Scan(ctx)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("compliance: read saved rollup %s: %w", r.name, err)
	}
	if row.Archived != archived || row.Hi > stable {
		return false, nil
	}
	h, err := entryHash(ctx, db, row.Hi)
	if err != nil || h != row.HiHash {
		return false, err
	}
	c := r.newCells()
	if err := c.decode([]byte(row.Cells)); err != nil {
		return false, fmt.Errorf("compliance: saved rollup %s: %w", r.name, err)
	}
	r.rollupState = rollupState{built: true, hi: row.Hi, archived: row.Archived}
	r.from, r.cells = row.From.UTC(), c
	r.saved = savedState{hi: row.Hi, from: r.from, at: time.Now()}
	return true, nil
}

// errNoSavedRollup: a read-only rollup has no saved state to go on from.
var errNoSavedRollup = errors.New("compliance: no saved rollup")

// savedState is what r last saved, or restored.
type savedState struct {
	hi   int64
	from time.Time
	at   time.Time
}

// save writes r to the store when it holds entries or a range the saved one
// does not, and either must (a build, or a range reaching further back)
// or saveRollupEvery has passed since the last save. The row is replaced
// only by a rollup holding at least as many entries, so that two
// processes do not undo each other's progress.
func (r *rollup) save(ctx context.Context, db *bun.DB, must bool) error {
	if r.name == "" || r.readOnly || !r.built || r.hi == r.saved.hi && r.from.Equal(r.saved.from) {
		return nil
	}
	now := time.Now()
	if !must && now.Sub(r.saved.at) < saveRollupEvery {
		return nil
	}
	cells, err := r.cells.encode()
	if err != nil {
		return fmt.Errorf("compliance: save rollup %s: %w", r.name, err)
	}
	h, err := entryHash(ctx, db, r.hi)
	if err != nil {
		return err
	}
	row := &rollupRow{Name: r.name, Hi: r.hi, HiHash: h, Archived: r.archived, From: r.from, SavedAt: now.UTC(), Cells: string(cells)}
	_, err = db.NewInsert().Model(row).
		On("CONFLICT (name) DO UPDATE").
		Set("hi = EXCLUDED.hi, hi_hash = EXCLUDED.hi_hash, archived = EXCLUDED.archived").
		Set("from_time = EXCLUDED.from_time, saved_at = EXCLUDED.saved_at, cells = EXCLUDED.cells").
		Where("EXCLUDED.archived > ?TableAlias.archived OR " +
			"EXCLUDED.archived = ?TableAlias.archived AND EXCLUDED.hi >= ?TableAlias.hi").
		Exec(ctx)
	if err != nil {
		return fmt.Errorf("compliance: save rollup %s: %w", r.name, err)
	}
	r.saved = savedState{hi: r.hi, from: r.from, at: now}
	return nil
}

// The cells' saved forms: lists of their cells, with short names.

type tallyCellJSON struct {
	Bucket   string `json:"b"`
	Country  string `json:"c"`
	Decision string `json:"d"`
	N        int64  `json:"n"`
}

type reasonCellJSON struct {
	Bucket  string `json:"b"`
	Reasons string `json:"r"`
	N       int64  `json:"n"`
}

type tallyJSON struct {
	Counts  []tallyCellJSON  `json:"counts"`
	Reasons []reasonCellJSON `json:"reasons"`
}

func (t *tally) encode() ([]byte, error) {
	out := tallyJSON{Counts: make([]tallyCellJSON, 0, len(t.counts)), Reasons: make([]reasonCellJSON, 0, len(t.reasons))}
	for k, n := range t.counts {
		out.Counts = append(out.Counts, tallyCellJSON{k.bucket, k.country, k.decision, n})
	}
	for k, n := range t.reasons {
		out.Reasons = append(out.Reasons, reasonCellJSON{k[0], k[1], n})
	}
	return json.Marshal(out)
}

func (t *tally) decode(b []byte) error {
	var in tallyJSON
	if err := json.Unmarshal(b, &in); err != nil {
		return err
	}
	for _, c := range in.Counts {
		t.counts[tallyKey{c.Bucket, c.Country, c.Decision}] += c.N
	}
	for _, c := range in.Reasons {
		t.reasons[[2]string{c.Bucket, c.Reasons}] += c.N
	}
	return nil
}

type flowCellJSON struct {
	Bucket string  `json:"b"`
	Flow   flowRow `json:"f"`
	N      int64   `json:"n"`
}

type flowTallyJSON struct {
	Flows   []flowCellJSON `json:"flows"`
	KeyRefs [][2]string    `json:"key_refs"`
}

func (t *flowTally) encode() ([]byte, error) {
	out := flowTallyJSON{Flows: make([]flowCellJSON, 0, len(t.flows)), KeyRefs: make([][2]string, 0, len(t.keyRefs))}
	for c, n := range t.flows {
		out.Flows = append(out.Flows, flowCellJSON{c.bucket, c.flow, n})
	}
	for k := range t.keyRefs {
		out.KeyRefs = append(out.KeyRefs, k)
	}
	return json.Marshal(out)
}

func (t *flowTally) decode(b []byte) error {
	var in flowTallyJSON
	if err := json.Unmarshal(b, &in); err != nil {
		return err
	}
	for _, c := range in.Flows {
		c.Flow.N = 0
		t.flows[flowCell{c.Bucket, c.Flow}] += c.N
	}
	for _, k := range in.KeyRefs {
		t.keyRefs[k] = true
	}
	return nil
}

func (c versionCells) encode() ([]byte, error) {
	out := make([]VersionSeen, 0, len(c))
	for k, v := range c {
		v.AgreementID, v.AgreementVersion, v.RegistryVersion = k.agreementID, k.agreementVersion, k.registryVersion
		out = append(out, v)
	}
	return json.Marshal(out)
}

func (c versionCells) decode(b []byte) error {
	var in []VersionSeen
	if err := json.Unmarshal(b, &in); err != nil {
		return err
	}
	for _, v := range in {
		v.First, v.Last = v.First.UTC(), v.Last.UTC()
		mergeVersion(c, versionKey{v.AgreementID, v.AgreementVersion, v.RegistryVersion}, v)
	}
	return nil
}
