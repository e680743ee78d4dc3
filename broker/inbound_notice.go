package broker

import (
	"context"
	"encoding/json"
	"fmt"

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

// receiveNotice handles an erasure notice another region's Clearance sent to
// this one (Clearance-Kind erasure_notice): signed is the opened envelope,
// a JWS over an erasure.NoticePayload. The signature is verified with this
// region's keys, the receipt is audited (erasure_notified, source inbound)
// and the verified notice is republished on LocalSubject with
// Clearance-Kind erasure_notice, for the systems holding the region's
// copies. The JetStream acknowledgement answers the sending region.
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
	res.requestID = n.NoticeID
	reasons := []string{"received"}
	for _, id := range n.RequestIDs {
		reasons = append(reasons, "request:"+id)
	}
	seq, err := b.appendEntry(ctx, &audit.Entry{Time: b.opts.Now(), Event: audit.EventErasureNotified, RequestID: n.NoticeID,
		Source: "inbound", Recipient: n.Recipient, Reasons: reasons, KeyRef: b.keys.KeyRef(), PayloadDigest: audit.Digest(msg.Data())})
	if err != nil {
		return OutcomeTransient, err
	}
	res.seq = seq
	out := nats.NewMsg(b.opts.Inbound.LocalSubject)
	out.Data = payload
	out.Header.Set(jetstream.MsgIDHeader, n.NoticeID)
	out.Header.Set(natsregion.HeaderKind, erasure.NoticeKind)
	if err := b.republish(ctx, out); err != nil {
		return OutcomeTransient, fmt.Errorf("broker: republish erasure notice: %w", err)
	}
	return OutcomeDelivered, nil
}
