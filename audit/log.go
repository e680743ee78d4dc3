package audit

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"hash"
	"log/slog"
	"sync"
	"time"

	"github.com/clearance-broker/clearance/internal/jsonenc"
	"github.com/uptrace/bun"
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

// DefaultGatherWindow is Options.GatherWindow's default. Callers that come
// back at once with their next entry (closed loop) fill a batch within it
// as they did within 1 ms, the default before it (BenchmarkAppendDelivered
// on PostgreSQL, 8 and 64 appenders: the same entries/s). Callers that do
// not, such as the broker, whose next entry for a message follows its
// delivery, wait less for entries that are not coming: in the load
// harness at half its maximum rate, three alternating pairs, a mean append
// of 4.1-4.7 ms against 4.3-5.3 ms and a median transfer of 6.7-7.8 ms
// against 8.0-8.9 ms (BENCHMARKS.md, finding 37). Not waiting at all
// costs closed-loop callers 13-37 % of their entries/s.
const DefaultGatherWindow = 200 * time.Microsecond

// Options configures a Log. The zero value of every field but SubjectKey and
// Signer has a working default.
type Options struct {
	// SubjectKey is the HMAC-SHA256 key for subject ids (from configuration or
	// Vault; never stored in the database). Required to append entries with a
	// SubjectID and to query by subject id.
	SubjectKey []byte
	// Signer signs checkpoints and archive manifests. Without it the Log is
	// read-only: Append and Checkpoint return ErrReadOnly, nothing is
	// migrated, and Archive needs a signer argument.
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
	// GatherWindow is how long at most the writer waits for a batch to fill
	// up to the entries it expects: those of the batch before, whose
	// appenders are coming back, and those that queued while it committed
	// (default DefaultGatherWindow; negative: never wait).
	GatherWindow time.Duration
	// Chains is the number of hash chains the log is written as (see the
	// package documentation): batches of different chains commit in
	// parallel. 0 takes the number the database records, or 1 if it records
	// none; a number other than the recorded one is ErrChainsMismatch. The
	// first writer that asks for more than one forks the log at its head.
	// SQLite takes 1 only. DefaultChains is the number to configure.
	Chains int
	// WriteTimeout bounds one batch transaction (default 10 seconds).
	WriteTimeout time.Duration
	// Logger receives operational messages; ids and sequence numbers only.
	Logger *slog.Logger
	// OnCommit, when set, is told how many entries each committed batch
	// wrote and how long its transaction took, from the writer sending it
	// to the commit's answer (for batch size and commit time metrics): the
	// part of an append's wait that is the database's, where the rest is
	// the batch before it and the gather window. It is called from the
	// writer goroutines and must return quickly.
	OnCommit func(entries int, took time.Duration)
	// OnCheckpoint, when set, is given the compact JWS of the checkpoints
	// each checkpoint it stored, so that a copy is kept
	// outside the database (audit/mirror): VerifyOptions.Mirrored then finds
	// a rewrite whose checkpoint row was deleted with it. It is called on
	// the checkpoint's path and must not block.
	OnCheckpoint func(jws []string)
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
	if o.GatherWindow == 0 {
		o.GatherWindow = DefaultGatherWindow
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
// may write to one database. Close stops the writers.
type Log struct {
	db   *bun.DB
	opts Options
	log  *slog.Logger

	// ly is the layout of the chains this Log writes (writable Logs; readers
	// read it from the database each time).
	ly layout

	mu     sync.RWMutex // guards closed and sends on the lanes' reqs
	closed bool
	lanes  []*lane // one per chain, each with its writer goroutine

	// macs holds *subjectMAC for subjectHMAC.
	macs sync.Pool

	kick     chan struct{} // nudges the checkpointer
	stopCkpt chan struct{}
	writers  sync.WaitGroup
	wg       sync.WaitGroup
}

// lane is the writer of one chain: its queue, and the state its writer
// goroutine owns.
type lane struct {
	l     *Log
	chain int
	reqs  chan *pending
	// head is the chain head as this lane last committed it (nil: unknown,
	// read it under the lock).
	head *headRow
	// shared: another writer (another instance's lane of this chain)
	// committed between this lane's last two batches, so the fast path,
	// whose compare-and-set would fail, is skipped until a batch finds the
	// head where this lane left it.
	shared bool
	// conn is the connection the lane writes through on PostgreSQL, held
	// from its first batch until a batch fails or the writer stops (nil:
	// none; SQLite, whose single lane writes through the pool), so that the
	// lanes never wait for each other's connection, nor open one per batch
	// when there are more lanes than the pool keeps idle.
	conn *bun.Conn
	// pgInsert is the prepared batch insert of the fast path on PostgreSQL,
	// prepared on conn (nil until first used).
	pgInsert *sql.Stmt
	// finalsIndexed: the store refuses a second final outcome of a request
	// by itself (the unique index of final outcomes, read when conn is
	// opened), so pgBatchInsert need not look the batch's outcomes up.
	finalsIndexed bool
	// forked is the error of every batch once another instance forked the
	// log this lane writes as one chain (forkError): the number of chains
	// is fixed once forked, so its batches can never be written.
	forked error
	// hasher, cols and args are the writer's buffers, reused from batch to
	// batch: for the chain hashes, for the array literals of the columns of
	// pgBatchInsert, and for its arguments (see batchArgs).
	hasher chainHasher
	cols   [entryColumnCount][]byte
	finals []byte
	args   []any
}

// pending is an entry on its way through a writer: its appender prepares
// it (newPending) and waits for res, and the writer chains and commits it.
// A pending is reused (pendingPool) once its appender took the result.
type pending struct {
	// e is the entry in canonical form without its lists: those are in
	// body only, so that the writer never reads what the caller may change
	// once an Append it gave up on returned.
	e   Entry
	res chan result
	// body is e's hash body (appendHashBody) and lists the spans of its
	// lists, the stored JSON of those columns. final is e.Final(), opens
	// e.opensDelivery().
	body  []byte
	lists bodyLists
	final bool
	opens bool
	// hash is the chain hash, hex, that the writer assigned with the
	// sequence (link), and r the result it is about to send.
	hash [2 * sha256.Size]byte
	r    result
}

// maxKeptBuffer is the capacity above which a buffer is dropped rather than
// kept for reuse, so that one outsized entry or batch does not hold memory
// for good.
const maxKeptBuffer = 64 << 10

var pendingPool = sync.Pool{New: func() any { return &pending{res: make(chan result, 1)} }}

// newPending returns a pending for e, a shallow copy of the caller's entry
// with its subject id already replaced by its HMAC and its time set,
// prepared for the writer; nil with ErrInvalidEntry if e cannot be encoded
// or holds text that a store could refuse (invalid UTF-8, NUL bytes), so
// that one bad entry cannot fail the batch it would share with others, and
// is never left without a hash.
func newPending(e *Entry) (*pending, error) {
	p := pendingPool.Get().(*pending)
	p.e = *e
	p.e.SubjectID = ""
	p.e.Sequence, p.e.PrevHash, p.e.Hash = 0, "", ""
	p.e.Time = p.e.Time.UTC().Truncate(time.Microsecond)
	p.final = p.e.Final()
	p.opens = p.e.opensDelivery()
	var ok bool
	p.body, p.lists, ok = appendHashBody(p.body[:0], &p.e)
	p.e.Reasons, p.e.CategoriesSent, p.e.FieldsRemoved = nil, nil, nil
	if !ok || p.e.Time.Year() < 1 {
		// Year 0 has a canonical form, but Postgres refuses it: taken
		// in, it would fail the whole batch it was written with.
		p.free()
		return nil, fmt.Errorf("%w: time outside the years 1 to 9999", ErrInvalidEntry)
	}
	if p.lists.all&(jsonenc.SeenInvalidUTF8|jsonenc.SeenNUL) != 0 {
		p.free()
		return nil, fmt.Errorf("%w: text that is not valid UTF-8 or holds a NUL byte", ErrInvalidEntry)
	}
	return p, nil
}

// free returns p to pendingPool. Only the appender that has p's result, or
// never queued it, may free it: the writer is done with it then.
func (p *pending) free() {
	p.e = Entry{}
	p.r = result{}
	if cap(p.body) > maxKeptBuffer {
		p.body = nil
	}
	pendingPool.Put(p)
}

// list returns the JSON of one of p's lists, as stored.
func (p *pending) list(s span) []byte {
	return p.body[s.start:s.end]
}

// row returns p's stored form, chained after prev.
func (p *pending) row(prev string) entryRow {
	r := toRow(&p.e)
	r.Reasons = string(p.list(p.lists.reasons))
	r.CategoriesSent = string(p.list(p.lists.categories))
	r.FieldsRemoved = string(p.list(p.lists.fieldsRemoved))
	r.PrevHash, r.Hash = prev, string(p.hash[:])
	return r
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
		kick:     make(chan struct{}, 1),
		stopCkpt: make(chan struct{}),
	}
	l.macs.New = func() any { return &subjectMAC{h: hmac.New(sha256.New, opts.SubjectKey)} }
	if opts.Signer == nil {
		l.closed = true
		close(l.stopCkpt)
		return l, nil
	}
	if err := Migrate(ctx, db); err != nil {
		return nil, err
	}
	ly, err := setupChains(ctx, db, opts.Chains)
	if err != nil {
		return nil, err
	}
	l.ly = ly
	for c := range int(ly.k) {
		ln := &lane{l: l, chain: c, reqs: make(chan *pending, 4*opts.MaxBatch)}
		l.lanes = append(l.lanes, ln)
		l.writers.Add(1)
		go ln.writer()
	}
	l.wg.Add(2)
	go func() {
		defer l.wg.Done()
		l.writers.Wait()
		close(l.stopCkpt)
	}()
	go l.checkpointer()
	return l, nil
}

// Append writes e to the log and returns its sequence number once the entry
// is committed (write-ahead: deliver only after Append returned nil). It
// blocks while the entry waits for its batch. e is not modified; a SubjectID
// is replaced by its HMAC and never stored. An error means the entry may not
// be durable and the caller must not act on it: ErrReadOnly, ErrClosed,
// ErrInvalidEntry, ErrNoSubjectKey, ctx's error, or the store's error for the
// whole batch. A final outcome (Entry.Final) for a request that already has
// one is not appended, nor is a decision to allow such a request (decided,
// decision "allow"): Append returns a *DuplicateOutcomeError (errors.Is
// ErrDuplicateOutcome) naming the outcome recorded, which stands. Append
// keeps nothing of e once it has returned, also when ctx ended first: the
// caller may reuse e, its lists and its map (the broker pools its entries).
func (l *Log) Append(ctx context.Context, e *Entry) (int64, error) {
	if e == nil || e.Event == "" {
		return 0, fmt.Errorf("%w: no event", ErrInvalidEntry)
	}
	if l.opts.Signer == nil {
		return 0, ErrReadOnly
	}
	if e.SubjectID != "" && len(l.opts.SubjectKey) == 0 {
		return 0, ErrNoSubjectKey
	}
	c := *e
	if e.SubjectID != "" {
		c.SubjectHMAC = l.subjectHMAC(e.SubjectID)
	}
	if e.Time.IsZero() {
		c.Time = l.opts.Now()
	}
	p, err := newPending(&c)
	if err != nil {
		return 0, err
	}

	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		p.free()
		return 0, ErrClosed
	}
	reqs := l.lanes[l.ly.route(p.e.RequestID)].reqs
	select {
	case reqs <- p:
		l.mu.RUnlock()
	case <-ctx.Done():
		l.mu.RUnlock()
		p.free()
		return 0, fmt.Errorf("audit: append: %w", ctx.Err())
	}
	select {
	case r := <-p.res:
		p.free()
		return r.seq, r.err
	case <-ctx.Done():
		// The writer still holds p and will send its result: p is left
		// to the garbage collector, not reused.
		return 0, fmt.Errorf("audit: append: %w", ctx.Err())
	}
}

// subjectHMAC is SubjectHMAC with the log's key, reusing the HMAC state.
func (l *Log) subjectHMAC(subjectID string) string {
	m := l.macs.Get().(*subjectMAC)
	m.buf = append(m.buf[:0], subjectID...)
	m.h.Reset()
	m.h.Write(m.buf)
	m.buf = m.h.Sum(m.buf[:0])
	var out [2 * sha256.Size]byte
	hex.Encode(out[:], m.buf)
	if cap(m.buf) <= maxKeptBuffer {
		l.macs.Put(m)
	}
	return string(out[:])
}

// subjectMAC is an HMAC-SHA256 state with the log's subject key and a
// buffer, kept for reuse in Log.macs.
type subjectMAC struct {
	h   hash.Hash
	buf []byte
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
	for _, ln := range l.lanes {
		close(ln.reqs)
	}
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
