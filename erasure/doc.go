// Package erasure tells every recipient of a data subject's data that the
// subject's data must be erased (GDPR Art. 17 and 19) and tracks each until
// it acknowledges.
//
// Begin reads the audit log for every delivery of the subject (by the
// subject's keyed HMAC) and creates one notice per recipient, naming the
// request ids concerned. A Notifier running on every instance claims due
// notices with a lease in the SQL store (so that two instances never send
// the same notice at once), signs each notice with the broker's key,
// encrypts it (to the party's public key for webhook partners, as an
// envelope for regional data centres), and delivers it through the
// recipient's connector as a Delivery of kind "erasure_notice". A notice the
// connector accepts is acknowledged and audited (erasure_notified), except
// a notice to another region's Clearance (a natsregion connector): that
// one carries the subject's id (signed, sealed under the keys the regions
// share; found by HMAC among the registry's erasures, Options.ErasedSubject)
// and an answer subject; the region records the erasure in its own
// registry, destroys its subject keys and answers with a signed AckPayload
// on AckSubjectPrefix.<notice id>, and only that answer (ListenAcks,
// Acknowledge) acknowledges the notice; until it comes the notice stays
// pending ("awaiting_acknowledgement") and is sent again, as a new message,
// after backoff. The answer travels on the receiving region's NATS: the
// sender listens there through the region connector's connection. A failed
// one is retried with backoff, without end; a notice still unacknowledged
// after Options.EscalateAfter is escalated (audited, logged) and retried
// further. Where notice is impossible (no connector, a recipient that no
// longer exists, a party without a public key on a connector that needs
// one, Options.NeedsPartyKey) an officer records a justification instead
// (Justify), which is audited by digest, as by the officer's account's
// HMAC. The audit entry of a notice's closing (an acknowledgement, a
// justification) is written in one transaction with the new status, as a
// pending entry, and appended to the audit log after it, by a retry or
// the next round if the first append fails, once. Status lists the
// notices of a subject.
//
// Regional copies: what Clearance wrote to another region's stream is
// sealed under the subject's key (package shred), so the erasure's key
// destruction makes it unreadable, provided the regions share the subject
// key store and key service; with separate stores the receiving region
// cannot open such deliveries at all (see the shred package): regions with
// stores of their own must replicate the subject key table and the transit
// key to each other, which Clearance does not do itself.
package erasure
