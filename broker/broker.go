package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/prometheus/client_golang/prometheus"
)

// Options are the parts a Broker is built from. NATS, Decider, Parties, Keys,
// Audit and Connectors are required.
type Options struct {
	// NATS is the connection to the cluster; the caller owns and closes it.
	NATS *nats.Conn
	// Stream describes the ingest stream and its consumer.
	Stream StreamOptions
	// Retry bounds redeliveries (defaults: 10 attempts, 1s doubling to 5m).
	Retry RetryPolicy
	// Concurrency is how many messages this instance works on at once
	// (default 1024: each waits mostly on the audit log's durable commits,
	// which a group commit shares among the messages in flight, so more
	// messages in flight make bigger batches at about the same commit time).
	Concurrency int
	// ShutdownGrace is how long Stop lets in-flight messages finish before
	// handing them back (default 30s).
	ShutdownGrace time.Duration
	// Decider decides requests; Parties finds recipients.
	Decider Decider
	// Parties finds recipient parties and their public keys.
	Parties Parties
	// Keys seals payloads and serves the verification keys.
	Keys Keys
	// Audit is the audit log.
	Audit AuditLog
	// Connectors are the delivery targets by name.
	Connectors ConnectorSet
	// Subjects, when set, seals dead letters under each data subject's own
	// key (kept.go), so that an erasure shreds them.
	Subjects SubjectSealer
	// Inbound, when set, also consumes sealed transfers from other regions.
	Inbound *InboundOptions
	// Erasures, when set, applies the erasure notices other regions send
	// this one (inbound_notice.go) to this region's registry and subject
	// keys before they are acknowledged.
	Erasures ErasureApplier
	// Logger receives structured logs (ids only, never personal data).
	Logger *slog.Logger
	// Metrics are the collectors to update (nil: new ones registered on
	// Registerer). Pass them, registered on Registerer, when the audit
	// store's batch hook needs them before the broker exists.
	Metrics *Metrics
	// Registerer takes the broker's metrics (nil: a private registry).
	Registerer prometheus.Registerer
	// Gatherer serves /metrics (nil: the private registry).
	Gatherer prometheus.Gatherer
	// ReadyChecks are probed by /readyz besides NATS (e.g. "store", "vault").
	ReadyChecks map[string]func(ctx context.Context) error
	// RequestTimeout bounds how long POST /v1/transfers waits for receipts
	// (default 30s).
	RequestTimeout time.Duration
	// MaxBodyBytes caps a POST body (default 8 MiB).
	MaxBodyBytes int64
	// Now is the clock decisions are made at (default time.Now).
	Now func() time.Time
}

// Broker runs the pipeline of one instance. Build it with New, start it with
// Start (or Run), serve Handler over HTTP, and stop it with Stop.
type Broker struct {
	opts    Options
	log     *slog.Logger
	js      jetstream.JetStream
	keys    Keys
	metrics *Metrics
	waiters *waiters

	// replies is this instance's receipt subject (clearance.replies.<nuid>);
	// repSub its subscription, made by the first HTTP request (receipt.go).
	replies string
	repMu   sync.Mutex
	repSub  *nats.Subscription
	repDone bool // stopped: no new subscription

	mu      sync.Mutex
	started bool
	stopped bool
	loops   []*loop
}

// New checks opts and returns a Broker that is not yet consuming.
func New(opts Options) (*Broker, error) {
	var errs []error
	for name, missing := range map[string]bool{
		"NATS": opts.NATS == nil, "Decider": opts.Decider == nil, "Parties": opts.Parties == nil,
		"Keys": opts.Keys == nil, "Audit": opts.Audit == nil, "Connectors": opts.Connectors == nil,
	} {
		if missing {
			errs = append(errs, fmt.Errorf("broker: options: %s is required", name))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	opts.Stream.defaults()
	if opts.Retry.MaxDeliver <= 0 {
		opts.Retry.MaxDeliver = 10
	}
	if opts.Retry.BackoffBase <= 0 {
		opts.Retry.BackoffBase = time.Second
	}
	if opts.Retry.BackoffMax < opts.Retry.BackoffBase {
		opts.Retry.BackoffMax = max(5*time.Minute, opts.Retry.BackoffBase)
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 1024
	}
	if opts.ShutdownGrace <= 0 {
		opts.ShutdownGrace = 30 * time.Second
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 30 * time.Second
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 8 << 20
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registerer == nil {
		reg := prometheus.NewRegistry()
		opts.Registerer, opts.Gatherer = reg, reg
	}
	if opts.Gatherer == nil {
		opts.Gatherer = prometheus.DefaultGatherer
	}
	js, err := jetstream.New(opts.NATS)
	if err != nil {
		return nil, fmt.Errorf("broker: jetstream: %w", err)
	}
	m := opts.Metrics
	if m == nil {
		m = NewMetrics(opts.Registerer)
	}
	return &Broker{
		opts:    opts,
		log:     opts.Logger.With("component", "broker"),
		js:      js,
		keys:    instrumentedKeys{k: opts.Keys, m: m},
		metrics: m,
		waiters: newWaiters(),
		replies: RepliesSubject + "." + nuid.Next(),
	}, nil
}

// Metrics returns the broker's collectors (for the audit log's batch hook).
func (b *Broker) Metrics() *Metrics { return b.metrics }

// Start creates or updates the streams and consumers and starts consuming.
// It returns once consumption has begun; Stop ends it.
func (b *Broker) Start(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.started {
		return errors.New("broker: already started")
	}
	cons, err := ensureIngest(ctx, b.js, b.opts.Stream)
	if err != nil {
		return err
	}
	l, err := b.startLoop("ingest", cons, b.handleTransfer)
	if err != nil {
		return err
	}
	b.loops = append(b.loops, l)
	if in := b.opts.Inbound; in != nil {
		in.defaults()
		if len(in.Recipients) == 0 {
			b.log.Warn("inbound region receives for any recipient: a copy sealed for another region's recipient, published on this region's inbound subject, is handed on here; list this region's recipients (inbound_region.recipients)",
				"stream", in.Stream)
		}
		icons, err := ensureInbound(ctx, b.js, *in, b.opts.Stream.Replicas, b.opts.Stream.AckWait)
		if err == nil {
			var il *loop
			il, err = b.startLoop("inbound", icons, b.handleInbound)
			if err == nil {
				b.loops = append(b.loops, il)
			}
		}
		if err != nil {
			b.stopLocked(ctx)
			return err
		}
	}
	b.started = true
	b.log.Info("consuming", "stream", b.opts.Stream.Name, "consumer", b.opts.Stream.Consumer,
		"concurrency", b.opts.Concurrency, "inbound", b.opts.Inbound != nil)
	return nil
}

// Stop stops pulling, lets in-flight messages finish for at most
// ShutdownGrace (or until ctx ends), hands back the rest with a Nak, and
// waits for every worker. It is idempotent.
func (b *Broker) Stop(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stopLocked(ctx)
}

func (b *Broker) stopLocked(ctx context.Context) error {
	if b.stopped {
		return nil
	}
	b.stopped = true
	ctx, cancel := context.WithTimeout(ctx, b.opts.ShutdownGrace)
	defer cancel()
	var wg sync.WaitGroup
	for _, l := range b.loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.stop(ctx)
		}()
	}
	wg.Wait()
	b.stopReplies()
	b.waiters.closeAll()
	b.log.Info("stopped")
	return nil
}

// Run starts the broker, blocks until ctx ends, then stops it gracefully.
func (b *Broker) Run(ctx context.Context) error {
	if err := b.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	return b.Stop(context.WithoutCancel(ctx))
}
