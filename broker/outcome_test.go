package broker

import (
	"errors"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/connectors"
	"github.com/clearance-broker/clearance/keys"
)

func TestPlanFor(t *testing.T) {
	policy := RetryPolicy{MaxDeliver: 5, BackoffBase: time.Second, BackoffMax: 10 * time.Second}
	transient := errors.New("webhook: post: status 503")
	retryAfter := &connectors.RetryAfterError{After: 7 * time.Second, Err: transient}
	shortRetryAfter := &connectors.RetryAfterError{After: time.Millisecond, Err: transient}
	longRetryAfter := &connectors.RetryAfterError{After: 30 * time.Second, Err: transient}
	absurdRetryAfter := &connectors.RetryAfterError{After: 999999999 * time.Second, Err: transient}
	tests := []struct {
		name    string
		outcome Outcome
		attempt uint64
		err     error
		want    Plan
	}{
		{"delivered acks", OutcomeDelivered, 1, nil, Plan{Ack: AckDone, Final: true}},
		{"delivered on a retry acks", OutcomeDelivered, 4, nil, Plan{Ack: AckDone, Final: true}},
		{"denied acks", OutcomeDenied, 1, nil, Plan{Ack: AckDone, Final: true}},
		{"invalid dead-letters and terminates", OutcomeInvalid, 1, nil, Plan{Ack: AckTerm, DeadLetter: true, Final: true}},
		{"permanent dead-letters and terminates", OutcomePermanent, 2, connectors.ErrPermanent, Plan{Ack: AckTerm, DeadLetter: true, Final: true}},
		{"slow extends the deadline", OutcomeSlow, 1, nil, Plan{Ack: AckInProgress}},
		{"first transient naks after base", OutcomeTransient, 1, transient, Plan{Ack: AckNak, Delay: time.Second}},
		{"third transient doubles twice", OutcomeTransient, 3, transient, Plan{Ack: AckNak, Delay: 4 * time.Second}},
		{"backoff is capped", OutcomeTransient, 4, transient, Plan{Ack: AckNak, Delay: 8 * time.Second}},
		{"retry-after beyond backoff wins", OutcomeTransient, 1, retryAfter, Plan{Ack: AckNak, Delay: 7 * time.Second}},
		{"retry-after below backoff keeps backoff", OutcomeTransient, 2, shortRetryAfter, Plan{Ack: AckNak, Delay: 2 * time.Second}},
		{"wrapped retry-after is found", OutcomeTransient, 1, fmt.Errorf("deliver: %w", retryAfter), Plan{Ack: AckNak, Delay: 7 * time.Second}},
		{"retry-after beyond backoff max is capped", OutcomeTransient, 1, longRetryAfter, Plan{Ack: AckNak, Delay: 10 * time.Second}},
		{"retry-after of decades is capped", OutcomeTransient, 2, absurdRetryAfter, Plan{Ack: AckNak, Delay: 10 * time.Second}},
		{"max deliver reached dead-letters", OutcomeTransient, 5, transient, Plan{Ack: AckTerm, DeadLetter: true, Final: true, Exhausted: true}},
		{"beyond max deliver dead-letters", OutcomeTransient, 9, retryAfter, Plan{Ack: AckTerm, DeadLetter: true, Final: true, Exhausted: true}},
		{"unknown outcome is handed back", Outcome(0), 1, nil, Plan{Ack: AckNak, Delay: time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := PlanFor(tt.outcome, tt.attempt, tt.err, policy); got != tt.want {
				t.Errorf("PlanFor(%s, %d) = %+v, want %+v", tt.outcome, tt.attempt, got, tt.want)
			}
		})
	}
}

// TestPlanForCapsRetryAfter: however long a partner asks to wait, the
// message comes back within the policy's BackoffMax, so it goes on towards
// max_deliver and its dead letter instead of holding a place in the
// consumer's MaxAckPending for good.
func TestPlanForCapsRetryAfter(t *testing.T) {
	policy := RetryPolicy{MaxDeliver: 10, BackoffBase: time.Second, BackoffMax: 5 * time.Minute}
	transient := errors.New("webhook: post: status 503")
	for _, after := range []time.Duration{
		0, time.Millisecond, 4 * time.Minute, 5 * time.Minute, 5*time.Minute + 1,
		999999999 * time.Second, time.Duration(math.MaxInt64),
	} {
		err := fmt.Errorf("deliver: %w", &connectors.RetryAfterError{After: after, Err: transient})
		for attempt := uint64(1); attempt < uint64(policy.MaxDeliver); attempt++ {
			got := PlanFor(OutcomeTransient, attempt, err, policy)
			if got.Ack != AckNak || got.Delay > policy.BackoffMax || got.Delay < policy.Backoff(attempt) {
				t.Errorf("PlanFor(attempt %d, Retry-After %s) = %+v, want a nak within [%s, %s]",
					attempt, after, got, policy.Backoff(attempt), policy.BackoffMax)
			}
			if after <= policy.BackoffMax && got.Delay < after {
				t.Errorf("PlanFor(attempt %d, Retry-After %s) = %+v, want the partner's wait honoured", attempt, after, got)
			}
		}
		if got := PlanFor(OutcomeTransient, uint64(policy.MaxDeliver), err, policy); !got.Exhausted || got.Ack != AckTerm {
			t.Errorf("PlanFor(attempt %d, Retry-After %s) = %+v, want the message dead-lettered", policy.MaxDeliver, after, got)
		}
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		give error
		want Outcome
	}{
		{"nil", nil, OutcomeDelivered},
		{"connector permanent", fmt.Errorf("webhook: status 400: %w", connectors.ErrPermanent), OutcomePermanent},
		{"retry after", &connectors.RetryAfterError{After: time.Second, Err: errors.New("503")}, OutcomeTransient},
		{"vault unavailable", fmt.Errorf("seal: %w", keys.ErrUnavailable), OutcomeTransient},
		{"unsupported party key", fmt.Errorf("seal: %w", keys.ErrUnsupportedKey), OutcomePermanent},
		{"connector closed", connectors.ErrClosed, OutcomeTransient},
		{"broker permanent", fmt.Errorf("broker: no connector: %w", errPermanent), OutcomePermanent},
		{"plain error", errors.New("timeout"), OutcomeTransient},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Classify(tt.give); got != tt.want {
				t.Errorf("Classify(%v) = %s, want %s", tt.give, got, tt.want)
			}
		})
	}
}
