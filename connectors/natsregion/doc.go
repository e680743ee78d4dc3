// Package natsregion delivers sealed payloads to a regional data centre by a
// JetStream publish on that region's NATS.
//
// A delivery for recipient r goes to the subject Subject(prefix, r) (by
// default "clearance.region.<r>") with the Nats-Msg-Id header set to the
// request id, so the remote stream keeps one copy per request within its
// duplicate window, and with Clearance-Kind, Content-Type and the delivery's
// own headers. Deliver returns once the remote stream has acknowledged the
// message.
//
// Failure classes: no stream answering (no responders), an ack timeout or a
// lost connection are transient; a full remote stream is transient with a
// wait (*connectors.RetryAfterError); a message the stream can never hold
// (larger than its maximum) or a malformed delivery is permanent.
//
// The receiving side subscribes with SubjectFilter(prefix) and recovers the
// recipient with Recipient(prefix, subject). Kind returns the
// connectors.Kind to put in the broker's registry.
package natsregion
