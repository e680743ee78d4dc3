package broker

import (
	"context"
	"slices"
	"strings"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/audit"
	"github.com/nats-io/nats.go/jetstream"
)

// AuditQuerier is what an AuditLog may also offer: the entries recorded for
// one request. With it, a message redelivered after its final outcome was
// recorded (its acknowledgement lost to a crash, a SIGKILL or a NATS
// restart) is acknowledged without being decided, delivered or audited a
// second time; only its dead letter (idempotent) and receipt are sent again.
// *audit.Log offers it.
type AuditQuerier interface {
	Query(ctx context.Context, f audit.Filter) ([]audit.Entry, error)
}

// recorded returns the final outcome already audited for a redelivered
// message (attempt > 1), or nil when there is none or it cannot be known;
// the message is then processed as usual. The request id is the message's
// Nats-Msg-Id, which the pipeline requires to equal the request's id.
func (b *Broker) recorded(ctx context.Context, msg jetstream.Msg, attempt uint64) *result {
	q, ok := b.opts.Audit.(AuditQuerier)
	id := msg.Headers().Get(jetstream.MsgIDHeader)
	if !ok || attempt < 2 || id == "" {
		return nil
	}
	entries, err := q.Query(ctx, audit.Filter{RequestID: id})
	if err != nil {
		return nil // the store's trouble is met, and retried, by process
	}
	for _, e := range slices.Backward(entries) {
		if o, final := finalOutcome(&e); final {
			return &result{
				outcome: o, recorded: true, requestID: id, source: sourceOf(msg.Subject()), seq: e.Sequence,
				reasons: slices.Clone(e.Reasons), dec: &agreements.Decision{Decision: agreements.Outcome(e.Decision)},
			}
		}
	}
	return nil
}

// finalOutcome maps an audit entry that ends a request's story to its
// outcome: delivered, a denial, a rejection, or a delivery failure that was
// dead-lettered (not a transient one, which was retried).
func finalOutcome(e *audit.Entry) (Outcome, bool) {
	switch e.Event {
	case audit.EventDelivered:
		return OutcomeDelivered, true
	case audit.EventRejected:
		return OutcomeInvalid, true
	case audit.EventDecided:
		return OutcomeDenied, e.Decision == string(agreements.Deny)
	case audit.EventDeliveryFailed:
		transient := slices.ContainsFunc(e.Reasons, func(r string) bool { return strings.HasSuffix(r, OutcomeTransient.String()) })
		return OutcomePermanent, !transient
	}
	return 0, false
}

// finishRecorded completes a message whose outcome was already recorded:
// its dead letter is published again (de-duplicated by the stream) and its
// receipt is sent; nothing is audited again.
func (b *Broker) finishRecorded(ctx context.Context, msg jetstream.Msg, res *result, attempt uint64) Plan {
	plan := PlanFor(res.outcome, attempt, nil, b.opts.Retry)
	if plan.DeadLetter {
		if err := b.deadLetter(ctx, msg, res); err != nil {
			res.err = err
			return Plan{Ack: AckNak, Delay: b.opts.Retry.Backoff(attempt)}
		}
	}
	b.publishReceipt(res, plan)
	return plan
}

var _ AuditQuerier = (*audit.Log)(nil)
