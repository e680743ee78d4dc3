// Package mirror keeps a copy of the audit log's signed checkpoints in a
// JetStream stream, outside the database that holds the log.
//
// A checkpoint seals the chain up to its sequence, but its row lives in the
// same database as the entries: whoever can rewrite entries there can delete
// the row of the checkpoint that would tell, and a rewrite confined to the
// entries since the checkpoint before it then reads as a tail the cadence
// still allows. The copies in the stream, which the database's writers
// cannot reach and the stream is told never to delete (deny_delete,
// deny_purge), give clearance audit verify the checkpoint back
// (audit.VerifyOptions.Mirrored).
//
// A Publisher takes the checkpoints from audit.Options.OnCheckpoint and
// publishes them in the background; Read returns every copy of a stream.
package mirror

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DefaultStream is the stream the checkpoints are mirrored to unless
// configured otherwise (audit.checkpoint_stream).
const DefaultStream = "CLEARANCE_AUDIT_CHECKPOINTS"

// SubjectOf returns the subject the checkpoints of stream are published on.
func SubjectOf(stream string) string { return "clearance.audit.checkpoints." + stream }

// ValidStream reports whether name can name a stream: 1 to 64 letters,
// digits, '_' or '-'.
func ValidStream(name string) bool {
	if name == "" || len(name) > 64 {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// EnsureStream creates or updates the stream: file storage, every copy kept
// (no age or size limit), deletes and purges refused, a copy published
// twice (by two instances, or a retry) kept once.
func EnsureStream(ctx context.Context, js jetstream.JetStream, stream string, replicas int) error {
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        stream,
		Description: "Clearance audit checkpoints, kept outside the audit database",
		Subjects:    []string{SubjectOf(stream)},
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		Duplicates:  2 * time.Minute,
		DenyDelete:  true,
		DenyPurge:   true,
	})
	if err != nil {
		return fmt.Errorf("audit mirror: stream %s: %w", stream, err)
	}
	return nil
}

// queueSize is how many checkpoints wait for their publish at most; more
// are dropped and counted (Publisher.Failed), never waited for.
const queueSize = 1024

// Publisher publishes checkpoints to a mirror stream in the background.
type Publisher struct {
	js      jetstream.JetStream
	subject string
	log     *slog.Logger
	done    chan struct{}
	failed  atomic.Int64
	// mu guards queue's closing: closed, no checkpoint is queued.
	mu     sync.Mutex
	queue  chan string
	closed bool
	sent   atomic.Int64
	// retry is the pause before the second attempt, doubled for each one
	// after; attempts is how many are made.
	retry    time.Duration
	attempts int
}

// NewPublisher starts a Publisher to stream (created by EnsureStream).
func NewPublisher(js jetstream.JetStream, stream string, logger *slog.Logger) *Publisher {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	p := &Publisher{js: js, subject: SubjectOf(stream), log: logger.With("component", "audit", "stream", stream),
		queue: make(chan string, queueSize), done: make(chan struct{}), retry: 200 * time.Millisecond, attempts: 6}
	go p.run()
	return p
}

// Checkpoints queues the compact JWS of checkpoints for their publish; it
// is audit.Options.OnCheckpoint and never blocks.
func (p *Publisher) Checkpoints(jws []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		p.failed.Add(int64(len(jws)))
		p.log.Warn("audit checkpoints not mirrored: the publisher is closed", "checkpoints", len(jws))
		return
	}
	for _, j := range jws {
		select {
		case p.queue <- j:
		default:
			p.failed.Add(1)
			p.log.Warn("audit checkpoint not mirrored: the queue is full")
		}
	}
}

// Failed is how many checkpoints were not mirrored: refused by the stream
// on every attempt, or dropped from a full queue.
func (p *Publisher) Failed() int64 { return p.failed.Load() }

// Sent is how many checkpoints were mirrored.
func (p *Publisher) Sent() int64 { return p.sent.Load() }

// Close publishes what is queued, within ctx, and stops. Close the audit
// log first: its last checkpoint is queued as it closes.
func (p *Publisher) Close(ctx context.Context) error {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.queue)
	}
	p.mu.Unlock()
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("audit mirror: %d checkpoints not published: %w", len(p.queue), ctx.Err())
	}
}

func (p *Publisher) run() {
	defer close(p.done)
	for jws := range p.queue {
		if err := p.publish(jws); err != nil {
			p.failed.Add(1)
			p.log.Warn("audit checkpoint not mirrored", "err", err)
			continue
		}
		p.sent.Add(1)
	}
}

// publish publishes one checkpoint, retrying; the message id is its
// sequence and head, so that copies of one checkpoint are kept once.
func (p *Publisher) publish(jws string) error {
	seq, head, err := sealed(jws)
	if err != nil {
		return err
	}
	msg := nats.NewMsg(p.subject)
	msg.Data = []byte(jws)
	msg.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("%d-%s", seq, head))
	pause := p.retry
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err = p.js.PublishMsg(ctx, msg)
		cancel()
		if err == nil || attempt == p.attempts {
			if err != nil {
				return fmt.Errorf("checkpoint %d: %w", seq, err)
			}
			return nil
		}
		time.Sleep(pause)
		pause *= 2
	}
}

// sealed returns the sequence and head a checkpoint's JWS payload holds.
func sealed(jws string) (int64, string, error) {
	parts := strings.Split(jws, ".")
	if len(parts) != 3 {
		return 0, "", errors.New("checkpoint: not a compact JWS")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return 0, "", fmt.Errorf("checkpoint: payload: %w", err)
	}
	var c struct {
		Sequence int64  `json:"sequence"`
		Head     string `json:"head"`
	}
	if err := json.Unmarshal(payload, &c); err != nil || c.Sequence <= 0 || c.Head == "" {
		return 0, "", errors.New("checkpoint: payload holds no sequence and head")
	}
	return c.Sequence, c.Head, nil
}

// Read returns the JWS of every checkpoint in stream, oldest first.
func Read(ctx context.Context, js jetstream.JetStream, stream string) ([]string, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("audit mirror: stream %s: %w", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("audit mirror: stream %s: %w", stream, err)
	}
	last := info.State.LastSeq
	out := make([]string, 0, info.State.Msgs)
	if info.State.Msgs == 0 {
		return out, nil
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, fmt.Errorf("audit mirror: read %s: %w", stream, err)
	}
	for {
		batch, err := cons.Fetch(512, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, fmt.Errorf("audit mirror: read %s: %w", stream, err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			meta, err := m.Metadata()
			if err != nil {
				return nil, fmt.Errorf("audit mirror: read %s: %w", stream, err)
			}
			out = append(out, string(m.Data()))
			if meta.Sequence.Stream >= last {
				return out, nil
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return nil, fmt.Errorf("audit mirror: read %s: %w", stream, err)
		}
		if n == 0 {
			return nil, fmt.Errorf("audit mirror: read %s: %d of its copies read, then none came within 5s", stream, len(out))
		}
	}
}
