// Package audit is Clearance's tamper-evident audit log: one entry per
// decision, delivery, rejection, receipt, erasure notice and registry change,
// written before the delivery it records ("no audit, no transfer").
//
// The log lives in the SQL store through bun: PostgreSQL in production and
// SQLite (modernc.org/sqlite) for `clearance dev`, from the same code. The
// schema is managed by bun/migrate with migrations written in Go; Open runs
// them. OpenDB opens a *bun.DB from a DSN for either store.
//
// # Entries
//
// An Entry holds every field of the design's section 5 and nothing personal:
// the subject id is stored only as a keyed HMAC-SHA256 (the key is given in
// Options and never written to the database) and no record content is ever
// accepted. The JSON form of an Entry is a format others depend on and is
// pinned by a golden file.
//
// # Group commit
//
// Append is write-ahead: it returns only once its entry is committed. Many
// concurrent callers are batched by one writer goroutine per Log into a single
// transaction with a multi-row insert; every caller of a batch learns the
// batch's outcome, and an error means the entry may not be durable, so the
// caller must not deliver.
//
// Batches are committed one after another: a batch is chained on the head
// the one before committed, and on PostgreSQL the head row stays locked
// until that commit is flushed, so two batches never share a WAL flush. With
// N callers that each wait for their entry, a batch holds at most N entries
// and throughput is N divided by the time of one batch (gather, chain,
// insert, flush). The writer therefore waits briefly (GatherWindow) for the
// callers of the last batch to come back, so that they share one commit
// rather than split into two batches that each wait for the other's.
//
// # Sequencing across instances
//
// There is one chain per database, not one per instance, ordered by the
// database. The single row of audit_head holds the chain head (last sequence
// and hash). A batch is written in one of two ways:
//
//   - Locked: a transaction locks the head row (SELECT ... FOR UPDATE on
//     PostgreSQL; on SQLite the transaction takes the database write lock by
//     touching the row first), reads the head, assigns the next sequence
//     numbers and hashes, inserts the batch and moves the head.
//   - Optimistic (PostgreSQL, when the writer committed the previous batch
//     itself and so knows the head): one prepared statement, the batch sent
//     as one array per column, whose data-modifying CTE moves the head only
//     if it still is the expected one, and whose rows take their sequences
//     only if it did; if another instance moved the head, the sequences are
//     NULL, the statement fails as a whole, and the writer redoes the batch
//     the locked way. The primary key on seq is a second guard against two
//     entries claiming one place.
//
// Either way writers of any number of instances are serialised per batch by
// the database, so sequence numbers are gap-free and each entry's prev_hash
// is the hash of the entry before it, whatever instance wrote it. A single
// instance pays one round trip per batch; concurrent instances pay a retry
// when they interleave, which group commit amortises.
//
// # One final outcome per request
//
// A request's story ends with exactly one final outcome (Entry.Final):
// delivered, rejected, decided "deny", or a delivery_failed that is not
// retried. Several instances may work on one request when its message is
// redelivered, so the writer enforces this where batches are serialised:
// after it holds the head (under the lock, or before the compare-and-set
// statement, which fails if anything was chained since), it looks up the
// batch's final outcomes by request id in one query answered from the index
// on (request_id, seq, event, decision), and takes out of the batch every final outcome whose request
// already has one, in the store or earlier in the batch. Their callers get a
// *DuplicateOutcomeError (errors.Is ErrDuplicateOutcome) naming the outcome
// recorded; the rest of the batch commits as usual and the chain has no gap.
// Entries removed by retention (Archive) are no longer looked up.
//
// # Hash chain and checkpoints
//
// An entry's hash is the SHA-256 of its canonical JSON (with its own hash
// empty, its sequence and prev_hash included). At intervals (every N entries
// and every T, see Options) a checkpoint is signed through the Signer as a JWS
// over {"sequence", "head"} and stored. Verify recomputes the chain, checks
// every checkpoint signature against a Verifier and names the first entry
// that was changed, removed or inserted. Entries after the last checkpoint
// are only chained, not yet sealed; the report says how many.
//
// # Retention
//
// Archive exports the entries older than a horizon as JSON lines together
// with a signed manifest (range, anchor hash, digest of the export and the
// checkpoints covering it), records the manifest in audit_archives and removes
// the entries in one transaction. Verify then starts from the anchor hash of
// the latest verified manifest, so what remains still verifies.
package audit
