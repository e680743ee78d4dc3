package broker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/audit"
	"github.com/nats-io/nats.go/jetstream"
)

// AuditQuerier is what an AuditLog may also offer: the final outcomes
// recorded for requests, looked up by request id in one query. With it, a
// message redelivered after its final outcome was recorded (its
// acknowledgement lost to a crash, a SIGKILL or a NATS restart) is
// acknowledged without being decided, delivered or audited a second time;
// only its dead letter (idempotent) and receipt are sent again; and a
// request posted again over HTTP after the stream's de-duplication window
// is answered from the log. *audit.Log offers it.
type AuditQuerier interface {
	FinalOutcomes(ctx context.Context, ids []string) (map[string]audit.Entry, error)
}

// redelivered reports whether msg is a redelivery (JetStream's
// NumDelivered above 1): only then may its final outcome already be in the
// audit log, so only then does it pay for a look into the log. A first
// delivery that another instance also holds (it waited in this instance's
// buffer past the ack wait while JetStream redelivered it there) is not
// looked up: the audit writer refuses a second final outcome for a request
// atomically (audit.ErrDuplicateOutcome), recordedByOther takes a refused
// delivery as done, and a refused denial or failure is handed back and its
// redelivery is looked up here. Looking up every message older than half
// the ack wait made a backlog several times slower to drain.
func redelivered(attempt uint64) bool { return attempt > 1 }

// recorded returns the final outcome already audited for a redelivered
// message, or nil when there is none or it cannot be known; the message is then
// processed as usual. The request id is the message's Nats-Msg-Id, which
// the pipeline requires to equal the request's id.
func (b *Broker) recorded(ctx context.Context, msg jetstream.Msg, redelivery bool) *result {
	id := msg.Headers().Get(jetstream.MsgIDHeader)
	if !redelivery || id == "" {
		return nil
	}
	res, err := b.finalFor(ctx, id)
	if err != nil || res == nil {
		return nil // the store's trouble is met, and retried, by process
	}
	res.source = sourceOf(msg.Subject())
	return res
}

// refusedDecision is the result of a request whose decision the audit log
// did not append (err). A request that already has a final outcome was sent
// again under its id after the transfer stream's de-duplication window
// forgot it: a first delivery, which recorded does not look up, so the log
// refuses its decision (ErrDuplicateOutcome): a decision to allow because
// the request has a final outcome, a denial because it would be a second
// one. Nothing is delivered. It is then answered as a redelivery is
// (finishRecorded): with the outcome recorded, looked up here, and nothing
// audited again. Any other error, or a look-up that fails, is transient:
// the message is handed back and its redelivery looked up.
func (b *Broker) refusedDecision(ctx context.Context, res *result, err error) *result {
	rec, err := b.recordedBefore(ctx, res, err)
	if rec != nil {
		return rec
	}
	res.outcome, res.err = OutcomeTransient, err
	return res
}

// recordedBefore returns the final outcome recorded for res's request when
// err is the audit log's refusal of res's entry as a second final outcome
// (ErrDuplicateOutcome): the request was sent again after the transfer
// stream's de-duplication window, and is answered as a redelivery is
// (finishRecorded). It returns nil and err, joined with the look-up's
// error if that failed, when there is none to answer with.
func (b *Broker) recordedBefore(ctx context.Context, res *result, err error) (*result, error) {
	if !errors.Is(err, audit.ErrDuplicateOutcome) {
		return nil, err
	}
	rec, lerr := b.finalFor(ctx, res.requestID)
	if lerr != nil {
		return nil, errors.Join(err, lerr)
	}
	if rec == nil {
		return nil, err
	}
	rec.source, rec.resent = res.source, true
	return rec, nil
}

// finalFor looks up the final outcome recorded for request id.
func (b *Broker) finalFor(ctx context.Context, id string) (*result, error) {
	found, err := b.finalsFor(ctx, []string{id})
	return found[id], err
}

// finalsFor looks up the final outcomes recorded for ids, all in one
// look-up (AuditQuerier); an id without one is absent.
func (b *Broker) finalsFor(ctx context.Context, ids []string) (map[string]*result, error) {
	q, ok := b.opts.Audit.(AuditQuerier)
	if !ok || len(ids) == 0 {
		return nil, nil
	}
	entries, err := q.FinalOutcomes(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("broker: look up outcomes: %w", err)
	}
	found := make(map[string]*result, len(entries))
	for id, e := range entries {
		if o, final := finalOutcome(&e); final {
			found[id] = &result{
				outcome: o, recorded: true, requestID: id, seq: e.Sequence,
				reasons: e.Reasons, dec: &agreements.Decision{Decision: agreements.Outcome(e.Decision)},
			}
		}
	}
	return found, nil
}

// recordedByOther reports whether err is the audit log's refusal of the
// delivered entry of res because another instance recorded the request's
// delivery first (a redelivered message worked on by two instances in the
// window between recorded's look-up and the append; the log refuses a second
// final outcome atomically). The message is then done: res takes that
// instance's entry, it is acknowledged, and finish sends no second receipt
// (the instance that recorded the delivery sends it). A refusal naming
// another outcome is left to the redelivery, which recorded meets.
func recordedByOther(res *result, err error) bool {
	if err == nil {
		// Before the declaration below, which escapes: no allocation on
		// the path every delivery takes.
		return false
	}
	var dup *audit.DuplicateOutcomeError
	if !errors.As(err, &dup) || dup.Event != audit.EventDelivered || dup.Recorded != audit.EventDelivered {
		return false
	}
	res.outcome, res.seq, res.recorded, res.reasons, res.err = OutcomeDelivered, dup.Sequence, true, nil, nil
	return true
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
		if res.req == nil && res.subject == "" && b.opts.Subjects != nil {
			// res was rebuilt from the audit log, which holds the subject
			// only as its HMAC: no key can be found by it. The message
			// itself is at hand, though (the one redelivered, or the one
			// sent again after the de-duplication window, whose dead
			// letter has an id of its own), and its request names the
			// subject (or several): it is read again for it, so that this dead letter
			// too is sealed under the subject's key, and nothing of it is
			// kept for an erased subject. Sealed under the broker's keys
			// instead, it would outlive an erasure. One that names no
			// subject is kept under the broker's keys, as the first time.
			res.subject, res.severalSubjects = looseSubject(msg.Data())
		}
		if err := b.deadLetter(ctx, msg, res); err != nil {
			res.err = err
			return Plan{Ack: AckNak, Delay: b.opts.Retry.Backoff(attempt)}
		}
	}
	b.publishReceipt(res, plan, replyTo(msg.Headers()))
	return plan
}

var _ AuditQuerier = (*audit.Log)(nil)
