// Package policy keeps the agreements registry live across every Clearance
// instance.
//
// A Store holds the registry in SQL (bun: PostgreSQL in production, SQLite
// embedded): each `clearance registry apply` stores the loaded content as a
// base version and every agreement under its (id, version), so that an edit
// of an agreement makes a new version and the old one stays for the audit.
// Run-time changes (consents granted and withdrawn, erasures, legal orders,
// suspensions) are stored as numbered events after the base they apply to.
// The registry in force at event n is the latest base at or before n with
// every run-time change up to n applied in order (run-time changes outlive a
// new apply; a suspension is lifted by applying a new version of the
// agreement).
//
// Live ties a Store to an agreements.Engine, the audit log and a NATS KV
// bucket. Changing the registry through Live writes the event to the store
// (serialised across instances by the store's head row), audits it,
// publishes its number and version to the bucket (nothing personal: the
// change itself stays in the store) and swaps the local engine; every
// instance watches the bucket, reads the events it lacks from the store and
// derives the same registry version from them, so a withdrawal or a
// suspension applied on one instance stops the affected transfers on all of
// them. The change returns once every running instance (each announces
// itself in a second bucket) confirmed it in force, or after a timeout. The watch resumes after a NATS restart,
// and a periodic read of the store's head closes any gap a lost publish
// could leave.
package policy
