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
// concurrent callers are batched by a writer goroutine into a single
// transaction with a multi-row insert; every caller of a batch learns the
// batch's outcome, and an error means the entry may not be durable, so the
// caller must not deliver.
//
// A Log has one writer per chain (see below), each with its own queue and
// its own connection, held from its first batch until a batch fails. The
// batches of one chain are committed one after another: a batch is chained
// on the head the one before committed, and on PostgreSQL the head row
// stays locked until that commit is flushed. With N callers that each wait
// for their entry, a chain's batch holds at most the callers routed to it,
// and its throughput is that number divided by the time of one batch
// (gather, chain, insert, flush). The writer therefore waits briefly
// (GatherWindow) for the callers of its last batch to come back, so that
// they share one commit rather than split into two batches that each wait
// for the other's. Batches of different chains commit at the same time, on
// different connections, and PostgreSQL flushes the WAL of commits that
// arrive together once.
//
// # Sequencing across instances
//
// The log is one hash chain, or K chains ("lanes") after a fork, per
// database, not one per instance; the database orders each chain, and all
// instances write to all chains. Options.Chains sets K: DefaultChains is 2
// on PostgreSQL, where a single chain cannot commit batches in parallel,
// and 1 on SQLite, which has one writer anyway. More chains are not
// better by themselves: a chain's batch holds only the callers routed to
// it, so with K chains each commit's fixed cost (round trip, statement,
// commit record, flush) is shared by about 1/K as many entries, and the
// chains gain only where the database has cores to run their batches at
// once. On the 2-core machine of BENCHMARKS.md, 64 appenders wrote about
// 10% more with 2 chains than with 1 and no more with 4, and 8 appenders
// wrote about 20% less with 4 (batches of two entries); a database with
// more cores may take more chains.
//
// Sequence numbers stay one series, the primary key of audit_entries that
// queries page by, shared by the chains: a log starts as a single chain,
// and the first writer that opens it with K > 1 forks it at its head F,
// recording K and F in audit_chains under the head's lock. Entries up to F
// are the single chain, unchanged, so a log written before keeps verifying.
// After F, chain c holds the sequences F+c, F+c+K, F+c+2K, ... (chain 0:
// F+K, F+2K, ...): each chain's next sequence is its head plus K, and the
// first entry of every chain links to the hash of entry F. Row c+1 of
// audit_head holds the head of chain c (row 1, chain 0, is the single
// chain's head; the others are seeded with F's hash at the sequence K
// before their first). K is fixed once forked, because every instance must
// route a request to the same chain: a Log asking for another K fails with
// ErrChainsMismatch naming both numbers (an operator who changed the
// setting by mistake learns it at start-up rather than after the chains
// diverge); Chains 0 takes the recorded K. The fork also puts a check on
// audit_head that keeps every head row to its chain's sequences, so that a
// writer that does not know of the fork (an instance of an earlier version
// during a rolling upgrade, or a Log opened with one chain just before)
// fails its batches, and its appenders get errors, instead of writing the
// single chain over the other chains' places; restarted, it takes the
// recorded K.
//
// An entry's chain is chosen by its request id: FNV-1a of the request id
// modulo K (chain 0 for entries without one). All entries of one request
// are thus in one chain, which keeps the final outcome rule below correct
// across chains and instances.
//
// With K > 1 a chain that gets fewer entries than another lags behind it
// and fills its lower sequences later, so sequences are not written in
// order. StableSequence is the lowest head (at least F): every sequence up
// to it is written and none below it will be. Archive stops there, and a
// reader following the log by sequence reads again from there. A chain
// that gets no entries at all holds it at its head.
//
// Each chain's batch is written in one of two ways:
//
//   - Locked: a transaction locks the chain's head row (SELECT ... FOR
//     UPDATE on PostgreSQL; on SQLite the transaction takes the database
//     write lock by touching the row first), reads the head, assigns the
//     next sequence numbers and hashes, inserts the batch and moves the
//     head.
//   - Optimistic (PostgreSQL, when the writer committed the chain's previous
//     batch itself and so knows its head): one prepared statement, the batch
//     sent as one array per column, whose data-modifying CTE moves the head
//     only if it still is the expected one, and whose rows take their
//     sequences only if it did; if another instance moved the head, the
//     sequences are NULL, the statement fails as a whole, and the writer
//     redoes the batch the locked way. The primary key on seq is a second
//     guard against two entries claiming one place.
//
// Either way the writers of one chain, in any number of instances, are
// serialised per batch by the database, so each chain's sequence numbers
// follow each other K apart without gaps and each entry's prev_hash is the
// hash of the chain's entry before it, whatever instance wrote it. A single
// instance pays one round trip per batch; concurrent instances pay a retry
// when they interleave, which group commit amortises.
//
// What K > 1 changes for readers: the chains advance at their own pace, so
// sequence numbers are unique and each chain's are in commit order, but a
// lagging chain may commit an entry with a lower sequence number than one
// another chain committed earlier, and at any moment the highest sequences
// may have holes that a lagging chain fills later. A reader that pages by
// sequence through a log being written (AfterSequence) reads every entry
// committed before its query; to follow the log as it grows, it must
// re-read from below the highest sequence it saw.
//
// # One final outcome per request
//
// A request's story ends with exactly one final outcome (Entry.Final):
// delivered, rejected, decided "deny", or a delivery_failed that is not
// retried. Several instances may work on one request when its message is
// redelivered, so the writer enforces this where batches are serialised:
// after it holds the head of the request's chain (under the lock, or before
// the compare-and-set statement, which fails if anything was chained since;
// every entry of the request is in that chain or before the fork), it looks
// up the batch's final outcomes by request id in one query on the request id
// index, and takes out of the batch every final outcome whose request
// already has one, in the store or earlier in the batch. Their callers get
// a *DuplicateOutcomeError (errors.Is ErrDuplicateOutcome) naming the
// outcome recorded; the rest of the batch commits as usual and the chain
// has no gap. On PostgreSQL a unique index refuses a second final outcome
// in the store itself, across chains and instances (migration
// 20261129000005; since 20261130000002 it is the request id index, keyed
// (request_id, 0) for a final outcome and (request_id, seq) for any other
// entry), so the compare-and-set statement looks no final outcome up: a
// batch that holds a duplicate fails on the index, and the writer looks its
// outcomes up under the lock as above.
//
// A decision to allow (decided, decision "allow") is refused the same way
// once its request has a final outcome: it is what a delivery waits for, and
// a request sent again under its id after the transfer stream's
// de-duplication window would otherwise be delivered a second time with no
// entry recording it (its second delivered entry refused). No index can
// refuse it (a request may be decided again after a retried failure), so
// the compare-and-set statement looks the batch's decisions to allow up,
// one probe of the request id index each, and leaves the head when one has
// a final outcome; the writer then refuses it under the lock as above.
// Entries removed by retention (Archive) are no longer looked up.
//
// # Hash chains and checkpoints
//
// An entry's hash is the SHA-256 of its canonical JSON (with its own hash
// empty, its sequence and prev_hash included). At intervals (about every N
// entries and every T, see Options) the head of every chain that moved is
// checkpointed, all signed in one Signer call (one Vault round trip), each
// as a JWS over {"sequence", "head"}; the sequence says which chain it
// seals. Verify walks the entries in sequence order keeping, for each
// chain, the sequence and prev_hash its next entry must have, checks every
// checkpoint signature against a Verifier and names the first entry that
// was changed, removed or inserted: a removed entry is found as soon as the
// walk passes its sequence while its chain's head lies beyond it. Entries
// after their chain's last checkpoint are only chained, not yet sealed; the
// report says how many.
//
// # Retention
//
// Archive exports the entries older than a horizon as JSON lines together
// with a signed manifest (range, anchor hash, digest of the export, the
// checkpoints covering it and, after a fork, where each chain stood before
// the range and continues after it), records the manifest in audit_archives
// and removes the entries in one transaction. It archives no further than
// the lowest chain head: below it every sequence is taken and no chain
// writes again, so the archived range is whole (a chain that receives no
// entries holds retention back to its head). Verify then starts every
// chain from its anchor in the latest verified manifest, so what remains
// still verifies. Archive takes no entry that a checkpoint in the range
// does not seal (it stops at the last one), so that the manifest vouches
// only for entries a signature already vouched for. It checks the chain of
// the range against those checkpoints but does not authenticate them: call
// VerifyWith first, as clearance audit archive does, so that a manifest
// never vouches for entries rewritten under forged checkpoints, or whose
// checkpoints were removed, before they left the log.
package audit
