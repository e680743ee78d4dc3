package audit

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
)

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
	// SignaturesChecked is false when Verify ran without a Verifier: the
	// checkpoints were then compared with the chain but not authenticated.
	SignaturesChecked bool `json:"signatures_checked"`
	// Problem is the first tampering found, nil if none.
	Problem *TamperError `json:"problem,omitempty"`
}

// VerifyOptions are the options of VerifyWith.
type VerifyOptions struct {
	// Progress, when set, is called from the walk every ProgressEvery
	// entries and once when it has read the last.
	Progress func(Progress)
	// ProgressEvery is how many entries lie between two calls of Progress
	// (default 10,000).
	ProgressEvery int64
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
		if err := openSigned(ctx, v, arch.Manifest, &m); err != nil {
			return failWith(signatureProblem(FindingBadCheckpoint, arch.ToSeq, "archive manifest: ", err))
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

	var cps []checkpointRow
	if err := l.db.NewSelect().Model(&cps).Where("seq >= ?", start).Order("seq").Scan(ctx); err != nil {
		return rep, fmt.Errorf("audit: verify: read checkpoints: %w", err)
	}
	signed := make(map[int64]string, len(cps))
	for _, cp := range cps {
		var c Checkpoint
		if err := openSigned(ctx, v, cp.JWS, &c); err != nil {
			return failWith(signatureProblem(FindingBadCheckpoint, cp.Seq, "checkpoint: ", err))
		}
		if c.Sequence != cp.Seq || c.Head != cp.Head {
			return fail(FindingBadCheckpoint, cp.Seq, "checkpoint row differs from its signed payload")
		}
		signed[cp.Seq] = c.Head
	}

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

	rows, err := l.db.NewSelect().Model((*entryRow)(nil)).Order("seq").Rows(ctx)
	if err != nil {
		return rep, fmt.Errorf("audit: verify: read entries: %w", err)
	}
	defer rows.Close()
	headHash := make([]string, ly.k)
	for rows.Next() {
		var r entryRow
		if err := l.db.ScanRow(ctx, rows, &r); err != nil {
			return rep, fmt.Errorf("audit: verify: scan entry: %w", err)
		}
		c, st := w.lane(r.Seq)
		if r.Seq < st.Next {
			return fail(FindingInserted, r.Seq, "entry before the start of the chain")
		}
		problem := func(f Finding, seq int64, detail string) (*Report, error) {
			switch out, err := beyondHead(r.Seq); {
			case err != nil:
				return rep, err
			case out:
				return fail(FindingInserted, r.Seq, "entry past the chain head")
			}
			return fail(f, seq, detail)
		}
		if gap := missing(r.Seq, c); gap != 0 {
			return problem(FindingRemoved, gap, "entry missing from the chain")
		}
		e, err := r.entry()
		if err != nil || computeHash(&e) != r.Hash {
			return problem(FindingChanged, r.Seq, "content does not match the entry's hash")
		}
		if r.PrevHash != st.Prev {
			if st.last < start && rep.Anchor > 0 {
				return problem(FindingChanged, r.Seq, "entry does not continue from the archive anchor")
			}
			return problem(FindingChanged, st.last, "hash is not the one the next entry recorded")
		}
		if h, ok := signed[r.Seq]; ok {
			if h != r.Hash {
				first := st.firstUnsealed
				if first == 0 {
					first = r.Seq
				}
				return problem(FindingChanged, first,
					fmt.Sprintf("chain rewritten between entry %d and checkpoint %d", first, r.Seq))
			}
		}
		if r.Seq == heads0[c].Seq {
			headHash[c] = r.Hash
		}
		w.step(r.Seq, r.Hash)
		if _, ok := signed[r.Seq]; ok {
			w.sealed(r.Seq)
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
	for _, st := range w.lanes {
		rep.Unsealed += st.unsealed
	}
	return rep, nil
}

// openSigned verifies a compact JWS with v (or, if v is nil, only decodes
// it) and unmarshals its payload into dst.
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
