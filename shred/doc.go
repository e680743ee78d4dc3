// Package shred makes the copies of personal data that Clearance keeps
// itself (dead letters, retry copies, regional streams) unreadable once the
// data subject is erased: crypto-shredding.
//
// Each subject gets its own 256-bit data key the first time something of
// theirs is sealed. The key is stored in SQL next to the subject's keyed
// HMAC (never the id), itself sealed by the key service (Vault transit
// envelope encryption, or the development key ring), so the database alone
// cannot open anything. Destroy deletes the wrapped key, forgets it on every
// instance (a NATS broadcast) and audits the proof: key id, time and scope.
// From then on every envelope sealed for that subject, wherever a copy of it
// lies, fails to open with ErrShredded.
//
// Regional streams: the broker seals what it writes to another region's
// stream (natsregion deliveries) under the subject's key too, and the
// receiving region's Clearance opens it with its own Keyring (IsEnvelope
// tells a subject envelope from one under the shared data key). That works
// only when both regions' Keyrings read the same key table
// (shred_subject_keys in one SQL store, or a replica of it) and can unwrap
// its keys with the same key service key (the same Vault transit key, or a
// replica); clearance serve's subject_keys.store puts the table in a store
// of its own for that, beside each region's audit log. Each region's own
// store is not enough: the receiving region then finds no key for the
// envelope (ErrUnknownKey, which the broker retries and then dead-letters
// as subject_key_unknown, never opened). Carrying the wrapped key inside
// the message is not done on purpose: the copy would then stay openable
// after the erasure for as long as the transit key lives. The destruction
// broadcast travels on the destroying instance's NATS only; a receiving
// region on another NATS system forgets its cached key when it applies the
// erasure itself, and at the latest after CacheTTL.
//
// Keys are cached after first use (an LRU bounded by size and age), so a
// subject's messages cost a Vault round trip only when their key is not in
// the cache; the benchmark in this package measures the difference.
package shred
