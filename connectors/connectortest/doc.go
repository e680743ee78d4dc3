// Package connectortest is the conformance suite every connector passes with
// one call from its own test file:
//
//	func TestConformance(t *testing.T) {
//		connectortest.Run(t, connectortest.Features{Ordered: true}, newHarness)
//	}
//
// A Harness abstracts the receiving end (an httptest server, an embedded NATS
// server): it builds the connector under test pointed at itself, records what
// it accepted and every byte it saw, and simulates failures on demand. The
// suite checks delivery with the idempotency key, ordering where promised,
// transient, permanent and retry-after failures, malformed deliveries,
// cancellation and deadlines, idempotent close and close with a delivery in
// flight, concurrent use, and that no planted personal value crosses the wire
// in plaintext.
package connectortest
