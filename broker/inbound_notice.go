package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/connectors/natsregion"
	"github.com/clearance-broker/clearance/erasure"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// verifier checks a compact JWS signed by the key service; *keys.Vault and
// *keys.DevKeyRing offer it.
type verifier interface {
	Verify(ctx context.Context, jws []byte) ([]byte, error)
}

// ErasureApplier applies an erasure another region's Clearance notified to
// this region: it records the erasure in this region's registry (so that
// nothing more flows for the subject) and destroys the subject's keys here.
// It must be idempotent: a notice may arrive more than once.
type ErasureApplier interface {
	ApplyErasure(ctx context.Context, subject string, at time.Time) error
}

// ErasureFunc adapts a function to ErasureApplier.
type ErasureFunc func(ctx context.Context, subject string, at time.Time) error

// ApplyErasure calls f.
func (f ErasureFunc) ApplyErasure(ctx context.Context, subject string, at time.Time) error {
	return f(ctx, subject, at)
}

// signer signs payloads with the key service; *keys.Vault and
// *keys.DevKeyRing offer it.
type signer interface {
	Sign(ctx context.Context, payloads [][]byte) ([][]byte, error)
}

// receiveNotice handles an erasure notice another region's Clearance sent to
// this one (Clearance-Kind erasure_notice): signed is the opened envelope,
// a JWS over an erasure.NoticePayload. The signature is verified with this
// region's keys, and a notice not published as the sending region
// publishes it (under its notice id, on its recipient's subject) is
// refused permanently, as an invalid request. When the notice names the
// subject and Options.Erasures is set, the erasure is applied to this
// region's registry and keys; the receipt is audited (erasure_notified,
// source inbound), the verified notice is republished on LocalSubject with
// Clearance-Kind erasure_notice for the systems holding the region's
// copies, and, when the notice asks for it, a signed erasure.AckPayload
// answers on its AckSubject: the sending region marks the notice
// acknowledged on that answer, not on the JetStream acknowledgement.
func (b *Broker) receiveNotice(ctx context.Context, msg jetstream.Msg, signed []byte, res *result) (Outcome, error) {
	v, ok := b.opts.Keys.(verifier)
	if !ok {
		return OutcomePermanent, fmt.Errorf("broker: erasure notice: no key to verify it with: %w", errNotOpenable)
	}
	payload, err := v.Verify(ctx, signed)
	if err != nil {
		return Classify(err), fmt.Errorf("broker: verify erasure notice: %w", err)
	}
	var n erasure.NoticePayload
	if err := json.Unmarshal(payload, &n); err != nil || n.Kind != erasure.NoticeKind || n.NoticeID == "" {
		return OutcomePermanent, fmt.Errorf("broker: erasure notice payload: %w", errNotOpenable)
	}
	// The sending region publishes a notice under its notice id (with the
	// attempt, for one it awaits an answer to: noticeMsgID) and on its
	// recipient's subject (natsregion), as a payload. A sealed notice taken
	// from one message and sent again on another recipient's subject would
	// be applied, and acknowledged in that recipient's name; under another
	// notice's id it would pass the stream's de-duplication.
	if !noticeMsgID(msg.Headers().Get(jetstream.MsgIDHeader), n.NoticeID) {
		res.reasons = []string{"invalid_request: the notice's id is not the message's Nats-Msg-Id"}
		return OutcomePermanent, fmt.Errorf("broker: erasure notice: notice id differs from Nats-Msg-Id: %w", errNotOpenable)
	}
	if why := b.opts.Inbound.misaddressed(msg.Subject(), n.Recipient); why != "" {
		res.reasons = []string{why}
		return OutcomePermanent, fmt.Errorf("broker: erasure notice: %s: %w", strings.TrimPrefix(why, "invalid_request: "), errNotOpenable)
	}
	res.requestID = n.NoticeID
	reasons := []string{"received"}
	applied := n.Subject != "" && b.opts.Erasures != nil
	if applied {
		if err := b.opts.Erasures.ApplyErasure(ctx, n.Subject, n.ErasedAt); err != nil {
			return OutcomeTransient, fmt.Errorf("broker: apply erasure notice: %w", err)
		}
		reasons = append(reasons, "applied")
	} else if n.AckSubject != "" {
		// The sending region asks for an answer to a notice this region
		// did not apply (it names no subject, or this instance applies
		// none): an acknowledgement would tell it the erasure was done.
		// Unanswered, the notice stays pending there, and escalates.
		reasons = append(reasons, "not_applied")
	}
	for _, id := range n.RequestIDs {
		reasons = append(reasons, "request:"+id)
	}
	seq, err := b.appendEntry(ctx, &audit.Entry{Time: b.opts.Now(), Event: audit.EventErasureNotified, RequestID: n.NoticeID,
		Source: InboundSource, Recipient: n.Recipient, SubjectID: n.Subject, Reasons: reasons, KeyRef: b.keys.KeyRef(),
		PayloadDigest: audit.Digest(msg.Data())})
	if err != nil {
		return OutcomeTransient, err
	}
	res.seq = seq
	// Handed on by request ids only, as a notice to a partner names the
	// subject: not with the subject's id (which this region has applied
	// already) nor the sending region's answer subject.
	local := n
	local.Subject, local.AckSubject = "", ""
	data, err := json.Marshal(local)
	if err != nil {
		return OutcomePermanent, fmt.Errorf("broker: encode erasure notice: %w", err)
	}
	out := nats.NewMsg(b.opts.Inbound.LocalSubject)
	out.Data = data
	out.Header.Set(jetstream.MsgIDHeader, n.NoticeID)
	out.Header.Set(natsregion.HeaderKind, erasure.NoticeKind)
	if err := b.republish(ctx, out); err != nil {
		return OutcomeTransient, fmt.Errorf("broker: republish erasure notice: %w", err)
	}
	if n.AckSubject != "" && applied {
		if err := b.answerNotice(ctx, &n); err != nil {
			return Classify(err), err
		}
	}
	return OutcomeDelivered, nil
}

// noticeMsgID reports whether msgID is a Nats-Msg-Id the sending region
// (erasure.Notifier) publishes the notice noticeID under: the notice id,
// or, for a notice it awaits an answer to, the notice id and ".a" and the
// attempt's number.
func noticeMsgID(msgID, noticeID string) bool {
	attempt, ok := strings.CutPrefix(msgID, noticeID)
	if !ok || attempt == "" {
		return ok
	}
	attempt, ok = strings.CutPrefix(attempt, ".a")
	if !ok || attempt == "" {
		return false
	}
	for _, c := range []byte(attempt) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// answerNotice publishes the signed acknowledgement of n on its AckSubject.
func (b *Broker) answerNotice(ctx context.Context, n *erasure.NoticePayload) error {
	s, ok := b.opts.Keys.(signer)
	if !ok {
		return fmt.Errorf("broker: erasure notice: no key to sign the acknowledgement with: %w", errPermanent)
	}
	ack, err := json.Marshal(erasure.AckPayload{Kind: erasure.AckKind, NoticeID: n.NoticeID, Recipient: n.Recipient, AppliedAt: b.opts.Now().UTC()})
	if err != nil {
		return fmt.Errorf("broker: encode acknowledgement: %w", err)
	}
	out, err := s.Sign(ctx, [][]byte{ack})
	if err == nil && len(out) != 1 {
		err = errors.New("no signature")
	}
	if err != nil {
		return fmt.Errorf("broker: sign acknowledgement: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := b.opts.NATS.Publish(n.AckSubject, out[0]); err != nil {
		return fmt.Errorf("broker: publish acknowledgement: %w", err)
	}
	if err := b.opts.NATS.FlushWithContext(ctx); err != nil {
		return fmt.Errorf("broker: publish acknowledgement: %w", err)
	}
	return nil
}
