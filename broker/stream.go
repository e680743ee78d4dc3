package broker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Subjects of the wire formats (DESIGN section 4).
const (
	// TransfersSubject is the prefix producers publish requests under:
	// clearance.transfers.<source>.
	TransfersSubject = "clearance.transfers"
	// ReceiptsSubject is the prefix of receipts: clearance.receipts.<source>.
	ReceiptsSubject = "clearance.receipts"
	// DeadLetterSubject is the prefix of sealed dead letters:
	// clearance.deadletter.<source>.
	DeadLetterSubject = "clearance.deadletter"
	// DeadLetterStream keeps dead letters.
	DeadLetterStream = "CLEARANCE_DEADLETTER"
	// RepliesSubject is the prefix of each instance's own receipt subject,
	// clearance.replies.<instance>: a request posted over HTTP carries its
	// instance's subject in ReplyHeader, and whichever instance processes it
	// sends the receipt there too (receipt.go).
	RepliesSubject = "clearance.replies"
	// ReplyHeader names the instance subject a request's receipt is also
	// sent to. It holds a subject only, nothing of the request.
	ReplyHeader = "Clearance-Reply"
)

// replyTo returns where besides clearance.receipts.<source> the receipt of
// msg goes: its ReplyHeader when that is an instance subject, else "". A
// producer can name no other subject.
func replyTo(h interface{ Get(string) string }) string {
	to := h.Get(ReplyHeader)
	inst, ok := strings.CutPrefix(to, RepliesSubject+".")
	if !ok || !validToken(inst) {
		return ""
	}
	return to
}

// StreamOptions describes the ingest stream and its shared consumer.
type StreamOptions struct {
	// Name of the stream (default CLEARANCE_TRANSFERS).
	Name string
	// Consumer is the durable name shared by every instance (default
	// "clearance").
	Consumer string
	// Replicas of the stream and consumer (default 1).
	Replicas int
	// DuplicateWindow of Nats-Msg-Id de-duplication (default 2m).
	DuplicateWindow time.Duration
	// AckWait before redelivery of an unacknowledged message (default 30s).
	AckWait time.Duration
	// FetchBatch is how many messages are pulled ahead (default 64; at
	// least the concurrency and at most four times it are pulled).
	FetchBatch int
}

func (o *StreamOptions) defaults() {
	if o.Name == "" {
		o.Name = "CLEARANCE_TRANSFERS"
	}
	if o.Consumer == "" {
		o.Consumer = "clearance"
	}
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.DuplicateWindow <= 0 {
		o.DuplicateWindow = 2 * time.Minute
	}
	if o.AckWait <= 0 {
		o.AckWait = 30 * time.Second
	}
	if o.FetchBatch <= 0 {
		o.FetchBatch = 64
	}
}

// ensureIngest creates or updates the ingest stream (file storage, work
// queue retention so that requests holding personal data leave the stream
// once handled) and the shared durable pull consumer. Redeliveries are
// unlimited on the server: the broker counts attempts itself and
// dead-letters at MaxDeliver, so a message is never dropped silently.
func ensureIngest(ctx context.Context, js jetstream.JetStream, o StreamOptions) (jetstream.Consumer, error) {
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        o.Name,
		Description: "Clearance transfer requests",
		Subjects:    []string{TransfersSubject + ".>"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
		Duplicates:  o.DuplicateWindow,
	})
	if err != nil {
		return nil, fmt.Errorf("broker: stream %s: %w", o.Name, err)
	}
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        DeadLetterStream,
		Description: "Clearance sealed dead letters",
		Subjects:    []string{DeadLetterSubject + ".>"},
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
	}); err != nil {
		return nil, fmt.Errorf("broker: stream %s: %w", DeadLetterStream, err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, o.Name, jetstream.ConsumerConfig{
		Durable:       o.Consumer,
		Description:   "Clearance pipeline, shared by every instance",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       o.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: 20000,
		FilterSubject: TransfersSubject + ".>",
		Replicas:      o.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("broker: consumer %s: %w", o.Consumer, err)
	}
	return cons, nil
}

// ensureInbound creates or updates the inbound region's stream (limits
// retention, as the sending natsregion connector creates it; it holds sealed
// envelopes only) and its consumer.
func ensureInbound(ctx context.Context, js jetstream.JetStream, o InboundOptions, replicas int, ackWait time.Duration) (jetstream.Consumer, error) {
	// A longer de-duplication window set on the stream (the sending
	// connector's duplicate_window) is kept, not reset.
	window := 2 * time.Minute
	if s, err := js.Stream(ctx, o.Stream); err == nil && s.CachedInfo().Config.Duplicates > window {
		window = s.CachedInfo().Config.Duplicates
	}
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        o.Stream,
		Description: "Clearance sealed transfers from other regions",
		Subjects:    []string{o.Subject},
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		Duplicates:  window,
	})
	if err != nil {
		return nil, fmt.Errorf("broker: inbound stream %s: %w", o.Stream, err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, o.Stream, jetstream.ConsumerConfig{
		Durable:       o.Consumer,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ackWait,
		MaxDeliver:    -1,
		MaxAckPending: 20000,
		Replicas:      replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("broker: inbound consumer %s: %w", o.Consumer, err)
	}
	return cons, nil
}

// sourceOf returns the <source> token of clearance.transfers.<source>, or
// "unknown" for a subject with more or fewer tokens and for the reserved
// source InboundSource.
func sourceOf(subject string) string {
	rest, ok := strings.CutPrefix(subject, TransfersSubject+".")
	if !ok || rest == "" || strings.Contains(rest, ".") || rest == InboundSource {
		return "unknown"
	}
	return rest
}

// InboundSource is the source under which a receiving region audits and
// dead-letters the regional copies it takes in (clearance.deadletter.inbound).
// No producer may use it: a request kept under it would be taken for a
// regional copy (sourceOf, routeOf).
const InboundSource = "inbound"

// validToken reports whether s can be one subject token.
func validToken(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for _, r := range s {
		if !(r == '_' || r == '-' || (r >= 'A' && r <= 'Z') || (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9')) {
			return false
		}
	}
	return true
}

func joinErrs(errs []error) error { return errors.Join(errs...) }
