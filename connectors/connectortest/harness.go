package connectortest

import (
	"time"

	"github.com/clearance-broker/clearance/connectors"
)

// Recipients the suite delivers to; a harness must route both to its
// receiving end. They are valid party ids and NATS subject tokens.
const (
	RecipientA = "partner-a"
	RecipientB = "partner-b"
)

// Features says what a connector promises beyond the common contract.
type Features struct {
	// Ordered: deliveries made one after another from one goroutine are
	// accepted by the target in the order they were made.
	Ordered bool
	// Deduplicates: the target keeps one copy per idempotency key however
	// often it is delivered (JetStream Nats-Msg-Id). Without it the suite
	// only checks that every copy carries the key.
	Deduplicates bool
	// RetryAfter is the wait a *connectors.RetryAfterError must carry when
	// the harness simulates FailRetryAfter; zero when the target cannot ask
	// for one.
	RetryAfter time.Duration
}

// Failure is a failure mode the receiving end simulates.
type Failure int

// Failure modes. A harness must support all but FailRetryAfter, which is
// needed only when Features.RetryAfter is set.
const (
	// FailNone: the target accepts deliveries.
	FailNone Failure = iota
	// FailTransient: the target is temporarily unable to accept (HTTP 503,
	// a missing stream).
	FailTransient
	// FailPermanent: the target rejects the payload for good (HTTP 400, a
	// message larger than the stream allows).
	FailPermanent
	// FailRetryAfter: the target asks to be retried later (HTTP 429 with
	// Retry-After).
	FailRetryAfter
	// FailStall: the target accepts the delivery but never answers, until
	// the harness is cleaned up.
	FailStall
)

// String names the failure mode.
func (f Failure) String() string {
	switch f {
	case FailNone:
		return "none"
	case FailTransient:
		return "transient"
	case FailPermanent:
		return "permanent"
	case FailRetryAfter:
		return "retry-after"
	case FailStall:
		return "stall"
	}
	return "unknown"
}

// Received is one delivery the receiving end accepted.
type Received struct {
	// IdempotencyKey is the Idempotency-Key header or Nats-Msg-Id.
	IdempotencyKey string
	// Recipient is the recipient the target saw (from the URL path or the
	// subject).
	Recipient string
	// Kind is the delivery kind the target saw (X-Clearance-Kind,
	// Clearance-Kind).
	Kind string
	// ContentType is the content type the target saw.
	ContentType string
	// Headers are all headers as received.
	Headers map[string]string
	// Body is the payload as received.
	Body []byte
}

// Harness is the receiving end of one connector under test. Each sub-test of
// Run gets a new Harness from the constructor; it releases its resources with
// t.Cleanup. Methods may be called from many goroutines.
type Harness interface {
	// Connector returns a new connector under test, configured to deliver
	// RecipientA and RecipientB to this receiving end. It may be called more
	// than once; the suite closes every connector it gets.
	Connector() connectors.Connector
	// Received returns the deliveries accepted so far, in arrival order.
	Received() []Received
	// Wire returns every byte the receiving end has seen so far: request
	// lines, headers and bodies; subjects, headers and payloads.
	Wire() []byte
	// Fail switches the receiving end to failure mode f until the next
	// call.
	Fail(f Failure)
}
