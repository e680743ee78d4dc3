package natsregion

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/clearance-broker/clearance/connectors"
)

// JetStream error codes the connector classifies.
const (
	codeInsufficientResources jetstream.ErrorCode = 10023
	codeStoreFailed           jetstream.ErrorCode = 10077
)

// ErrNoStream is wrapped by the transient error for a publish no stream
// answered (no responders): the remote stream is missing or does not cover
// the subject.
var ErrNoStream = errors.New("no stream answers")

// classify maps a publish error to the connectors error classes.
func (r *Region) classify(err error) error {
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, nats.ErrNoResponders):
		return fmt.Errorf("%w: %w", ErrNoStream, err)
	case errors.Is(err, nats.ErrMaxPayload):
		return fmt.Errorf("%w: %w", err, connectors.ErrPermanent)
	case errors.As(err, &apiErr):
		switch {
		case apiErr.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum,
			apiErr.ErrorCode == codeStoreFailed && strings.Contains(apiErr.Description, "too large"):
			return fmt.Errorf("%w: %w", err, connectors.ErrPermanent)
		case apiErr.ErrorCode == codeStoreFailed, apiErr.ErrorCode == codeInsufficientResources:
			return &connectors.RetryAfterError{After: r.cfg.FullRetryAfter.D(), Err: fmt.Errorf("stream full: %w", err)}
		}
	}
	return err
}

// unanswered reports whether a publish failed waiting for the stream's
// answer, after the message may have been stored: the acknowledgement
// timed out (a connection lost meanwhile shows as that too). A publish the
// stream answered with an error, that no stream took (no responders), or
// that was refused before it was sent (too large, the connection away and
// no reconnect buffer, the connection closed) is known not to be stored.
func unanswered(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || errors.Is(err, nats.ErrTimeout)
}
