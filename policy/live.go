package policy

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/audit"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/uptrace/bun"
)

// DefaultBucket is the NATS KV bucket registry events are published to.
const DefaultBucket = "clearance-registry"

// AuditLog appends entries durably; *audit.Log satisfies it. It must be
// safe for concurrent use.
type AuditLog interface {
	Append(ctx context.Context, e *audit.Entry) (int64, error)
}

// Options are what a Live registry is built from. Store, Engine, NATS and
// Audit are required.
type Options struct {
	// Store is the registry's SQL store, shared by every instance.
	Store *Store
	// Engine decides transfers; Live swaps its registry on every event.
	Engine *agreements.Engine
	// NATS is the connection the KV bucket is reached through; the caller
	// owns and closes it.
	NATS *nats.Conn
	// Bucket is the KV bucket's name (default DefaultBucket).
	Bucket string
	// Replicas is the bucket's replica count in a cluster (default 1).
	Replicas int
	// Audit records every change.
	Audit AuditLog
	// Resync is how often the store's head is read to close a gap a lost
	// publish could leave (default 5s).
	Resync time.Duration
	// Logger receives operational messages (ids and versions only).
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
	// OnSwap, when set, is called after the engine took a new registry
	// version, with the event that caused it (for metrics and tests).
	OnSwap func(ev Event)
	// SyncTimeout bounds how long Change and Apply wait for every running
	// instance to confirm that the event is in force (default 1s).
	SyncTimeout time.Duration
	// OnErasure, when set, is called on the instance that recorded an
	// erasure, after it is in force (erasure.Notifier.Begin tells the
	// recipients), and again on every erasure of the subject sent once it
	// is in force: it must be safe to repeat. Its error is returned by
	// Change, so that the caller retries; the retry, an erasure in force
	// already, runs it again. Until it succeeded the erasure's event is
	// kept as one to follow up: if the caller does not retry, or the
	// instance stops first, an instance calls it again at a later resync,
	// after a grace of a minute, until it succeeds.
	OnErasure func(ctx context.Context, subject string, at time.Time) error
	// SnapshotEvery is how many events after the last snapshot it stored
	// or started from an instance stores the registry in force as a new
	// one, so that an instance starting later replays only the events
	// after it (snapshot.go). 0: DefaultSnapshotEvery, or a tenth of the
	// registry's consents and erasures when that is more; negative: never.
	SnapshotEvery int
	// Registerer takes the live registry's metrics (events, propagation
	// time, sequence in force, and the dates of the agreements in force:
	// AgreementCollector); nil: not exported.
	Registerer prometheus.Registerer
}

// Live keeps an Engine on the latest registry version of a Store, across
// instances. Its methods are safe for concurrent use. Build it with Start
// and stop it with Stop.
type Live struct {
	opts      Options
	log       *slog.Logger
	kv        jetstream.KeyValue
	instances jetstream.KeyValue
	id        string
	metrics   *metrics
	started   bool // the initial catch-up is done (guarded by mu)
	// catchUp holds the error of the last catch-up with the store (nil
	// value: it succeeded), for Ready.
	lastCatchUp atomic.Pointer[error]

	mu sync.Mutex // serialises state changes
	st *state
	// snapSeq is the event of the last snapshot this instance stored,
	// started from or failed to store; snapping, whether it is storing one
	// now.
	snapSeq  int64
	snapping bool
	// files holds the erasures of the base content in force (the applied
	// registry files), by subject, read from the store once per base when
	// an erasure meets one in force (fileErasures).
	files struct {
		base     string
		erasures map[string][]agreements.Erasure
	}

	stop chan struct{}
	wg   sync.WaitGroup
}

// Start opens (creating if needed) the KV bucket, watches it, loads the
// registry in force from the store into the engine, and keeps it up to
// date until Stop. When the store holds no registry yet the engine keeps
// the registry it has until the first Apply.
func Start(ctx context.Context, opts Options) (*Live, error) {
	var errs []error
	for name, missing := range map[string]bool{
		"Store": opts.Store == nil, "Engine": opts.Engine == nil, "NATS": opts.NATS == nil, "Audit": opts.Audit == nil,
	} {
		if missing {
			errs = append(errs, fmt.Errorf("policy: options: %s is required", name))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if opts.Bucket == "" {
		opts.Bucket = DefaultBucket
	}
	if opts.Replicas <= 0 {
		opts.Replicas = 1
	}
	if opts.Resync <= 0 {
		opts.Resync = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.SyncTimeout <= 0 {
		opts.SyncTimeout = time.Second
	}
	js, err := jetstream.New(opts.NATS)
	if err != nil {
		return nil, fmt.Errorf("policy: jetstream: %w", err)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: opts.Bucket, Description: "Clearance registry events",
		History: 1, TTL: 7 * 24 * time.Hour, Storage: jetstream.FileStorage, Replicas: opts.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("policy: kv bucket %s: %w", opts.Bucket, err)
	}
	l := &Live{opts: opts, log: opts.Logger.With("component", "policy"), kv: kv, st: &state{}, stop: make(chan struct{}), id: nuid.Next(),
		metrics: newMetrics(opts.Registerer, AgreementCollector(opts.Engine.Registry, opts.Now))}
	if err := l.presence(ctx, js); err != nil {
		return nil, err
	}
	// Watch before reading the store, so that nothing stored meanwhile is
	// missed; events already read are skipped.
	w, err := kv.Watch(ctx, eventKeys, jetstream.UpdatesOnly())
	if err != nil {
		return nil, fmt.Errorf("policy: watch %s: %w", opts.Bucket, err)
	}
	if err := l.catchUp(ctx); err != nil {
		_ = w.Stop()
		return nil, err
	}
	l.mu.Lock()
	l.started = true
	l.mu.Unlock()
	l.wg.Add(3)
	go l.watch(w)
	go l.resync()
	go l.announce()
	return l, nil
}

// Stop ends the watch and the resync and waits for them. It is idempotent.
func (l *Live) Stop() {
	l.mu.Lock()
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.mu.Unlock()
	l.wg.Wait()
}

// Seq returns the number of the latest event in force on this instance.
func (l *Live) Seq() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.st.seq
}

// Apply stores reg as a new base version (every agreement under its id and
// version), audits it, publishes it and puts it in force with the run-time
// changes made so far. Applying the content already in force changes
// nothing and returns that event with applied false.
func (l *Live) Apply(ctx context.Context, reg *agreements.Registry) (ev Event, applied bool, err error) {
	conf, err := l.confirmations()
	if err != nil {
		return Event{}, false, err
	}
	var added []agreements.Agreement
	ev, err = l.write(ctx, func(ctx context.Context, s *Store, tx bun.Tx, head *headRow) (*Event, error) {
		if l.st.base == reg.Version() {
			return nil, nil
		}
		var err error
		added, err = storeBase(ctx, tx, reg, l.opts.Now())
		if err != nil {
			return nil, err
		}
		applied = true
		return &Event{Seq: head.Seq + 1, Kind: KindApply, Base: reg.Version()}, nil
	}, func(version string) (agreements.Content, error) { return reg.Content(), nil })
	if err != nil || !applied {
		_ = conf.sub.Unsubscribe()
		return ev, false, err
	}
	err = l.auditApply(ctx, ev, added)
	ev.Sync = conf.wait(ctx, ev.Seq)
	return ev, true, err
}

// Change validates ch against the registry in force, stores it, audits it,
// publishes it and puts it in force. It returns once every running instance
// confirmed that it is in force, or after Options.SyncTimeout (ev.Sync
// says which). An invalid change wraps ErrInvalidChange and stores nothing;
// so does an erasure of a subject erased already at run time
// (ErrAlreadyErased, once OnErasure ran again; its error instead if it
// failed). A withdrawal is stored even when no consent is in force at its
// time: it withdraws the consents granted before it that are recorded
// after it. An error that wraps ErrAuditPending comes after the change was
// stored and put in force: its audit entries are written later.
func (l *Live) Change(ctx context.Context, ch agreements.Change) (Event, error) {
	res, err := l.change(ctx, ch, nil, false)
	return res.ev, errors.Join(res.audit, err)
}

// request names a rights message by its caller: its source and the request
// id it was sent under (Idempotency-Key, Nats-Msg-Id).
type request struct{ source, id, digest string }

// requestDigest is the digest of a rights message as its caller sent it:
// its kind, the subject its route names (erasures over HTTP) and its body.
// The same message sent again has the same; the change parsed from it may
// not (a time of receipt).
func requestDigest(kind, subject string, data []byte) string {
	h := sha256.New()
	for _, part := range [][]byte{[]byte(kind), []byte(subject), data} {
		h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(part))))
		h.Write(part)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// changed is what change did.
type changed struct {
	// ev is the event that recorded the change, or that recorded the
	// same request before (repeat).
	ev     Event
	repeat bool
	// reason is the receipt's reason, if any: ReasonNoConsentInForce.
	reason string
	// audit, when not nil, wraps ErrAuditPending: ev is stored and in
	// force, and its audit entries are written later.
	audit error
}

// change is Change; req, when not nil, is recorded with the event, and a
// request recorded before is not recorded again: its event is returned
// (repeat), and the erasures it holds are followed up again (OnErasure
// is safe to repeat, and the first may have failed). atReceipt says that
// ch's withdrawals were sent without a time (dateAtReceipt).
func (l *Live) change(ctx context.Context, ch agreements.Change, req *request, atReceipt bool) (changed, error) {
	var res changed
	conf, err := l.confirmations()
	if err != nil {
		return res, err
	}
	ev, err := l.write(ctx, func(ctx context.Context, s *Store, tx bun.Tx, head *headRow) (*Event, error) {
		if l.st.reg == nil {
			return nil, ErrNotApplied
		}
		if req != nil {
			prior, reason, ok, err := s.request(ctx, tx, *req)
			if err != nil || ok {
				res.ev, res.reason, res.repeat = prior, reason, ok
				return nil, err
			}
		}
		if atReceipt && len(ch.Withdrawals) > 0 {
			ch = dateAtReceipt(l.st.reg, ch)
		}
		// Checked here, with the store's head locked and this instance
		// caught up to it, so that two instances taking the same erasure at
		// once record it once.
		f, err := inForce(l.st.reg, ch, l.opts.Now(), func(subject string) ([]agreements.Erasure, error) {
			return l.fileErasures(ctx, tx, subject)
		})
		switch {
		case err != nil:
			return nil, err
		case f.erased:
			return nil, ErrAlreadyErased
		case f.unmatched:
			res.reason = ReasonNoConsentInForce
		}
		ev := &Event{Seq: head.Seq + 1, Kind: KindChange, Change: &ch}
		if len(ch.Suspend) > 0 {
			current := agreementVersions(l.st.reg)
			ev.Suspended = map[string]int{}
			for _, id := range ch.Suspend {
				if v, ok := current[id]; ok {
					ev.Suspended[id] = v
				}
			}
		}
		if req != nil {
			if err := storeRequest(ctx, tx, *req, ev.Seq, res.reason, l.opts.Now()); err != nil {
				return nil, err
			}
		}
		if l.followsUp(ch) {
			if err := storeFollowUp(ctx, tx, ev.Seq, l.opts.Now()); err != nil {
				return nil, err
			}
		}
		return ev, nil
	}, nil)
	if err != nil || res.repeat {
		_ = conf.sub.Unsubscribe()
		switch {
		case res.repeat && err == nil:
			// Recorded before; what follows an erasure may not have run
			// (it failed, and the caller was told to try again).
			if ferr := l.followErasures(ctx, l.erasuresInForce(*res.ev.Change)); ferr != nil {
				return res, ferr
			}
			l.followedUp(ctx, res.ev.Seq, *res.ev.Change)
		case errors.Is(err, ErrAlreadyErased):
			// The erasure was stored before, but what follows it may not
			// have run: it failed (the caller was told to try again,
			// which brings it here) or the instance stopped in between.
			// It is safe to repeat, so it runs again, and a failure is
			// answered as one, not as an erasure in force already.
			f := l.erasuresInForce(ch)
			if ferr := l.followErasures(ctx, f); ferr != nil {
				return res, ferr
			}
			l.followedUpSubjects(ctx, f)
		}
		return res, err
	}
	res.ev = ev
	res.audit = l.auditChange(ctx, ev)
	res.ev.Sync = conf.wait(ctx, ev.Seq)
	if err := l.followErasures(ctx, ch); err != nil {
		return res, err // followed up later (followUpLate) if not retried
	}
	l.followedUp(ctx, ev.Seq, ch)
	return res, nil
}

// fileErasures returns the erasures of subject that the base content in
// force holds (the applied registry files), reading the content from db
// the first time after an apply; l.mu is held.
func (l *Live) fileErasures(ctx context.Context, db bun.IDB, subject string) ([]agreements.Erasure, error) {
	if l.files.base != l.st.base || l.files.erasures == nil {
		c, err := l.opts.Store.base(ctx, db, l.st.base)
		if err != nil {
			return nil, err
		}
		l.files.base, l.files.erasures = l.st.base, map[string][]agreements.Erasure{}
		for _, e := range c.Erasures {
			l.files.erasures[e.Subject] = append(l.files.erasures[e.Subject], e)
		}
	}
	return l.files.erasures[subject], nil
}

// erasuresInForce returns ch with each erasure's time that of the earliest
// erasure of its subject the registry in force holds: a retried erasure
// (sent without a time, it is the retry's) follows up the erasure that
// was recorded, not one of its own.
func (l *Live) erasuresInForce(ch agreements.Change) agreements.Change {
	reg := l.opts.Engine.Registry()
	out := ch
	out.Erasures = slices.Clone(ch.Erasures)
	for i, e := range out.Erasures {
		_, held := reg.Subject(e.Subject)
		for _, h := range held {
			if h.At.Before(out.Erasures[i].At) {
				out.Erasures[i].At = h.At
			}
		}
	}
	return out
}

// followErasures runs Options.OnErasure for each erasure of ch: the
// subject's keys destroyed and its recipients notified.
func (l *Live) followErasures(ctx context.Context, ch agreements.Change) error {
	if l.opts.OnErasure == nil {
		return nil
	}
	var err error
	for _, e := range ch.Erasures {
		if herr := l.opts.OnErasure(ctx, e.Subject, e.At); herr != nil {
			err = errors.Join(err, fmt.Errorf("policy: erasure notices: %w", herr))
		}
	}
	return err
}
