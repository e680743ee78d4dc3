package natsregion

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/clearance-broker/clearance/connectors"
	"github.com/clearance-broker/clearance/internal/natsclose"
)

// KindName is the name of this connector kind in the broker config.
const KindName = "natsregion"

// Kind returns the natsregion connector kind for a connectors.Registry.
func Kind() connectors.Kind {
	return connectors.NewKind(KindName, DefaultConfig, func(ctx context.Context, name string, cfg *Config, deps connectors.Deps) (connectors.Connector, error) {
		return New(ctx, name, cfg, deps)
	})
}

// Region publishes sealed payloads to a remote region's JetStream. It is safe
// for concurrent use; all deliveries share one NATS connection.
type Region struct {
	name       string
	cfg        Config
	nc         *nats.Conn
	js         jetstream.JetStream
	log        *slog.Logger
	gate       connectors.Gate
	closed     chan struct{} // closed by the connection's closed handler
	closeOnce  sync.Once
	closeError error
}

// New connects to the region and, when cfg.EnsureStream is set, creates the
// stream if it is missing. ctx bounds the stream check.
func New(ctx context.Context, name string, cfg *Config, deps connectors.Deps) (*Region, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("natsregion: %s: config: %w", name, err)
	}
	r := &Region{
		name:   name,
		cfg:    *cfg,
		log:    deps.Log().With("component", "connector", "connector", name, "kind", KindName),
		closed: make(chan struct{}),
	}
	opts, err := r.options()
	if err != nil {
		return nil, fmt.Errorf("natsregion: %s: %w", name, err)
	}
	r.nc, err = nats.Connect(strings.Join(cfg.URLs, ","), opts...)
	if err != nil {
		return nil, fmt.Errorf("natsregion: %s: connect: %w", name, err)
	}
	r.js, err = jetstream.New(r.nc)
	if err != nil {
		r.nc.Close()
		return nil, fmt.Errorf("natsregion: %s: jetstream: %w", name, err)
	}
	if cfg.EnsureStream {
		if err := r.ensureStream(ctx); err != nil {
			r.nc.Close()
			return nil, fmt.Errorf("natsregion: %s: %w", name, err)
		}
	}
	return r, nil
}

func (r *Region) options() ([]nats.Option, error) {
	c := r.cfg
	opts := []nats.Option{
		nats.Name("clearance-" + r.name),
		nats.Timeout(c.ConnectTimeout.D()),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(c.ReconnectWait.D()),
		// No reconnect buffer: a publish made while the region is away
		// fails at once. Buffered, it would be sent on reconnect whatever
		// Deliver had answered: a delivery the broker recorded as failed
		// (or dead-lettered, or refused on retry after a registry change)
		// would reach the region unaudited, and its retry, sealed anew,
		// would be taken as a duplicate of the buffered copy.
		nats.ReconnectBufSize(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			// A nil error is Close's own disconnection, at shutdown.
			if err != nil {
				r.log.Warn("region disconnected", slog.Any("error", err))
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			r.log.Info("region reconnected", slog.String("server", nc.ConnectedServerId()))
		}),
		natsclose.Handler(r.closed),
	}
	if c.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(c.CredsFile))
	}
	if c.NKeySeedFile != "" {
		o, err := nats.NkeyOptionFromSeed(c.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("nkey_seed_file: %w", err)
		}
		opts = append(opts, o)
	}
	if c.TLS.CAFile != "" {
		opts = append(opts, nats.RootCAs(c.TLS.CAFile))
	}
	if c.TLS.CertFile != "" {
		opts = append(opts, nats.ClientCert(c.TLS.CertFile, c.TLS.KeyFile))
	}
	return opts, nil
}

func (r *Region) ensureStream(ctx context.Context) error {
	_, err := r.js.Stream(ctx, r.cfg.Stream)
	if err == nil {
		return nil
	}
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("stream %s: %w", r.cfg.Stream, err)
	}
	_, err = r.js.CreateStream(ctx, StreamConfig(r.cfg.Stream, r.cfg.SubjectPrefix, r.cfg.Replicas, r.cfg.DuplicateWindow.D()))
	if err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return fmt.Errorf("create stream %s: %w", r.cfg.Stream, err)
	}
	r.log.Info("region stream created", slog.String("stream", r.cfg.Stream))
	return nil
}

// Deliver publishes d on the recipient's subject and waits for the stream's
// acknowledgement, the ack timeout, or the end of ctx (then the error wraps
// ctx.Err()). A duplicate acknowledged by the stream counts as delivered.
// It keeps nothing of d once it returns: the message is copied into the
// connection's buffer when published, and the broker reuses the body's
// buffer (TestDeliverKeepsNoBody).
func (r *Region) Deliver(ctx context.Context, d *connectors.Delivery) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("natsregion: %s: %w", r.name, err)
	}
	if err := r.gate.Enter(); err != nil {
		return fmt.Errorf("natsregion: %s: %w", r.name, err)
	}
	defer r.gate.Leave()
	msg, err := r.message(d)
	if err != nil {
		return fmt.Errorf("natsregion: %s: %w: %w", r.name, err, connectors.ErrPermanent)
	}

	pubCtx, cancel := context.WithTimeout(ctx, r.cfg.AckTimeout.D())
	defer cancel()
	start := time.Now()
	ack, err := r.publish(pubCtx, msg)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return fmt.Errorf("natsregion: publish to %s: %w: %w", d.Recipient, ctxErr, connectors.ErrOutcomeUnknown)
		}
		if unanswered(err) {
			return fmt.Errorf("natsregion: publish to %s: %w: %w", d.Recipient, r.classify(err), connectors.ErrOutcomeUnknown)
		}
		return fmt.Errorf("natsregion: publish to %s: %w", d.Recipient, r.classify(err))
	}
	if r.log.Enabled(ctx, slog.LevelDebug) {
		r.log.LogAttrs(ctx, slog.LevelDebug, "delivery acknowledged",
			slog.String("request_id", d.RequestID), slog.String("recipient", d.Recipient),
			slog.String("stream", ack.Stream), slog.Uint64("seq", ack.Sequence),
			slog.Bool("duplicate", ack.Duplicate), slog.Duration("took", time.Since(start)))
	}
	return nil
}

// message builds the NATS message for d, or says why d is malformed.
func (r *Region) message(d *connectors.Delivery) (*nats.Msg, error) {
	switch {
	case d == nil:
		return nil, errors.New("nil delivery")
	case d.RequestID == "":
		return nil, errors.New("delivery without request id")
	case d.Recipient == "":
		return nil, errors.New("delivery without recipient")
	}
	subject, err := Subject(r.cfg.SubjectPrefix, d.Recipient)
	if err != nil {
		return nil, err
	}
	ct := d.ContentType
	if ct == "" {
		ct = "application/jose"
	}
	// Each header has one value: all values share one array (Header.Set
	// would make one for each).
	n := len(d.Headers) + 4
	vals := make([]string, 0, n)
	h := make(nats.Header, n)
	set := func(k, v string) {
		vals = append(vals, v)
		h[k] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	for k, v := range d.Headers {
		if len(k) >= 5 && strings.EqualFold(k[:5], "nats-") {
			return nil, fmt.Errorf("header %s: the Nats- prefix is reserved", k)
		}
		set(k, v)
	}
	set(jetstream.MsgIDHeader, d.RequestID)
	set(HeaderKind, d.Kind)
	set(HeaderContentType, ct)
	if r.cfg.Stream != "" {
		// The stream refuses a message that another stream would take.
		set(jetstream.ExpectedStreamHeader, r.cfg.Stream)
	}
	return &nats.Msg{Subject: subject, Data: d.Body, Header: h}, nil
}

// Close stops new deliveries, waits for those in flight (or ctx), then
// drains the connection and waits for it to close. It is idempotent.
func (r *Region) Close(ctx context.Context) error {
	_, gateErr := r.gate.Close(ctx)
	r.closeOnce.Do(func() {
		// Nothing is in flight: the gate is closed.
		if err := natsclose.Start(r.nc); err != nil {
			r.closeError = fmt.Errorf("natsregion: %s: %w", r.name, err)
		}
	})
	if gateErr != nil {
		return fmt.Errorf("natsregion: %s: close: %w", r.name, gateErr)
	}
	if err := natsclose.Wait(ctx, r.nc, r.closed); err != nil {
		return fmt.Errorf("natsregion: %s: close: %w", r.name, err)
	}
	return r.closeError
}

var _ connectors.Connector = (*Region)(nil)

// Conn returns the connection to the remote region's NATS, on which that
// region's Clearance answers erasure notices (erasure.ListenAcks).
func (r *Region) Conn() *nats.Conn { return r.nc }
