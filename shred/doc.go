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
// Keys are cached after first use (an LRU bounded by size and age), so a
// subject's messages cost a Vault round trip only when their key is not in
// the cache; the benchmark in this package measures the difference.
package shred
