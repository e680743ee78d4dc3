package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/connectors/natsregion"
	"github.com/clearance-broker/clearance/erasure"
	"github.com/clearance-broker/clearance/shred"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// InboundOptions makes an instance the receiving side of regional transfers:
// it consumes sealed envelopes from Stream (capturing Subject, where the
// sending region's natsregion connector publishes), opens them with its own
// keys, audits `received` and republishes the payload on LocalSubject.
type InboundOptions struct {
	// Stream is created or updated at start.
	Stream string
	// Subject is what Stream captures (wildcards allowed).
	Subject string
	// Consumer is the durable consumer shared by the region's instances
	// (default "clearance-inbound").
	Consumer string
	// LocalSubject receives the opened payload (JSON of Payload) with
	// Nats-Msg-Id set to the request id.
	LocalSubject string
	// Recipients are the parties this region receives for: a copy or an
	// erasure notice for another is refused. Regions share one transit
	// key, so a copy sealed for one region's recipient opens in every
	// region; published on another region's inbound subject it would be
	// handed on there. Empty: any recipient (logged at start).
	Recipients []string
}

// InboundSubject is the subject a sending region's natsregion connector
// publishes recipient's copies on, for an inbound stream capturing filter:
// the filter's prefix and the recipient when it ends in a wildcard (true),
// else the filter itself (false).
func InboundSubject(filter, recipient string) (string, bool) {
	for _, wild := range []string{".>", ".*"} {
		if pre, ok := strings.CutSuffix(filter, wild); ok {
			return pre + "." + recipient, true
		}
	}
	return filter, false
}

// misaddressed says why a copy or notice for recipient, received on
// subject, is not this region's to take, or returns "". The subject must be
// the inbound subject's prefix and the recipient (as natsregion publishes
// it: no other token), and the recipient one of Recipients when they are
// given.
func (o *InboundOptions) misaddressed(subject, recipient string) string {
	want, wild := InboundSubject(o.Subject, recipient)
	switch {
	case wild && subject != want, !wild && subject[strings.LastIndexByte(subject, '.')+1:] != recipient:
		return "invalid_request: the recipient is not the one the subject names"
	case len(o.Recipients) > 0 && !slices.Contains(o.Recipients, recipient):
		return "invalid_request: the recipient is not one this region receives for"
	}
	return ""
}

func (o *InboundOptions) defaults() {
	if o.Consumer == "" {
		o.Consumer = "clearance-inbound"
	}
}

// AuditScanner reads the audit log; *audit.Log satisfies it. With it, an
// inbound region hands on a request id once (receivedBefore).
type AuditScanner interface {
	Scan(ctx context.Context, f audit.Filter, fn func(*audit.Entry) error) error
}

// What the audit log holds of an inbound request id already.
const (
	receivedNone  = iota // nothing: a first receipt
	receivedThis         // a receipt of this very envelope (its hand-on is tried again)
	receivedOther        // a receipt of another envelope under the id
)

// receivedBefore looks up the received entries of request id: whether
// the envelope whose digest is given was received already, or another
// under the id. The sending region publishes a request under its id, and
// the stream's de-duplication drops a second publication within its
// window; past it (a publication whose answer was lost, sent again minutes
// later), only the log tells. Without an AuditScanner, receivedNone.
func (b *Broker) receivedBefore(ctx context.Context, id, digest string) (int, error) {
	sc, ok := b.opts.Audit.(AuditScanner)
	if !ok {
		return receivedNone, nil
	}
	found := receivedNone
	err := sc.Scan(ctx, audit.Filter{RequestID: id, Event: audit.EventReceived}, func(e *audit.Entry) error {
		if e.PayloadDigest == digest {
			found = receivedThis
		} else if found == receivedNone {
			found = receivedOther
		}
		return nil
	})
	if err != nil {
		return receivedNone, fmt.Errorf("broker: look up earlier receipts: %w", err)
	}
	return found, nil
}

// errNotOpenable marks an inbound envelope this region cannot use.
var errNotOpenable = errors.New("inbound envelope cannot be opened")

func (b *Broker) handleInbound(ctx context.Context, msg jetstream.Msg) {
	attempt := uint64(1)
	if md, err := msg.Metadata(); err == nil {
		attempt = md.NumDelivered
	}
	res := &result{source: InboundSource, requestID: msg.Headers().Get(jetstream.MsgIDHeader)}
	res.outcome, res.err = b.receive(ctx, msg, res)
	plan := PlanFor(res.outcome, attempt, res.err, b.opts.Retry)
	if plan.DeadLetter {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if len(res.reasons) == 0 {
			res.reasons = []string{"invalid_request: sealed envelope cannot be opened"}
		}
		if plan.Exhausted {
			res.reasons = []string{"receive_failed: max_deliver_reached"}
			if errors.Is(res.err, shred.ErrUnknownKey) {
				res.reasons = []string{"receive_failed: subject_key_unknown"}
			}
		}
		auditID := InboundRejectionID(res.requestID, msg)
		e := b.entry(audit.EventRejected, res)
		e.RequestID = auditID
		seq, err := b.appendEntry(ctx, e)
		switch {
		case err == nil:
			res.seq = seq
		case alreadyRecorded(res, err):
			// The request's final outcome stands: the message is done and
			// is terminated without a second entry.
		default:
			plan = Plan{Ack: AckNak, Delay: b.opts.Retry.Backoff(attempt)}
		}
		if plan.DeadLetter {
			// Already sealed: kept as it came. Published again for an
			// outcome already recorded (the instance that recorded it may
			// have stopped before publishing), de-duplicated by the stream.
			dl := nats.NewMsg(DeadLetterSubject + ".inbound")
			dl.Data = msg.Data()
			if md, err := msg.Metadata(); err == nil {
				dl.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("dl-%s-%d", md.Stream, md.Sequence.Stream))
			}
			if audit.ClaimedID(res.requestID) {
				dl.Header.Set("Clearance-Request-Id", res.requestID)
			}
			dl.Header.Set("Clearance-Audit-Id", auditID)
			dl.Header.Set("Clearance-Outcome", res.outcome.String())
			if _, err := b.js.PublishMsg(ctx, dl); err != nil {
				plan = Plan{Ack: AckNak, Delay: b.opts.Retry.Backoff(attempt)}
			}
		}
	}
	b.ack(msg, plan, res.outcome)
	level := b.log.Debug
	if res.outcome != OutcomeDelivered {
		level = b.log.Warn
	}
	args := []any{"request_id", res.requestID, "outcome", res.outcome.String(), "action", plan.Ack.String(), "attempt", attempt,
		"audit_sequence", res.seq, "already_recorded", res.recorded}
	if res.err != nil {
		args = append(args, "err", res.err.Error())
	}
	level("inbound transfer", args...)
}

// InboundRejectionPrefix begins the request id under which a receiving
// region audits the rejection of a message it took in (InboundRejectionID).
// No producer may send a request id that begins with it (idProblem).
const InboundRejectionPrefix = "inbound:"

// InboundRejectionID is the request id of the `rejected` entry for an
// inbound message that claims the request id claimed (its Nats-Msg-Id, or
// the id of the payload that opened). A rejection is a final outcome, of
// which the log holds one per request id; under the claimed id itself, a
// message anyone may publish on the inbound subject, unsealed, would take
// the final outcome of a request id that this region's own producers (or
// a later, genuine regional copy) use, so that their request would be
// refused as already decided. Under its own prefix it records the claim
// and takes nothing from anyone. A claimed id that cannot be an audit key
// (empty, too long, with control characters or white space at either end)
// is replaced by the message's place in its stream.
func InboundRejectionID(claimed string, msg jetstream.Msg) string {
	if id := InboundRejectionPrefix + claimed; audit.ClaimedID(claimed) && len(id) <= audit.MaxRequestID {
		return id
	}
	if md, err := msg.Metadata(); err == nil {
		return fmt.Sprintf("%s%s-%d", InboundRejectionPrefix, md.Stream, md.Sequence.Stream)
	}
	return InboundRejectionPrefix + "unknown"
}

// alreadyRecorded reports whether err is the audit log's refusal of a
// final outcome because the request already has one (audit.ErrDuplicateOutcome):
// recorded by another instance, or by an earlier delivery of the message
// whose acknowledgement was lost. That outcome stands, so the message is
// done rather than retried until max-deliver: res takes the recorded
// entry's sequence number and is marked recorded.
func alreadyRecorded(res *result, err error) bool {
	if !errors.Is(err, audit.ErrDuplicateOutcome) {
		return false
	}
	var dup *audit.DuplicateOutcomeError
	if errors.As(err, &dup) {
		res.seq = dup.Sequence
	}
	res.recorded = true
	return true
}

// receive opens, audits and republishes one inbound envelope.
func (b *Broker) receive(ctx context.Context, msg jetstream.Msg, res *result) (Outcome, error) {
	plain, err := b.openInbound(ctx, msg.Data())
	if err != nil {
		return Classify(err), fmt.Errorf("broker: open inbound: %w", err)
	}
	defer clear(plain)
	if msg.Headers().Get(natsregion.HeaderKind) == erasure.NoticeKind {
		return b.receiveNotice(ctx, msg, plain, res)
	}
	var p Payload
	if err := json.Unmarshal(plain, &p); err != nil || p.RequestID == "" {
		return OutcomePermanent, fmt.Errorf("broker: inbound payload: %w", errNotOpenable)
	}
	// The sending region publishes a payload under its request id and on
	// its recipient's subject (natsregion). A sealed payload taken from
	// one message and sent again under another id (past the stream's
	// de-duplication) or on another recipient's subject is refused.
	if id := msg.Headers().Get(jetstream.MsgIDHeader); id != p.RequestID {
		res.reasons = []string{"invalid_request: the payload's request id is not the message's Nats-Msg-Id"}
		return OutcomePermanent, fmt.Errorf("broker: inbound payload: request id differs from Nats-Msg-Id: %w", errNotOpenable)
	}
	if why := b.opts.Inbound.misaddressed(msg.Subject(), p.Recipient); why != "" {
		res.reasons = []string{why}
		return OutcomePermanent, fmt.Errorf("broker: inbound payload: %s: %w", strings.TrimPrefix(why, "invalid_request: "), errNotOpenable)
	}
	res.requestID = p.RequestID
	digest := audit.Digest(msg.Data())
	again, err := b.receivedBefore(ctx, p.RequestID, digest)
	switch {
	case err != nil:
		return OutcomeTransient, err
	case again == receivedOther:
		// The sending region published the request again, sealed anew,
		// past this stream's de-duplication (its first publication's
		// answer lost): it was received and handed on already.
		b.log.Info("inbound copy received already under its request id; not handed on again", "request_id", p.RequestID)
		return OutcomeDelivered, nil
	case again == receivedNone:
		e := &audit.Entry{
			Time: b.opts.Now(), Event: audit.EventReceived, RequestID: p.RequestID, Source: p.Source,
			Recipient: p.Recipient, Purpose: p.Purpose, Dataset: p.Dataset, Decision: "allow",
			Mechanism: p.Mechanism, KeyRef: b.keys.KeyRef(), PayloadDigest: digest,
		}
		setBasis(e, p.Agreement, p.LegalOrder)
		seq, err := b.appendEntry(ctx, e)
		if err != nil {
			return OutcomeTransient, err
		}
		res.seq = seq
	}
	// receivedThis: this message's hand-on failed before; it is tried
	// again without a second entry.
	out := nats.NewMsg(b.opts.Inbound.LocalSubject)
	out.Data = plain
	out.Header.Set(jetstream.MsgIDHeader, p.RequestID)
	out.Header.Set("Clearance-Request-Id", p.RequestID)
	if err := b.republish(ctx, out); err != nil {
		return OutcomeTransient, fmt.Errorf("broker: republish: %w", err)
	}
	return OutcomeDelivered, nil
}

// republish publishes an opened transfer on the local subject: through
// JetStream (waiting for the stream's acknowledgement) when a stream captures
// the subject, else as a plain NATS message for the region's subscribers.
func (b *Broker) republish(ctx context.Context, msg *nats.Msg) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := b.js.StreamNameBySubject(ctx, msg.Subject); err == nil {
		_, err := b.js.PublishMsg(ctx, msg)
		return err
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return err
	}
	if err := b.opts.NATS.PublishMsg(msg); err != nil {
		return err
	}
	return b.opts.NATS.FlushWithContext(ctx)
}
