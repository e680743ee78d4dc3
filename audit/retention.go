package audit

import (
	"bufio"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/uptrace/bun"
)

// ErrArchiveConflict is returned by Archive when another archive of the same
// log committed first; the caller may run it again.
var ErrArchiveConflict = errors.New("audit: another archive committed first")

// ErrArchiveOutcomeUnknown is matched (errors.Is) by the error Archive
// returns when the COMMIT that removes the entries failed and whether it
// took effect cannot be found out, as when the connection dropped with the
// COMMIT on its way and the database cannot be reached since. The entries
// may have left the log: Archive returns the manifest and its JWS with it,
// and the export written to w must be kept until the log shows which (an
// archive row, and Verify's anchor, at the manifest's ToSequence).
var ErrArchiveOutcomeUnknown = errors.New("audit: archive: outcome of the commit unknown")

// Manifest describes one retention archive. It is signed (JWS) and stored in
// audit_archives; Verify continues the chain from AnchorHash.
type Manifest struct {
	FromSequence int64     `json:"from_sequence"`
	ToSequence   int64     `json:"to_sequence"`
	Entries      int64     `json:"entries"`
	PrevHash     string    `json:"prev_hash"`
	AnchorHash   string    `json:"anchor_hash"`
	Before       time.Time `json:"before"`
	CreatedAt    time.Time `json:"created_at"`
	// SHA256 is the hex digest of the JSON lines export.
	SHA256 string `json:"sha256"`
	// Checkpoints are the signed checkpoints that sealed the archived range.
	Checkpoints []string `json:"checkpoints"`
	// Chains and ForkSequence are the log's layout when it has more than
	// one chain (see the package documentation); FromChains and ToChains
	// are then, for each chain, where it stood before the archived range
	// (when that starts past the fork) and where it continues after it
	// (when it ends at or past the fork).
	Chains       int64         `json:"chains,omitempty"`
	ForkSequence int64         `json:"fork_sequence,omitempty"`
	FromChains   []ChainAnchor `json:"from_chains,omitempty"`
	ToChains     []ChainAnchor `json:"to_chains,omitempty"`
}

// Archive writes every entry older than before (the longest run from the
// start of the retained chain whose times are all before it, up to the last
// checkpoint in it that seals every chain) to w as JSON lines, signs a
// Manifest of them, records it and removes the entries and their
// checkpoints in one transaction. It checks the archived range's chain
// first and refuses to archive a broken one. It returns the manifest and its
// JWS, or nil and no error when nothing is older than before. Keep the export
// and the JWS together: VerifyArchive checks one against the other. A w
// with a Sync method (an *os.File) is synced before the entries are
// removed. s signs the manifest; nil means the log's Signer (ErrReadOnly if
// it has none). It must be a key whose public part verifiers hold, like the
// checkpoints'.
//
// When the COMMIT fails, Archive looks its manifest up to learn whether it
// took effect anyway (the reply lost, not the COMMIT): if it did, Archive
// succeeds; if that cannot be learnt, it returns the manifest and its JWS
// with an error matching ErrArchiveOutcomeUnknown, and the export may be
// the entries' only copy. Any other error means nothing left the log.
func (l *Log) Archive(ctx context.Context, s Signer, before time.Time, w io.Writer) (*Manifest, []byte, error) {
	if s == nil {
		s = l.opts.Signer
	}
	if s == nil {
		return nil, nil, ErrReadOnly
	}
	before = before.UTC().Truncate(time.Microsecond)
	ly, err := loadLayout(ctx, l.db)
	if err != nil {
		return nil, nil, err
	}
	var last archiveRow
	start, prev := int64(1), genesisHash
	var from []ChainAnchor
	switch err := l.db.NewSelect().Model(&last).Order("to_seq DESC").Limit(1).Scan(ctx); {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return nil, nil, fmt.Errorf("audit: archive: read archives: %w", err)
	default:
		var lm Manifest
		if err := openSigned(ctx, nil, last.Manifest, &lm); err != nil {
			return nil, nil, fmt.Errorf("audit: archive: last manifest: %w", err)
		}
		start, prev, from = last.ToSeq+1, last.AnchorHash, lm.ToChains
	}
	heads, err := readHeads(ctx, l.db, ly)
	if err != nil {
		return nil, nil, err
	}
	// Archive no further than every chain has reached (see stableOf).
	to := stableOf(ly, heads)
	var firstKept sql.NullInt64
	if err := l.db.NewSelect().Model((*entryRow)(nil)).ColumnExpr("MIN(seq)").
		Where("at >= ?", before).Scan(ctx, &firstKept); err != nil {
		return nil, nil, fmt.Errorf("audit: archive: find horizon: %w", err)
	}
	if firstKept.Valid {
		to = min(to, firstKept.Int64-1)
	}
	if to < start {
		return nil, nil, nil
	}
	var cps []checkpointRow
	if err := l.db.NewSelect().Model(&cps).Where("seq BETWEEN ? AND ?", start, to).Order("seq").Scan(ctx); err != nil {
		return nil, nil, fmt.Errorf("audit: archive: read checkpoints: %w", err)
	}
	// Archive no further than checkpoints seal: the manifest vouches for
	// what it removes, and an entry after its chain's last checkpoint is
	// vouched for by the chain alone.
	if to = sealedThrough(ly, cps, to); to < start {
		return nil, nil, nil
	}
	cw, err := newWalker(ly, start, prev, from)
	if err != nil {
		return nil, nil, fmt.Errorf("audit: archive: last manifest: %w", err)
	}

	m := &Manifest{FromSequence: start, ToSequence: to, PrevHash: prev, Before: before,
		CreatedAt: l.opts.Now().UTC().Truncate(time.Microsecond), Checkpoints: []string{}}
	if ly.k > 1 {
		m.Chains, m.ForkSequence, m.FromChains = ly.k, ly.fork, from
	}
	sealed := make(map[int64]string, len(cps))
	for _, cp := range cps {
		if cp.Seq > to {
			break
		}
		m.Checkpoints = append(m.Checkpoints, cp.JWS)
		sealed[cp.Seq] = cp.Head
	}
	sum := sha256.New()
	bw := bufio.NewWriter(io.MultiWriter(w, sum))
	enc := json.NewEncoder(bw)
	err = l.Scan(ctx, Filter{AfterSequence: start - 1}, func(e *Entry) error {
		if e.Sequence > to {
			return errStopScan
		}
		_, st := cw.lane(e.Sequence)
		if e.Sequence != start+m.Entries || e.Sequence != st.Next || e.PrevHash != st.Prev || computeHash(e) != e.Hash {
			return &TamperError{Finding: FindingChanged, Sequence: e.Sequence, Detail: "chain broken in the range to archive"}
		}
		if h, ok := sealed[e.Sequence]; ok && h != e.Hash {
			return &TamperError{Finding: FindingChanged, Sequence: e.Sequence, Detail: "checkpoint does not match"}
		}
		cw.step(e.Sequence, e.Hash)
		prev = e.Hash
		m.Entries++
		return enc.Encode(e)
	})
	if err != nil && !errors.Is(err, errStopScan) {
		return nil, nil, fmt.Errorf("audit: archive: %w", err)
	}
	if m.Entries != to-start+1 {
		return nil, nil, fmt.Errorf("audit: archive: %w", &TamperError{Finding: FindingRemoved,
			Sequence: start + m.Entries, Detail: "entry missing in the range to archive"})
	}
	m.ToChains = cw.anchors()
	if err := bw.Flush(); err != nil {
		return nil, nil, fmt.Errorf("audit: archive: write: %w", err)
	}
	// The entries leave the log below: a file they went to is made durable
	// first, so that a crash cannot leave them in neither.
	if f, ok := w.(interface{ Sync() error }); ok {
		if err := f.Sync(); err != nil {
			return nil, nil, fmt.Errorf("audit: archive: write: %w", err)
		}
	}
	m.AnchorHash, m.SHA256 = prev, hex.EncodeToString(sum.Sum(nil))

	payload, err := json.Marshal(m)
	if err != nil {
		return nil, nil, fmt.Errorf("audit: archive: %w", err)
	}
	sigs, err := s.Sign(ctx, [][]byte{payload})
	if err != nil || len(sigs) != 1 {
		return nil, nil, fmt.Errorf("audit: archive: sign manifest: %w", errors.Join(err, errSignCount(len(sigs))))
	}
	row := &archiveRow{ToSeq: to, FromSeq: start, AnchorHash: m.AnchorHash, At: m.CreatedAt, Manifest: string(sigs[0])}
	tx, err := l.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("audit: archive: begin: %w", err)
	}
	if err := recordArchive(ctx, tx, row); err != nil {
		// No COMMIT was sent: nothing left the log.
		_ = tx.Rollback()
		return nil, nil, fmt.Errorf("audit: archive: %w", err)
	}
	if err := tx.Commit(); err != nil {
		// The COMMIT may have reached the database and its reply been
		// lost: whether the entries left the log is found out, not
		// assumed, since w may now be their only copy.
		switch ok, lerr := l.archiveCommitted(ctx, row); {
		case lerr != nil:
			return m, sigs[0], fmt.Errorf("%w: entries %d to %d: commit: %w; look-up: %w", ErrArchiveOutcomeUnknown, start, to, err, lerr)
		case !ok:
			return nil, nil, fmt.Errorf("audit: archive: commit: %w", err)
		}
		l.log.Warn("audit archive committed, its commit reply was lost", "from_seq", start, "to_seq", to, "error", err)
	}
	l.log.Info("audit entries archived", "from_seq", start, "to_seq", to)
	return m, sigs[0], nil
}

// recordArchive, in tx, records row and removes the entries and checkpoints
// it archives, or returns ErrArchiveConflict if another archive committed
// since row's range was chosen.
func recordArchive(ctx context.Context, tx bun.Tx, row *archiveRow) error {
	if _, err := lockHead(ctx, tx, 0); err != nil {
		return err
	}
	var latest int64
	if err := tx.NewSelect().Model((*archiveRow)(nil)).ColumnExpr("COALESCE(MAX(to_seq), 0)").Scan(ctx, &latest); err != nil {
		return err
	}
	if latest != row.FromSeq-1 {
		return ErrArchiveConflict
	}
	if _, err := tx.NewInsert().Model(row).Exec(ctx); err != nil {
		return err
	}
	if _, err := tx.NewDelete().Model((*entryRow)(nil)).Where("seq <= ?", row.ToSeq).Exec(ctx); err != nil {
		return err
	}
	_, err := tx.NewDelete().Model((*checkpointRow)(nil)).Where("seq <= ?", row.ToSeq).Exec(ctx)
	return err
}

// How long, and how often, Archive tries to find out whether an archive
// whose COMMIT failed committed (archiveCommitted).
const (
	archiveLookupTimeout  = 30 * time.Second
	archiveLookupAttempts = 5
	archiveLookupBackoff  = 250 * time.Millisecond
)

// archiveCommitted reports whether row, whose transaction's COMMIT
// returned an error, is in audit_archives: true if it committed, false if
// it did not, an error if that cannot be found out (the database cannot be
// reached within archiveLookupTimeout). It goes on when ctx is cancelled, a
// cancellation being one way a COMMIT fails.
func (l *Log) archiveCommitted(ctx context.Context, row *archiveRow) (bool, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), archiveLookupTimeout)
	defer cancel()
	wait := archiveLookupBackoff
	for attempt := 1; ; attempt++ {
		ok, err := l.lookUpArchive(ctx, row)
		if err == nil || attempt == archiveLookupAttempts {
			return ok, err
		}
		select {
		case <-ctx.Done():
			return false, err
		case <-time.After(wait):
		}
		wait *= 2
	}
}

// lookUpArchive is one attempt of archiveCommitted. The transaction that
// tried to commit row held the head's lock until it ended: once the lock is
// had here, it has ended, committed or not, and a read that starts after
// that sees which. (The read is a statement of its own so that it sees
// that commit under any isolation level.) The pool's connection that the
// COMMIT failed on is gone: the driver closes a connection on such an
// error.
func (l *Log) lookUpArchive(ctx context.Context, row *archiveRow) (bool, error) {
	tx, err := l.db.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	_, err = lockHead(ctx, tx, 0)
	_ = tx.Rollback()
	if err != nil {
		return false, err
	}
	var got archiveRow
	switch err := l.db.NewSelect().Model(&got).Where("to_seq = ?", row.ToSeq).Scan(ctx); {
	case errors.Is(err, sql.ErrNoRows):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("read archives: %w", err)
	}
	// Another archive of the same range, committed after this one failed,
	// holds another manifest.
	return got.Manifest == row.Manifest, nil
}

var errStopScan = errors.New("stop scan")

// sealedThrough returns the highest sequence, at most to, up to which the
// checkpoints cps (in sequence order, none above to) seal every entry of
// every chain of ly: a checkpoint seals the entries of its chain up to it
// and, past the fork, every entry up to the fork. 0 if none.
func sealedThrough(ly layout, cps []checkpointRow, to int64) int64 {
	last := make([]int64, ly.k) // each chain's last checkpoint past the fork
	var pre int64               // the last checkpoint up to the fork
	for _, cp := range cps {
		if ly.k > 1 && cp.Seq <= ly.fork {
			pre = cp.Seq
			continue
		}
		last[ly.chainOf(cp.Seq)] = cp.Seq
	}
	if ly.k > 1 && slices.Max(last) > 0 {
		pre = ly.fork
	}
	for _, cp := range last {
		if cp == 0 {
			// A chain unsealed past the fork: only what is before the
			// fork, and sealed, goes.
			cp = pre
		}
		to = min(to, cp)
	}
	return to
}

func errSignCount(n int) error {
	if n == 1 {
		return nil
	}
	return fmt.Errorf("signer returned %d signatures for 1 payload", n)
}

// VerifyArchive checks an archive export r against its manifest JWS: the
// signature (with v), the digest of the export, and the chain from the
// manifest's PrevHash to its AnchorHash including every checkpoint it lists.
func VerifyArchive(ctx context.Context, r io.Reader, manifestJWS []byte, v Verifier) (*Manifest, error) {
	return VerifyArchiveWith(ctx, r, manifestJWS, v, v)
}

// VerifyArchiveWith is VerifyArchive with the manifest verified by
// manifests (the retention key's) and the checkpoints it carries by v (the
// writers'), so that a checkpoint signed with the retention key is refused.
func VerifyArchiveWith(ctx context.Context, r io.Reader, manifestJWS []byte, v, manifests Verifier) (*Manifest, error) {
	var m Manifest
	if err := openSigned(ctx, manifests, string(manifestJWS), &m); err != nil {
		return nil, fmt.Errorf("audit: verify archive: manifest: %w", err)
	}
	sealed := map[int64]string{}
	for _, jws := range m.Checkpoints {
		var c Checkpoint
		if err := openSigned(ctx, v, jws, &c); err != nil {
			return &m, fmt.Errorf("audit: verify archive: %w", signatureProblem(FindingBadCheckpoint, 0, "", err))
		}
		sealed[c.Sequence] = c.Head
	}
	ly := singleChain
	if m.Chains > 1 {
		ly = layout{k: m.Chains, fork: m.ForkSequence}
	}
	cw, err := newWalker(ly, m.FromSequence, m.PrevHash, m.FromChains)
	if err != nil {
		return &m, fmt.Errorf("audit: verify archive: %w", &TamperError{Finding: FindingBadCheckpoint, Detail: "manifest: " + err.Error()})
	}
	sum := sha256.New()
	tee := io.TeeReader(r, sum)
	dec := json.NewDecoder(tee)
	prev, n := m.PrevHash, int64(0)
	for dec.More() {
		var e Entry
		if err := dec.Decode(&e); err != nil {
			return &m, fmt.Errorf("audit: verify archive: decode: %w", err)
		}
		seq := m.FromSequence + n
		if e.Sequence != seq {
			return &m, &TamperError{Finding: FindingRemoved, Sequence: seq, Detail: "entry missing from the archive"}
		}
		if _, st := cw.lane(seq); seq != st.Next || e.PrevHash != st.Prev || computeHash(&e) != e.Hash {
			return &m, &TamperError{Finding: FindingChanged, Sequence: seq, Detail: "archived entry does not match the chain"}
		}
		if h, ok := sealed[seq]; ok && h != e.Hash {
			return &m, &TamperError{Finding: FindingChanged, Sequence: seq, Detail: "checkpoint does not match"}
		}
		cw.step(seq, e.Hash)
		prev = e.Hash
		n++
	}
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return &m, fmt.Errorf("audit: verify archive: %w", err)
	}
	if n != m.Entries || prev != m.AnchorHash {
		return &m, &TamperError{Finding: FindingRemoved, Sequence: m.FromSequence + n, Detail: "archive shorter than its manifest"}
	}
	if !slices.Equal(cw.anchors(), m.ToChains) {
		return &m, &TamperError{Finding: FindingChanged, Sequence: m.ToSequence, Detail: "chains end elsewhere than their manifest says"}
	}
	if hex.EncodeToString(sum.Sum(nil)) != m.SHA256 {
		return &m, &TamperError{Finding: FindingChanged, Sequence: m.FromSequence, Detail: "archive digest differs from its manifest"}
	}
	return &m, nil
}
