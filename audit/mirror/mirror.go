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
	// pending are the checkpoints refused on every attempt, tried again
	// after the next one the stream takes (run's goroutine only).
	pending []string
	waiting atomic.Int64 // len(pending), for Waiting
	// stop ends a catch-up (CatchUp) at Close; catching waits for it.
	stop     context.Context
	cancel   context.CancelFunc
	catching sync.WaitGroup
}

// maxPending is how many refused checkpoints are kept to be tried again;
// more are given up and counted (Publisher.Failed).
const maxPending = 4096

// NewPublisher starts a Publisher to stream (created by EnsureStream).
func NewPublisher(js jetstream.JetStream, stream string, logger *slog.Logger) *Publisher {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	p := &Publisher{js: js, subject: SubjectOf(stream), log: logger.With("component", "audit", "stream", stream),
		queue: make(chan string, queueSize), done: make(chan struct{}), retry: 200 * time.Millisecond, attempts: 6}
	p.stop, p.cancel = context.WithCancel(context.Background())
	go p.run()
	return p
}

// CatchUp publishes, in the background, the checkpoints the log holds that
// have no copy in the stream: those signed while no instance mirrored them
// (before mirroring was turned on, or while the stream refused them and the
// instance that held them stopped). It compares every checkpoint of the log
// with the copies' message ids, not with the newest copy alone: with
// several chains, a checkpoint another instance gave up can lie below a
// copy published since. after returns the JWS of up to limit checkpoints
// past a sequence, in sequence order (audit.Log.CheckpointsAfter). Close
// stops it.
func (p *Publisher) CatchUp(stream string, after func(ctx context.Context, seq int64, limit int) ([]string, error)) {
	p.catching.Go(func() {
		ctx := p.stop
		have, err := copied(ctx, p.js, stream)
		if err != nil {
			p.log.Warn("audit checkpoints not caught up", "err", err)
			return
		}
		var seq int64
		n := 0
		for {
			batch, err := after(ctx, seq, catchUpBatch)
			if err != nil {
				p.log.Warn("audit checkpoints not caught up", "err", err)
				return
			}
			for _, jws := range batch {
				s, head, err := sealed(jws)
				if err != nil {
					p.log.Warn("audit checkpoints not caught up", "err", err, "after", seq)
					return
				}
				seq = s
				if have[msgID(s, head)] {
					continue
				}
				if err := p.publish(ctx, jws); err != nil {
					p.log.Warn("audit checkpoints not caught up", "err", err, "published", n)
					return
				}
				n++
			}
			if len(batch) < catchUpBatch {
				break
			}
		}
		if n > 0 {
			p.log.Info("audit checkpoints the stream lacked published from the log", "checkpoints", n)
		}
	})
}

// catchUpBatch is how many of the log's checkpoints CatchUp reads at once.
const catchUpBatch = 1000

// msgID is the message id of a checkpoint's copy: its sequence and head.
func msgID(seq int64, head string) string { return fmt.Sprintf("%d-%s", seq, head) }

// copied returns the message ids of every copy in stream, reading their
// headers only.
func copied(ctx context.Context, js jetstream.JetStream, stream string) (map[string]bool, error) {
	have := map[string]bool{}
	err := each(ctx, js, stream, true, func(m jetstream.Msg) {
		have[m.Headers().Get(jetstream.MsgIDHeader)] = true
	})
	return have, err
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

// OnCheckpoint returns Checkpoints, for audit.Options.OnCheckpoint; nil
// for a nil Publisher (no mirror).
func (p *Publisher) OnCheckpoint() func(jws []string) {
	if p == nil {
		return nil
	}
	return p.Checkpoints
}

// Failed is how many checkpoints were given up: refused by the stream on
// every attempt and again until the Publisher closed, dropped from a full
// queue or beyond maxPending kept, or no checkpoints.
func (p *Publisher) Failed() int64 { return p.failed.Load() }

// Waiting is how many checkpoints the stream refused are kept to be tried
// again after the next one it takes.
func (p *Publisher) Waiting() int64 { return p.waiting.Load() }

// Sent is how many checkpoints were mirrored.
func (p *Publisher) Sent() int64 { return p.sent.Load() }

// Close publishes what is queued, within ctx, and stops. Close the audit
// log first: its last checkpoint is queued as it closes.
func (p *Publisher) Close(ctx context.Context) error {
	p.cancel()
	p.catching.Wait()
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
		if err := p.publish(context.Background(), jws); err != nil {
			p.log.Warn("audit checkpoint not mirrored yet: tried again after the next one", "err", err)
			p.keep(jws)
			continue
		}
		p.sent.Add(1)
		p.retryPending()
	}
	// Closing: one more try, then what is left is given up.
	p.retryPending()
	if len(p.pending) > 0 {
		p.failed.Add(int64(len(p.pending)))
		p.log.Warn("audit checkpoints not mirrored", "checkpoints", len(p.pending))
	}
}

// keep keeps a refused checkpoint to be tried again, or gives it up when
// maxPending are kept already or it is no checkpoint.
func (p *Publisher) keep(jws string) {
	if _, _, err := sealed(jws); err != nil || len(p.pending) == maxPending {
		p.failed.Add(1)
		return
	}
	p.pending = append(p.pending, jws)
	p.waiting.Store(int64(len(p.pending)))
}

// retryPending publishes the kept checkpoints, oldest first, once each,
// until the stream refuses one.
func (p *Publisher) retryPending() {
	for len(p.pending) > 0 {
		if err := p.publishOnce(context.Background(), p.pending[0]); err != nil {
			return
		}
		p.sent.Add(1)
		p.pending = p.pending[1:]
		p.waiting.Store(int64(len(p.pending)))
	}
}

// publish publishes one checkpoint, with attempts tries, pausing between
// them, until ctx ends; publishOnce tries once. The message id is its
// sequence and head, so that copies of one checkpoint are kept once.
func (p *Publisher) publish(ctx context.Context, jws string) error {
	pause := p.retry
	for attempt := 1; ; attempt++ {
		err := p.publishOnce(ctx, jws)
		if err == nil || attempt >= p.attempts || errors.Is(err, errNotCheckpoint) {
			return err
		}
		select {
		case <-time.After(pause):
		case <-ctx.Done():
			return err
		}
		pause *= 2
	}
}

func (p *Publisher) publishOnce(ctx context.Context, jws string) error {
	seq, head, err := sealed(jws)
	if err != nil {
		return err
	}
	msg := nats.NewMsg(p.subject)
	msg.Data = []byte(jws)
	msg.Header.Set(jetstream.MsgIDHeader, msgID(seq, head))
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := p.js.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("checkpoint %d: %w", seq, err)
	}
	return nil
}

// errNotCheckpoint is sealed's error: what was given to publish is no
// checkpoint's JWS.
var errNotCheckpoint = errors.New("audit mirror: not a checkpoint's compact JWS")

// sealed returns the sequence and head a checkpoint's JWS payload holds.
func sealed(jws string) (int64, string, error) {
	parts := strings.Split(jws, ".")
	if len(parts) != 3 {
		return 0, "", errNotCheckpoint
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return 0, "", errNotCheckpoint
	}
	var c struct {
		Sequence int64  `json:"sequence"`
		Head     string `json:"head"`
	}
	if err := json.Unmarshal(payload, &c); err != nil || c.Sequence <= 0 || c.Head == "" {
		return 0, "", errNotCheckpoint
	}
	return c.Sequence, c.Head, nil
}

// Read returns the JWS of every checkpoint in stream, oldest first.
func Read(ctx context.Context, js jetstream.JetStream, stream string) ([]string, error) {
	var out []string
	err := each(ctx, js, stream, false, func(m jetstream.Msg) { out = append(out, string(m.Data())) })
	if err != nil {
		return nil, err
	}
	if out == nil {
		out = []string{}
	}
	return out, nil
}

// each calls fn with every message of stream in order, up to the last one
// it held when each began; with headersOnly, without their bodies.
func each(ctx context.Context, js jetstream.JetStream, stream string, headersOnly bool, fn func(jetstream.Msg)) error {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("audit mirror: stream %s: %w", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return fmt.Errorf("audit mirror: stream %s: %w", stream, err)
	}
	last := info.State.LastSeq
	if info.State.Msgs == 0 {
		return nil
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{HeadersOnly: headersOnly})
	if err != nil {
		return fmt.Errorf("audit mirror: read %s: %w", stream, err)
	}
	read := 0
	for {
		batch, err := cons.Fetch(512, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return fmt.Errorf("audit mirror: read %s: %w", stream, err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			meta, err := m.Metadata()
			if err != nil {
				return fmt.Errorf("audit mirror: read %s: %w", stream, err)
			}
			fn(m)
			if meta.Sequence.Stream >= last {
				return nil
			}
		}
		read += n
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return fmt.Errorf("audit mirror: read %s: %w", stream, err)
		}
		if n == 0 {
			return fmt.Errorf("audit mirror: read %s: %d of its copies read, then none came within 5s", stream, read)
		}
	}
}
