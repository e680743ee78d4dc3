package broker

import (
	"errors"
	"time"

	"github.com/clearance-broker/clearance/connectors"
	"github.com/clearance-broker/clearance/keys"
)

// Outcome classifies what happened to one message in the pipeline. The
// classes are what Plan maps to JetStream actions.
type Outcome int

const (
	// OutcomeDelivered: the recipient accepted the sealed payload.
	OutcomeDelivered Outcome = iota + 1
	// OutcomeDenied: the engine denied the request; it was audited and
	// receipted and nothing was delivered.
	OutcomeDenied
	// OutcomeInvalid: the request could not be parsed or lacks a field.
	OutcomeInvalid
	// OutcomePermanent: delivery (or sealing for the recipient) can never
	// succeed; retrying does not help.
	OutcomePermanent
	// OutcomeTransient: a failure that a later attempt may not meet (a
	// partner 503, Vault unreachable, the store busy).
	OutcomeTransient
	// OutcomeSlow: the message is still being worked on; its ack deadline
	// must be extended.
	OutcomeSlow
)

// String names the outcome as it appears in metrics.
func (o Outcome) String() string {
	switch o {
	case OutcomeDelivered:
		return "delivered"
	case OutcomeDenied:
		return "denied"
	case OutcomeInvalid:
		return "invalid"
	case OutcomePermanent:
		return "permanent"
	case OutcomeTransient:
		return "transient"
	case OutcomeSlow:
		return "slow"
	}
	return "unknown"
}

// Ack is a JetStream acknowledgement kind.
type Ack int

const (
	// AckDone acknowledges the message: it is finished.
	AckDone Ack = iota + 1
	// AckTerm terminates the message: it will never be redelivered.
	AckTerm
	// AckNak hands the message back for redelivery after Plan.Delay.
	AckNak
	// AckInProgress extends the ack deadline of a message still in work.
	AckInProgress
)

// String names the acknowledgement kind.
func (a Ack) String() string {
	switch a {
	case AckDone:
		return "ack"
	case AckTerm:
		return "term"
	case AckNak:
		return "nak"
	case AckInProgress:
		return "in_progress"
	}
	return "unknown"
}

// Plan is what the broker does with a message after an outcome.
type Plan struct {
	// Ack is the JetStream acknowledgement to send.
	Ack Ack
	// Delay is the redelivery delay of a Nak.
	Delay time.Duration
	// DeadLetter: keep the request, sealed, on clearance.deadletter.<source>.
	DeadLetter bool
	// Final: the message's story ends here, so a receipt is published
	// (deliveries that will be retried get none yet).
	Final bool
	// Exhausted: a transient failure on the last allowed attempt.
	Exhausted bool
}

// RetryPolicy bounds redeliveries.
type RetryPolicy struct {
	// MaxDeliver is the number of attempts after which a transient failure
	// is treated as permanent (dead-lettered and terminated).
	MaxDeliver int
	// BackoffBase is the delay after the first failed attempt; it doubles
	// with every attempt.
	BackoffBase time.Duration
	// BackoffMax caps the doubled delay and the wait a partner asks for
	// with Retry-After.
	BackoffMax time.Duration
}

// Backoff returns the delay before attempt+1 after attempt failed:
// BackoffBase * 2^(attempt-1), capped at BackoffMax.
func (p RetryPolicy) Backoff(attempt uint64) time.Duration {
	d := p.BackoffBase
	for i := uint64(1); i < attempt && d < p.BackoffMax; i++ {
		d *= 2
	}
	return min(d, p.BackoffMax)
}

// PlanFor is the one place that maps an outcome to what happens to the
// message in JetStream. attempt is the message's delivery count (1 on the
// first delivery); err is the failure for transient outcomes, whose
// *connectors.RetryAfterError, when present, sets the least delay, up to
// p.BackoffMax.
func PlanFor(o Outcome, attempt uint64, err error, p RetryPolicy) Plan {
	switch o {
	case OutcomeDelivered, OutcomeDenied:
		return Plan{Ack: AckDone, Final: true}
	case OutcomeInvalid, OutcomePermanent:
		return Plan{Ack: AckTerm, DeadLetter: true, Final: true}
	case OutcomeSlow:
		return Plan{Ack: AckInProgress}
	case OutcomeTransient:
		if p.MaxDeliver > 0 && attempt >= uint64(p.MaxDeliver) {
			return Plan{Ack: AckTerm, DeadLetter: true, Final: true, Exhausted: true}
		}
		delay := p.Backoff(attempt)
		// The partner's wait is capped like the backoff: a message handed
		// back with a delay still counts towards the consumer's
		// MaxAckPending, so a partner asking for days would hold it out of
		// reach of max_deliver and its dead letter while it blocks the
		// transfers to every other recipient.
		var ra *connectors.RetryAfterError
		if errors.As(err, &ra) {
			delay = max(delay, min(ra.After, p.BackoffMax))
		}
		return Plan{Ack: AckNak, Delay: delay}
	}
	// An unknown outcome is a programming error; hand the message back
	// rather than lose it.
	return Plan{Ack: AckNak, Delay: p.Backoff(attempt)}
}

// Classify maps an error of sealing, auditing or delivering to an outcome:
// nil is delivered; connectors.ErrPermanent and the permanent key errors are
// permanent; everything else (keys.ErrUnavailable, a RetryAfterError, a
// timeout, a closed connector) is transient.
func Classify(err error) Outcome {
	switch {
	case err == nil:
		return OutcomeDelivered
	case errors.Is(err, connectors.ErrPermanent),
		errors.Is(err, keys.ErrUnsupportedKey),
		errors.Is(err, keys.ErrMalformed),
		errors.Is(err, keys.ErrNotAuthentic),
		errors.Is(err, keys.ErrKeyRetired),
		errors.Is(err, errPermanent):
		return OutcomePermanent
	}
	return OutcomeTransient
}

// errPermanent marks broker-side failures that no retry fixes (a recipient
// whose connector is not configured, a party without a usable key).
var errPermanent = errors.New("permanent")
