package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/driver/pgdriver"
)

// Signer signs checkpoint and manifest payloads, each into a compact JWS. The
// keys package (Vault transit or the development key ring) implements it. It
// must be safe for concurrent use; an error delays the checkpoint but never an
// append.
type Signer interface {
	Sign(ctx context.Context, payloads [][]byte) ([][]byte, error)
}

// Verifier checks a compact JWS and returns its payload. It must be safe for
// concurrent use.
type Verifier interface {
	Verify(ctx context.Context, jws []byte) ([]byte, error)
}

// Options configures a Log. The zero value of every field but SubjectKey and
// Signer has a working default.
type Options struct {
	// SubjectKey is the HMAC-SHA256 key for subject ids (from configuration or
	// Vault; never stored in the database). Required to append entries with a
	// SubjectID and to query by subject id.
	SubjectKey []byte
	// Signer signs checkpoints and archive manifests. Without it the Log is
	// read-only: Append and Archive return ErrReadOnly.
	Signer Signer
	// CheckpointEvery is how many entries at most go unsealed before a
	// checkpoint is signed (default 1000).
	CheckpointEvery int64
	// CheckpointInterval is how long at most new entries go unsealed
	// (default 1 minute).
	CheckpointInterval time.Duration
	// MaxBatch caps the entries of one group-commit transaction (default 512).
	// 1 turns group commit off.
	MaxBatch int
	// WriteTimeout bounds one batch transaction (default 10 seconds).
	WriteTimeout time.Duration
	// Logger receives operational messages; ids and sequence numbers only.
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

func (o *Options) defaults() {
	if o.CheckpointEvery <= 0 {
		o.CheckpointEvery = 1000
	}
	if o.CheckpointInterval <= 0 {
		o.CheckpointInterval = time.Minute
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 512
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Log is the audit log on one *bun.DB. Append, Query, Export, Verify and
// Archive are safe for concurrent use; several Logs (in one process or many)
// may write to one database. Close stops the writer.
type Log struct {
	db   *bun.DB
	opts Options
	log  *slog.Logger

	mu     sync.RWMutex // guards closed and sends on reqs
	closed bool
	reqs   chan *pending

	// head is the chain head as this Log last committed it, used by the
	// writer goroutine only (nil: unknown, read it under the lock).
	head *headRow

	kick     chan struct{} // nudges the checkpointer
	stopCkpt chan struct{}
	wg       sync.WaitGroup
}

type pending struct {
	e   Entry
	res chan result
}

type result struct {
	seq int64
	err error
}

// Open opens the audit log on db. With a Signer it migrates the schema and
// starts the group-commit writer and the checkpointer; without one the Log
// is read-only. The caller keeps ownership of db and closes it after Close.
func Open(ctx context.Context, db *bun.DB, opts Options) (*Log, error) {
	opts.defaults()
	l := &Log{
		db:       db,
		opts:     opts,
		log:      opts.Logger.With("component", "audit"),
		reqs:     make(chan *pending, 4*opts.MaxBatch),
		kick:     make(chan struct{}, 1),
		stopCkpt: make(chan struct{}),
	}
	if opts.Signer == nil {
		l.closed = true
		close(l.stopCkpt)
		return l, nil
	}
	if err := Migrate(ctx, db); err != nil {
		return nil, err
	}
	l.wg.Add(2)
	go l.writer()
	go l.checkpointer()
	return l, nil
}

// Append writes e to the log and returns its sequence number once the entry
// is committed (write-ahead: deliver only after Append returned nil). It
// blocks while the entry waits for its batch. e is not modified; a SubjectID
// is replaced by its HMAC and never stored. An error means the entry may not
// be durable and the caller must not act on it: ErrReadOnly, ErrClosed,
// ErrInvalidEntry, ErrNoSubjectKey, ctx's error, or the store's error for the
// whole batch.
func (l *Log) Append(ctx context.Context, e *Entry) (int64, error) {
	if e == nil || e.Event == "" {
		return 0, fmt.Errorf("%w: no event", ErrInvalidEntry)
	}
	if l.opts.Signer == nil {
		return 0, ErrReadOnly
	}
	p := &pending{res: make(chan result, 1)}
	p.e = e.clone()
	if e.SubjectID != "" {
		if len(l.opts.SubjectKey) == 0 {
			return 0, ErrNoSubjectKey
		}
		p.e.SubjectHMAC = SubjectHMAC(l.opts.SubjectKey, e.SubjectID)
	}
	if e.Time.IsZero() {
		p.e.Time = l.opts.Now().UTC().Truncate(time.Microsecond)
	}
	p.e.Sequence, p.e.PrevHash, p.e.Hash = 0, "", ""

	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return 0, ErrClosed
	}
	select {
	case l.reqs <- p:
		l.mu.RUnlock()
	case <-ctx.Done():
		l.mu.RUnlock()
		return 0, fmt.Errorf("audit: append: %w", ctx.Err())
	}
	select {
	case r := <-p.res:
		return r.seq, r.err
	case <-ctx.Done():
		return 0, fmt.Errorf("audit: append: %w", ctx.Err())
	}
}

// Close stops accepting appends, commits those already queued, writes a
// final checkpoint if the chain moved, and waits for its goroutines. It is
// idempotent and does not close the DB.
func (l *Log) Close(ctx context.Context) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	close(l.reqs)
	l.mu.Unlock()

	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("audit: close: %w", ctx.Err())
	}
}

// writer is the group-commit loop: it takes the first waiting entry, drains
// whatever else is queued up to MaxBatch, and commits them in one
// transaction. While a batch commits, the next one queues up.
func (l *Log) writer() {
	defer l.wg.Done()
	defer close(l.stopCkpt)
	batch := make([]*pending, 0, l.opts.MaxBatch)
	for {
		p, ok := <-l.reqs
		if !ok {
			return
		}
		batch = append(batch[:0], p)
	drain:
		for len(batch) < l.opts.MaxBatch {
			select {
			case p, ok := <-l.reqs:
				if !ok {
					break drain
				}
				batch = append(batch, p)
			default:
				break drain
			}
		}
		l.commit(batch)
	}
}

func (l *Log) commit(batch []*pending) {
	ctx, cancel := context.WithTimeout(context.Background(), l.opts.WriteTimeout)
	defer cancel()
	head, err := l.writeBatch(ctx, batch)
	if err != nil {
		for _, p := range batch {
			p.e.Sequence = 0
		}
		l.log.Error("audit batch not committed", "entries", len(batch), "err", err)
		err = fmt.Errorf("audit: commit batch: %w", err)
	}
	for _, p := range batch {
		p.res <- result{seq: p.e.Sequence, err: err}
	}
	if err == nil && head%l.opts.CheckpointEvery < int64(len(batch)) {
		select {
		case l.kick <- struct{}{}:
		default:
		}
	}
}

// writeBatch makes the batch durable and returns the new head sequence. On
// PostgreSQL, when the writer knows the head it last wrote, it sends the
// batch as one statement (fastInsert); otherwise, or when another instance
// moved the head, it takes the head lock (lockedInsert).
func (l *Log) writeBatch(ctx context.Context, batch []*pending) (int64, error) {
	if l.head != nil && isPostgres(l.db) {
		ok, err := l.fastInsert(ctx, batch, *l.head)
		if ok {
			return l.head.Seq, nil
		}
		l.head = nil
		if err != nil {
			return 0, err
		}
	}
	head, err := l.lockedInsert(ctx, batch)
	if err != nil {
		return 0, err
	}
	l.head = &head
	return head.Seq, nil
}

// chain assigns sequences and hashes after head and returns the rows and the
// new head.
func chain(batch []*pending, head headRow) ([]entryRow, headRow) {
	rows := make([]entryRow, len(batch))
	for i, p := range batch {
		head.Seq++
		p.e.Sequence, p.e.PrevHash = head.Seq, head.Hash
		p.e.Hash = computeHash(&p.e)
		head.Hash = p.e.Hash
		rows[i] = toRow(&p.e)
	}
	return rows, head
}

// fastInsert writes the batch after the expected head in a single statement
// (one round trip, one implicit transaction): a data-modifying CTE moves the
// head only if it is still the expected one, and the first row's sequence is
// taken from that CTE, so if the head moved the sequence is NULL and the
// whole statement fails. The primary key on seq is a second guard. It reports
// false with a nil error when the head moved; the caller then takes the lock.
func (l *Log) fastInsert(ctx context.Context, batch []*pending, head headRow) (bool, error) {
	rows, next := chain(batch, head)
	vals := make([][]any, len(rows))
	for i := range rows {
		vals[i] = rows[i].values(rows[i].Seq)
	}
	vals[0][0] = bun.Safe(fmt.Sprintf("(SELECT %d::bigint FROM h)", rows[0].Seq))
	_, err := l.db.NewRaw("WITH h AS (UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1 AND seq = ? AND hash = ? RETURNING id) "+
		"INSERT INTO audit_entries ("+entryColumns+") VALUES ?",
		next.Seq, next.Hash, head.Seq, head.Hash, bun.In(vals)).Exec(ctx)
	if err == nil {
		*l.head = next
		return true, nil
	}
	var pgErr pgdriver.Error
	if errors.As(err, &pgErr) && (pgErr.Field('C') == pgNotNullViolation || pgErr.Field('C') == pgUniqueViolation) {
		l.log.Debug("audit head moved by another writer", "expected_seq", head.Seq)
		return false, nil
	}
	return false, fmt.Errorf("insert entries: %w", err)
}

// PostgreSQL error codes fastInsert expects when the head moved.
const (
	pgNotNullViolation = "23502"
	pgUniqueViolation  = "23505"
)

// lockedInsert reads the head under its lock, chains and inserts the batch
// and moves the head, in one transaction.
func (l *Log) lockedInsert(ctx context.Context, batch []*pending) (headRow, error) {
	var next headRow
	err := l.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		head, err := lockHead(ctx, tx)
		if err != nil {
			return err
		}
		var rows []entryRow
		rows, next = chain(batch, head)
		if _, err := tx.NewInsert().Model(&rows).Exec(ctx); err != nil {
			return fmt.Errorf("insert entries: %w", err)
		}
		if _, err := tx.NewUpdate().Model((*headRow)(nil)).Set("seq = ?", next.Seq).Set("hash = ?", next.Hash).
			Where("id = 1").Exec(ctx); err != nil {
			return fmt.Errorf("move head: %w", err)
		}
		return nil
	})
	return next, err
}

// lockHead reads the chain head and holds it until the transaction ends:
// a row lock on PostgreSQL; on SQLite a write to the row, which takes the
// database write lock, so that the read below cannot be overtaken.
func lockHead(ctx context.Context, tx bun.Tx) (headRow, error) {
	var h headRow
	q := tx.NewSelect().Model(&h).Where("id = 1")
	if isPostgres(tx) {
		q = q.For("UPDATE")
	} else if _, err := tx.NewUpdate().Model((*headRow)(nil)).Set("seq = seq").Where("id = 1").Exec(ctx); err != nil {
		return h, fmt.Errorf("lock head: %w", err)
	}
	if err := q.Scan(ctx); err != nil {
		return h, fmt.Errorf("read head: %w", err)
	}
	return h, nil
}
