package audit

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/lestrrat-go/jwx/v2/jws"
)

// FindingUnsealed is what Verify reports where entries go unsealed for
// longer than the log's checkpoint cadence allows (VerifyOptions): more
// entries of one chain after its last checkpoint than the cadence lets
// accumulate, or one of them older than the checkpoint interval allows.
// Checkpoints were removed, as by someone who rewrote the chain, which only
// a checkpoint can tell, or are not signed (the signer is failing, or a
// writer stopped without its final checkpoint). Sequence is the first entry
// concerned and Report.ProblemLast the last. Entries before a checkpoint
// the chain matches are proven by it, however many there are.
const FindingUnsealed Finding = "unsealed"

// minCheckpointSlack is the least VerifyOptions.CheckpointSlack defaults
// to: two full batches at the default Options.MaxBatch.
const minCheckpointSlack = 1024

// Report is what Verify checked. It holds counts and sequence numbers only.
type Report struct {
	// Entries is the number of entries whose hash and link were checked.
	Entries int64 `json:"entries"`
	// FirstSequence and LastSequence bound the entries checked.
	FirstSequence int64 `json:"first_sequence"`
	LastSequence  int64 `json:"last_sequence"`
	// Anchor is the last sequence removed by retention (0 if none); the
	// chain was checked from the anchor hash of its signed manifest.
	Anchor int64 `json:"anchor"`
	// Checkpoints is the number of checkpoints verified and matched, and
	// LastCheckpoint the sequence of the last of them.
	Checkpoints    int   `json:"checkpoints"`
	LastCheckpoint int64 `json:"last_checkpoint"`
	// Unsealed counts the entries after the last checkpoint: chained but not
	// yet covered by a signature.
	Unsealed int64 `json:"unsealed"`
	// Mirrored is the number of checkpoints of VerifyOptions.Mirrored
	// (the copies kept outside the database) past the archive anchor, each
	// checked against the log's row of its sequence, or against the chain
	// where the row is missing.
	Mirrored int `json:"mirrored"`
	// SignaturesChecked is false when Verify ran without a Verifier: the
	// checkpoints were then compared with the chain but not authenticated.
	SignaturesChecked bool `json:"signatures_checked"`
	// Problem is the first tampering found, nil if none.
	Problem *TamperError `json:"problem,omitempty"`
	// ProblemLast, when not 0, is the last sequence of the range that
	// Problem concerns, from Problem.Sequence: a run of unsealed entries,
	// or the entries of which one changed where Verify cannot tell which
	// (between two checkpoints).
	ProblemLast int64 `json:"problem_last_sequence,omitempty"`
}

// VerifyOptions are the options of VerifyWith.
type VerifyOptions struct {
	// Manifests, when set, verifies the signed manifest of the log's last
	// archive (the retention key's, audit archive --signing-key), and the
	// Verifier given to VerifyWith the checkpoints alone: a checkpoint
	// signed with the retention key, which whoever runs retention holds
	// besides the database, is then refused rather than taken for the
	// writers'. Nil: the Verifier verifies both.
	Manifests Verifier

	// RefuseManifestKey refuses a checkpoint signed with a key that
	// signed one of the log's archive manifests (each verified, and
	// required to follow on from the first entry, when Manifests is nil):
	// a retention key signs manifests, and whoever holds it besides the
	// database could otherwise seal a rewritten chain where the Verifier
	// also holds it (one key set for both, as audit verify --jwks was used
	// before --archive-jwks). Leave it false only where one key signs
	// both.
	RefuseManifestKey bool

	// Progress, when set, is called from the walk every ProgressEvery
	// entries and once when it has read the last.
	Progress func(Progress)
	// ProgressEvery is how many entries lie between two calls of Progress
	// (default 10,000).
	ProgressEvery int64

	// CheckpointEvery and CheckpointInterval are the cadence the log's
	// writers sign checkpoints at (their Options; audit.checkpoint_every
	// and audit.checkpoint_interval of clearance serve). Verify holds the
	// log to it, because entries that no checkpoint seals are vouched for
	// by the chain alone, which whoever removed their checkpoint can have
	// rewritten. It reports FindingUnsealed for more than
	// CheckpointEvery+CheckpointSlack entries of one chain after its last
	// checkpoint (or the archive anchor, or the genesis), and, when
	// CheckpointInterval is set, for an entry after the last checkpoint of
	// its chain older than CheckpointInterval+Grace. Entries appended while Verify runs are
	// not held to either. CheckpointEvery 0 takes the Log's
	// Options.CheckpointEvery (so a read-only Log needs the writers' value
	// here or in its Options); negative leaves runs unchecked.
	// CheckpointInterval 0 leaves the age of unsealed entries unchecked:
	// entry times are the appenders', and only a caller who knows that
	// they stamp the time of the append, as the broker does, should set it.
	CheckpointEvery    int64
	CheckpointInterval time.Duration
	// CheckpointSlack is how many entries more than CheckpointEvery a run
	// may hold: those appended while a due checkpoint is read, signed and
	// stored (default CheckpointEvery, at least 1024).
	CheckpointSlack int64
	// Grace is how much older than CheckpointInterval an unsealed entry
	// may be: a checkpoint that failed once, and skew between the writers'
	// clock and this one (default CheckpointInterval, at least a minute).
	Grace time.Duration

	// Mirrored are the compact JWS of the checkpoints kept outside the
	// database (Options.OnCheckpoint, audit/mirror). Each is verified like
	// the log's own and held against the log: a row of its sequence with
	// another head is FindingBadCheckpoint; entries that no longer match
	// it are FindingChanged, found though whoever rewrote them deleted the
	// row; a row missing while its entries match is FindingRemoved, after
	// every entry was checked.
	Mirrored []string
}

// cadence is the checkpoint cadence a verification holds a log to: runs of
// more than maxRun entries (0: any) and unsealed entries older than maxAge
// (0: any) are FindingUnsealed.
type cadence struct {
	every, maxRun int64
	interval      time.Duration
	maxAge        time.Duration
}

// cadence resolves the options' checkpoint cadence against the log's.
func (o VerifyOptions) cadence(log Options) cadence {
	var c cadence
	switch c.every = o.CheckpointEvery; {
	case c.every == 0:
		c.every = log.CheckpointEvery
		fallthrough
	case c.every > 0:
		slack := o.CheckpointSlack
		if slack <= 0 {
			slack = max(c.every, minCheckpointSlack)
		}
		c.maxRun = c.every + slack
	}
	if c.interval = o.CheckpointInterval; c.interval > 0 {
		grace := o.Grace
		if grace <= 0 {
			grace = max(c.interval, time.Minute)
		}
		c.maxAge = c.interval + grace
	}
	return c
}

// run is a run of entries that no checkpoint has sealed yet: from first to
// last, n of them, the oldest written at oldest.
type run struct {
	first, last, n int64
	oldest         time.Time
}

// runs follows, entry by entry, the unsealed run of every chain of a
// layout and, on a forked log, that of the single chain before the fork
// (the last), which a checkpoint of any chain after the fork seals, since
// every chain continues from the fork entry.
type runs struct {
	ly   layout
	open []run
}

func newRuns(ly layout) *runs {
	n := ly.k
	if ly.k > 1 {
		n++
	}
	return &runs{ly: ly, open: make([]run, n)}
}

// of returns the index of the run that seq belongs to.
func (rs *runs) of(seq int64) int {
	if rs.ly.k > 1 && seq <= rs.ly.fork {
		return int(rs.ly.k)
	}
	return rs.ly.chainOf(seq)
}

// add adds the entry seq, written at at, to its run.
func (rs *runs) add(seq int64, at time.Time) {
	r := &rs.open[rs.of(seq)]
	if r.n == 0 {
		r.first, r.oldest = seq, at
	}
	r.n++
	r.last = seq
	if at.Before(r.oldest) {
		r.oldest = at
	}
}

// sealing returns the runs that a checkpoint at seq seals: the run of its
// chain and, past the fork, that before the fork.
func (rs *runs) sealing(seq int64) []*run {
	i := rs.of(seq)
	out := []*run{&rs.open[i]}
	if rs.ly.k > 1 && i < int(rs.ly.k) {
		out = append(out, &rs.open[rs.ly.k])
	}
	return out
}

// first returns the first entry that a checkpoint at seq would seal (seq
// if none is unsealed before it).
func (rs *runs) first(seq int64) int64 {
	first := seq
	for _, r := range rs.sealing(seq) {
		if r.n > 0 {
			first = min(first, r.first)
		}
	}
	return first
}

// problem returns the first run after the last checkpoint, by its first
// entry, that c finds too long (with its detail) or, now, too old, or nil.
func (c cadence) problem(rs []*run, now time.Time) (*run, string) {
	var worst *run
	var detail string
	for _, r := range rs {
		if r.n == 0 || (worst != nil && worst.first < r.first) {
			continue
		}
		switch {
		case c.maxRun > 0 && r.n > c.maxRun:
			worst, detail = r, fmt.Sprintf("entries %d to %d (%d of them) follow the last checkpoint, "+
				"though one is signed every %d entries: checkpoints are missing, or the tail was never sealed", r.first, r.last, r.n, c.every)
		case c.maxAge > 0 && now.Sub(r.oldest) > c.maxAge:
			worst, detail = r, fmt.Sprintf("entries %d to %d (%d of them) follow the last checkpoint, some older than %s, "+
				"though one is signed every %s: checkpoints are missing, or the tail was never sealed", r.first, r.last, r.n, c.maxAge, c.interval)
		}
	}
	return worst, detail
}

// Progress is how far a verification's walk has come.
type Progress struct {
	// Entries is the number of entries checked so far, and Sequence the
	// last of them.
	Entries  int64 `json:"entries"`
	Sequence int64 `json:"sequence"`
	// Total is about how many entries the walk checks: the sequences from
	// its start to the highest chain head when it began. Entries appended
	// during the walk are checked too, and a chain that lags behind the
	// others leaves sequences still unwritten.
	Total int64 `json:"total"`
}

// Verify recomputes the hash chains from the retained anchor (or the
// genesis) to their heads, checks every checkpoint and the latest archive
// manifest against v, and returns a Report. When it finds tampering it
// stops, sets Report.Problem and returns it as a *TamperError (errors.Is
// ErrTampered); other errors are the store's. v may be nil to check the
// chains without authenticating signatures. Appends may continue while
// Verify runs.
func (l *Log) Verify(ctx context.Context, v Verifier) (*Report, error) {
	return l.VerifyWith(ctx, v, VerifyOptions{})
}

// VerifyWith is Verify with options: it reports the walk's progress.
func (l *Log) VerifyWith(ctx context.Context, v Verifier, opts VerifyOptions) (*Report, error) {
	if opts.ProgressEvery <= 0 {
		opts.ProgressEvery = 10_000
	}
	rep := &Report{SignaturesChecked: v != nil}
	failWith := func(problem *TamperError) (*Report, error) {
		rep.Problem = problem
		return rep, rep.Problem
	}
	fail := func(f Finding, seq int64, detail string) (*Report, error) {
		return failWith(&TamperError{Finding: f, Sequence: seq, Detail: detail})
	}
	failRange := func(f Finding, first, last int64, detail string) (*Report, error) {
		if last > first {
			rep.ProblemLast = last
		}
		return fail(f, first, detail)
	}
	cad := opts.cadence(l.opts)
	ly, err := loadLayout(ctx, l.db)
	if err != nil {
		return rep, err
	}
	start, prev := int64(1), genesisHash
	var anchors []ChainAnchor
	var arch archiveRow
	switch err := l.db.NewSelect().Model(&arch).Order("to_seq DESC").Limit(1).Scan(ctx); {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return rep, fmt.Errorf("audit: verify: read archives: %w", err)
	default:
		var m Manifest
		mv := opts.Manifests
		if mv == nil {
			mv = v
		}
		if err := openSigned(ctx, mv, arch.Manifest, &m); err != nil {
			return failWith(signatureProblem(FindingBadCheckpoint, arch.ToSeq, "archive manifest: ", err))
		}
		if opts.RefuseManifestKey && v != nil {
			kids, problem, err := l.manifestKeys(ctx, v, opts.Manifests == nil, &m)
			if err != nil {
				return rep, err
			}
			if problem != nil {
				return failWith(problem)
			}
			v = notSignedBy{v: v, kids: kids}
		}
		if m.ToSequence != arch.ToSeq || m.AnchorHash != arch.AnchorHash {
			return fail(FindingBadCheckpoint, arch.ToSeq, "archive row differs from its signed manifest")
		}
		start, prev, anchors, rep.Anchor = arch.ToSeq+1, arch.AnchorHash, m.ToChains, arch.ToSeq
	}
	w, err := newWalker(ly, start, prev, anchors)
	if err != nil {
		return fail(FindingBadCheckpoint, arch.ToSeq, "archive manifest: "+err.Error())
	}

	// Entries are held to the cadence as they stood now: those appended
	// after it may be sealed by checkpoints this walk does not know of.
	now := l.opts.Now()
	var cps []checkpointRow
	if err := l.db.NewSelect().Model(&cps).Where("seq >= ?", start).Order("seq").Scan(ctx); err != nil {
		return rep, fmt.Errorf("audit: verify: read checkpoints: %w", err)
	}
	signed := make(map[int64]string, len(cps))
	// vouched holds the chain heads that checkpoints of a log written as
	// several chains name besides their own (Checkpoint.Chains), each
	// struck off when the walk meets its entry: one left over is an entry
	// removed with its own chain's later checkpoints and head row.
	vouched := map[int64]string{}
	vouch := func(c *Checkpoint) {
		for _, h := range c.Chains {
			if h.Sequence >= start && h.Sequence > ly.fork && h.Sequence != c.Sequence {
				vouched[h.Sequence] = h.Head
			}
		}
	}
	for _, cp := range cps {
		var c Checkpoint
		if err := openSigned(ctx, v, cp.JWS, &c); err != nil {
			return failWith(signatureProblem(FindingBadCheckpoint, cp.Seq, "checkpoint: ", err))
		}
		if c.Sequence != cp.Seq || c.Head != cp.Head {
			return fail(FindingBadCheckpoint, cp.Seq, "checkpoint row differs from its signed payload")
		}
		signed[cp.Seq] = c.Head
		vouch(&c)
	}
	// The mirrored copies: those of sequences the log has lost its row of
	// join the checkpoints the walk holds the chain to.
	var lost []int64
	copied := make(map[int64]bool, len(opts.Mirrored))
	for _, jws := range opts.Mirrored {
		// Read unverified first: the copy of an archived checkpoint (its
		// manifest vouches for it), or a second copy, is not checked.
		var c Checkpoint
		if err := openSigned(ctx, nil, jws, &c); err != nil {
			return fail(FindingBadCheckpoint, 0, "mirrored checkpoint: "+err.Error())
		}
		if c.Sequence < start || copied[c.Sequence] && signed[c.Sequence] == c.Head {
			continue
		}
		if err := openSigned(ctx, v, jws, &c); err != nil {
			return failWith(signatureProblem(FindingBadCheckpoint, c.Sequence, "mirrored checkpoint: ", err))
		}
		copied[c.Sequence] = true
		vouch(&c)
		rep.Mirrored++
		head, ok := signed[c.Sequence]
		switch {
		case ok && head != c.Head:
			return fail(FindingBadCheckpoint, c.Sequence, "checkpoint row differs from its mirrored copy")
		case !ok:
			signed[c.Sequence] = c.Head
			cps = append(cps, checkpointRow{Seq: c.Sequence, Head: c.Head})
			lost = append(lost, c.Sequence)
		}
	}
	slices.SortFunc(cps, func(a, b checkpointRow) int { return cmp.Compare(a.Seq, b.Seq) })
	slices.Sort(lost)

	heads0, err := readHeads(ctx, l.db, ly)
	if err != nil {
		return rep, err
	}
	// beyondHead reports whether seq lies past the head of its chain as it
	// is now: rows appended during the walk are legitimate, rows past the
	// current head were not written through the log.
	beyondHead := func(seq int64) (bool, error) {
		c := ly.chainOf(seq)
		if seq <= heads0[c].Seq {
			return false, nil
		}
		hs, err := readHeads(ctx, l.db, ly)
		if err != nil {
			return false, err
		}
		return seq > hs[c].Seq, nil
	}
	// missing returns the lowest sequence below seq that a chain lacks:
	// the next entry of chain own, or that of another chain if the chain's
	// head (when the walk began) is at or past it. The chains' entries
	// interleave, so a removed entry is found here before the walk reaches
	// the next entry of its own chain.
	missing := func(seq int64, own int) int64 {
		var low int64
		for c, st := range w.lanes {
			if (c == 0 || w.forked) && st.Next < seq && (c == own || st.Next <= heads0[c].Seq) && (low == 0 || st.Next < low) {
				low = st.Next
			}
		}
		return low
	}

	progress := Progress{}
	for _, h := range heads0 {
		progress.Total = max(progress.Total, h.Seq-start+1)
	}
	report := func() {
		if opts.Progress != nil {
			progress.Entries, progress.Sequence = rep.Entries, rep.LastSequence
			opts.Progress(progress)
		}
	}

	// An entry's time is read in a form that any stored value scans
	// from, so that a time changed to one the log cannot hold names its
	// entry rather than stopping the walk with a read error: on SQLite
	// as its text, parsed below; on Postgres as NULL outside the years 1
	// to 9999 (a zero time, which no entry's hash covers).
	q := l.db.NewSelect().Model((*entryRow)(nil)).ExcludeColumn("at")
	textTime := !isPostgres(l.db)
	if textTime {
		q = q.ColumnExpr("CAST(at AS TEXT) AS at_text")
	} else {
		q = q.ColumnExpr("CASE WHEN at >= '0001-01-01 00:00:00+00' AND at < '10000-01-01 00:00:00+00' THEN at END AS at")
	}
	rows, err := q.Order("seq").Rows(ctx)
	if err != nil {
		return rep, fmt.Errorf("audit: verify: read entries: %w", err)
	}
	defer rows.Close()
	headHash := make([]string, ly.k)
	// unsealed follows the runs of entries that existed when the walk
	// began and no checkpoint has sealed yet.
	unsealed := newRuns(ly)
	// beyond holds, per chain, the entries walked past its head as it was
	// when the walk began. Each is held to the head as it is once the walk
	// ends: the log moves a chain's head in the transaction that adds the
	// entry, so an entry the walk read lies at or below it, unless the
	// head row was moved back (to pass rewritten entries off as appended
	// during the walk) or the entry was written outside the log.
	beyond := make([][]int64, ly.k)
	for rows.Next() {
		var vr verifyRow
		if err := l.db.ScanRow(ctx, rows, &vr); err != nil {
			return rep, fmt.Errorf("audit: verify: scan entry: %w", err)
		}
		r := &vr.entryRow
		c, st := w.lane(r.Seq)
		if r.Seq < st.Next {
			return fail(FindingInserted, r.Seq, "entry before the start of the chain")
		}
		problemIn := func(f Finding, first, last int64, detail string) (*Report, error) {
			switch out, err := beyondHead(r.Seq); {
			case err != nil:
				return rep, err
			case out:
				return fail(FindingInserted, r.Seq, "entry past the chain head")
			}
			return failRange(f, first, last, detail)
		}
		problem := func(f Finding, seq int64, detail string) (*Report, error) {
			return problemIn(f, seq, seq, detail)
		}
		if gap := missing(r.Seq, c); gap != 0 {
			return problem(FindingRemoved, gap, "entry missing from the chain")
		}
		if textTime {
			at, err := time.Parse(storedTimeLayout, vr.AtText)
			if err != nil {
				return problem(FindingChanged, r.Seq, "entry time is not a time the log writes")
			}
			r.At = at
		}
		e, err := r.entry()
		if err != nil || computeHash(&e) != r.Hash {
			return problem(FindingChanged, r.Seq, "content does not match the entry's hash")
		}
		if textTime && vr.AtText != storedTime(r.At) {
			return problem(FindingChanged, r.Seq, "entry time is not stored as the log writes it (UTC): "+
				"it still matches the hash, but time-filtered queries compare the text and miss it")
		}
		if r.PrevHash != st.Prev {
			if st.last < start && rep.Anchor > 0 {
				return problem(FindingChanged, r.Seq, "entry does not continue from the archive anchor")
			}
			if h, ok := signed[st.last]; ok && h == st.Prev {
				// The entry before is sealed as it is: this one changed.
				return problem(FindingChanged, r.Seq, fmt.Sprintf("entry does not link to entry %d, which checkpoint %d seals", st.last, st.last))
			}
			return problemIn(FindingChanged, st.last, r.Seq, fmt.Sprintf("entry %d's hash is not the one entry %d recorded: one of the two was changed", st.last, r.Seq))
		}
		if h, ok := signed[r.Seq]; ok && h != r.Hash {
			// Every entry matches its own hash and links to the one
			// before: the chain was rewritten consistently, somewhere
			// after the previous seal, and only the checkpoint tells.
			first := unsealed.first(r.Seq)
			return problemIn(FindingChanged, first, r.Seq, fmt.Sprintf("an entry from %d to %d was changed and the chain rewritten "+
				"after it, which entry the chain cannot tell: it no longer matches checkpoint %d", first, r.Seq, r.Seq))
		}
		if h, ok := vouched[r.Seq]; ok {
			if h != r.Hash {
				first := unsealed.first(r.Seq)
				return problemIn(FindingChanged, first, r.Seq, fmt.Sprintf("an entry from %d to %d was changed and the chain rewritten "+
					"after it: entry %d no longer matches the head another chain's checkpoint recorded", first, r.Seq, r.Seq))
			}
			delete(vouched, r.Seq)
		}
		if r.Seq == heads0[c].Seq {
			headHash[c] = r.Hash
		}
		w.step(r.Seq, r.Hash)
		if r.Seq <= heads0[c].Seq {
			unsealed.add(r.Seq, r.At)
		} else {
			beyond[c] = append(beyond[c], r.Seq)
		}
		if _, ok := signed[r.Seq]; ok {
			// A checkpoint that the chain matches vouches for every entry
			// before it, however long the run: a run longer than the
			// cadence here is a signer outage or a removed checkpoint in
			// between, neither of which leaves an entry unproven.
			for _, sealed := range unsealed.sealing(r.Seq) {
				*sealed = run{}
			}
			rep.Checkpoints++
			rep.LastCheckpoint = r.Seq
		}
		if rep.Entries == 0 {
			rep.FirstSequence = r.Seq
		}
		rep.Entries++
		rep.LastSequence = r.Seq
		if rep.Entries%opts.ProgressEvery == 0 {
			report()
		}
	}
	if err := rows.Err(); err != nil {
		return rep, fmt.Errorf("audit: verify: read entries: %w", err)
	}
	report()
	// The entries appended during the walk, after every checkpoint known.
	appended := int64(0)
	for _, seqs := range beyond {
		appended += int64(len(seqs))
	}
	if appended > 0 {
		hs, err := readHeads(ctx, l.db, ly)
		if err != nil {
			return rep, err
		}
		for c, seqs := range beyond {
			if i := slices.IndexFunc(seqs, func(seq int64) bool { return seq > hs[c].Seq }); i >= 0 {
				return failRange(FindingInserted, seqs[i], seqs[len(seqs)-1], "entries past the chain head: written outside the log, or the head moved back over them")
			}
		}
	}
	if len(vouched) > 0 {
		gone := slices.Sorted(maps.Keys(vouched))
		return failRange(FindingRemoved, gone[0], gone[len(gone)-1], fmt.Sprintf(
			"%d entries that checkpoints of other chains recorded as their chain's head are missing, with their own chain's later checkpoints", len(gone)))
	}
	if gap := missing(math.MaxInt64, -1); gap != 0 {
		return fail(FindingRemoved, gap, "entries missing before the chain head")
	}
	for c, h := range heads0 {
		if headHash[c] != "" && headHash[c] != h.Hash {
			return fail(FindingChanged, h.Seq, "hash differs from the recorded chain head")
		}
		if headHash[c] == "" && h.Seq >= start && (c == 0 || h.Seq > ly.fork) {
			return fail(FindingChanged, h.Seq, "hash differs from the recorded chain head")
		}
	}
	for _, cp := range cps {
		if _, st := w.lane(cp.Seq); cp.Seq >= st.Next {
			return fail(FindingRemoved, st.Next, fmt.Sprintf("entries sealed by checkpoint %d are missing", cp.Seq))
		}
	}
	if len(lost) > 0 {
		return failRange(FindingRemoved, lost[0], lost[len(lost)-1], fmt.Sprintf(
			"%d checkpoints kept outside the database are missing from the log, though its entries still match them", len(lost)))
	}
	tail := make([]*run, len(unsealed.open))
	rep.Unsealed = appended
	for i := range unsealed.open {
		tail[i] = &unsealed.open[i]
		rep.Unsealed += tail[i].n
	}
	if bad, detail := cad.problem(tail, now); bad != nil {
		return failRange(FindingUnsealed, bad.first, bad.last, detail)
	}
	return rep, nil
}

// openSigned verifies a compact JWS with v (or, if v is nil, only decodes
// it) and unmarshals its payload into dst.
// manifestKeys returns the key IDs that signed the log's archive
// manifests, last (verified already) the newest: every retention key, not
// only the last, since one replaced may be held still. Where one Verifier
// takes both the manifests and the checkpoints (merged), whoever holds an
// older retention key and the database could drop or alter the older
// manifests so that their key is not refused: each is then verified with
// v, and the archives must follow on from the first entry to the last
// manifest's, else a bad_checkpoint problem. Otherwise (the manifests
// verified apart, by keys the checkpoints' Verifier does not hold) their
// key IDs are read as they are stored.
func (l *Log) manifestKeys(ctx context.Context, v Verifier, merged bool, last *Manifest) (map[string]bool, *TamperError, error) {
	var rows []archiveRow
	if err := l.db.NewSelect().Model(&rows).Order("to_seq").Scan(ctx); err != nil {
		return nil, nil, fmt.Errorf("audit: verify: read archives: %w", err)
	}
	kids := map[string]bool{}
	next := int64(1)
	for i := range rows {
		r := &rows[i]
		if kid := signedKeyID(r.Manifest); kid != "" {
			kids[kid] = true
		}
		if !merged {
			continue
		}
		m := last
		if i < len(rows)-1 {
			m = &Manifest{}
			if err := openSigned(ctx, v, r.Manifest, m); err != nil {
				return nil, signatureProblem(FindingBadCheckpoint, r.ToSeq, "archive manifest: ", err), nil
			}
		}
		if m.FromSequence != next || m.ToSequence != r.ToSeq {
			return nil, &TamperError{Finding: FindingBadCheckpoint, Sequence: r.ToSeq, Detail: fmt.Sprintf(
				"archive manifest: covers %d-%d where the archives before it end at %d", m.FromSequence, m.ToSequence, next-1)}, nil
		}
		next = m.ToSequence + 1
	}
	return kids, nil, nil
}

// notSignedBy is a Verifier that refuses what the keys kids signed (the
// archive manifests' keys) and leaves the rest to v.
type notSignedBy struct {
	v    Verifier
	kids map[string]bool
}

func (n notSignedBy) Verify(ctx context.Context, msg []byte) ([]byte, error) {
	if kid := signedKeyID(string(msg)); n.kids[kid] {
		return nil, fmt.Errorf("signed with key ID %q, a key that signed an archive manifest (a retention key): "+
			"it signs manifests, not checkpoints (--archive-jwks gives the retention keys' set apart from the writers')", kid)
	}
	return n.v.Verify(ctx, msg)
}

// signedKeyID is the kid in the protected header of a compact JWS, "" when
// it has none or cannot be read.
func signedKeyID(compact string) string {
	m, err := jws.Parse([]byte(compact))
	if err != nil || len(m.Signatures()) != 1 {
		return ""
	}
	return m.Signatures()[0].ProtectedHeaders().KeyID()
}

func openSigned(ctx context.Context, v Verifier, jws string, dst any) error {
	var payload []byte
	if v != nil {
		p, err := v.Verify(ctx, []byte(jws))
		if err != nil {
			return fmt.Errorf("signature: %w", err)
		}
		payload = p
	} else {
		parts := bytes.Split([]byte(jws), []byte("."))
		if len(parts) != 3 {
			return errors.New("not a compact JWS")
		}
		p, err := base64.RawURLEncoding.DecodeString(string(parts[1]))
		if err != nil {
			return fmt.Errorf("payload: %w", err)
		}
		payload = p
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return fmt.Errorf("payload: %w", err)
	}
	return nil
}

// verifyRow is an entry as verify reads it: on SQLite, where a time is
// text, with that text as stored.
type verifyRow struct {
	entryRow
	AtText string `bun:"at_text,scanonly"`
}

// storedTime is the text an entry's time is stored as on SQLite: the form
// the log writes, UTC to the microsecond, whose text order is the time
// order that queries and retention rely on.
func storedTime(at time.Time) string {
	return at.UTC().Format(storedTimeLayout)
}

// storedTimeLayout is the layout of storedTime, which also parses the
// times verify reads back on SQLite.
const storedTimeLayout = "2006-01-02 15:04:05.999999-07:00"
