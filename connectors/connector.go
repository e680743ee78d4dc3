package connectors

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Connector delivers sealed payloads to one kind of target (an HTTPS partner,
// a remote NATS region, ...). Implementations must be safe for concurrent use
// by many goroutines. Deliver blocks until the target has accepted the
// delivery, the context ends, or a failure is known.
//
// Errors returned by Deliver are classified by the broker:
//   - nil: the target accepted the delivery;
//   - an error wrapping ErrPermanent: the target will never accept it (the
//     broker dead-letters it and terminates the message);
//   - a *RetryAfterError: transient, retry no sooner than After;
//   - any other error: transient, retried with backoff.
//
// A failure that may have reached the target all the same (the payload was
// sent and no answer came: a timeout, a connection lost while waiting)
// also wraps ErrOutcomeUnknown, which the broker records with the failure.
//
// Close releases resources; it is idempotent and safe to call more than once.
type Connector interface {
	Deliver(ctx context.Context, d *Delivery) error
	Close(ctx context.Context) error
}

// Delivery is one sealed payload bound for one recipient. Body is already
// sealed by the broker (a compact JWE); a connector never sees plaintext
// personal data and must not log Body.
type Delivery struct {
	// RequestID is the producer's request id; connectors use it as the
	// idempotency key (Idempotency-Key header, Nats-Msg-Id).
	RequestID string
	// Recipient is the registry id of the receiving party.
	Recipient string
	// Kind tells the receiver what the body is: "transfer" or "erasure_notice".
	Kind string
	// ContentType of Body, "application/jose" for compact JWE.
	ContentType string
	// Body is the sealed payload.
	Body []byte
	// Headers are extra, non-personal metadata (key references, agreement id).
	Headers map[string]string
}

// ErrPermanent marks a delivery failure that retrying cannot fix (a partner
// rejecting the payload with 400, an unknown recipient endpoint). Wrap it:
// fmt.Errorf("webhook: post to %s: status 400: %w", id, connectors.ErrPermanent).
var ErrPermanent = errors.New("permanent delivery failure")

// ErrOutcomeUnknown marks a failure after which the target may hold the
// delivery nonetheless: it was sent, and no answer came. Wrap it beside the
// cause: fmt.Errorf("webhook: post to %s: %w: %w", id, err,
// connectors.ErrOutcomeUnknown). A failure the target answered, or one
// before anything was sent, does not wrap it.
var ErrOutcomeUnknown = errors.New("the recipient may have received it")

// OutcomeUnknown reports whether err marks a failure after which the target
// may hold the delivery (ErrOutcomeUnknown).
func OutcomeUnknown(err error) bool { return errors.Is(err, ErrOutcomeUnknown) }

// RetryAfterError is a transient failure for which the target asked the
// sender to wait (HTTP 429/503 with Retry-After, a full remote stream).
type RetryAfterError struct {
	After time.Duration
	Err   error
}

// Error implements error.
func (e *RetryAfterError) Error() string {
	return fmt.Sprintf("retry after %s: %v", e.After, e.Err)
}

// Unwrap returns the underlying error.
func (e *RetryAfterError) Unwrap() error { return e.Err }

// IsPermanent reports whether err marks a permanent failure.
func IsPermanent(err error) bool { return errors.Is(err, ErrPermanent) }
