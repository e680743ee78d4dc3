package erasure

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/connectors"
	"github.com/nats-io/nuid"
	"github.com/uptrace/bun"
)

// The audit events of erasure propagation besides erasure_notified.
const (
	// EventErasureEscalated records a notice unacknowledged past
	// EscalateAfter.
	EventErasureEscalated audit.Event = "erasure_escalated"
	// EventErasureJustified records an officer's justification where
	// notice is impossible; the text is kept in the store, its digest in
	// the entry.
	EventErasureJustified audit.Event = "erasure_justified"
)

// NoticeKind is the Delivery.Kind of an erasure notice.
const NoticeKind = "erasure_notice"

// AuditLog is what the Notifier needs of the audit log; *audit.Log
// satisfies it.
type AuditLog interface {
	Append(ctx context.Context, e *audit.Entry) (int64, error)
	Scan(ctx context.Context, f audit.Filter, fn func(*audit.Entry) error) error
}

// Keys signs and encrypts notices; *keys.Vault and *keys.DevKeyRing
// satisfy it. Errors wrapping keys.ErrUnavailable are transient.
type Keys interface {
	Sign(ctx context.Context, payloads [][]byte) ([][]byte, error)
	Seal(ctx context.Context, plaintext []byte) ([]byte, error)
	SealFor(ctx context.Context, recipientJWK []byte, payloads [][]byte) ([][]byte, error)
	KeyRef() string
}

// Parties finds a recipient party; *agreements.Registry satisfies it.
type Parties interface {
	Party(id string) (agreements.Party, error)
}

// Connectors finds the connector configured under a name;
// broker.ConnectorMap satisfies it.
type Connectors interface {
	Connector(name string) (connectors.Connector, bool)
}

// Options configures a Notifier. DB, Audit, Keys, Parties, Connectors and
// SubjectKey are required.
type Options struct {
	DB         *bun.DB
	Audit      AuditLog
	Keys       Keys
	Parties    func() Parties
	Connectors Connectors
	// SubjectKey is the audit log's subject HMAC key.
	SubjectKey []byte
	// EscalateAfter is how long a notice may stay unacknowledged before it
	// is escalated (default 72h).
	EscalateAfter time.Duration
	// RetryBase and RetryMax bound the backoff between attempts (defaults
	// 1s and 10m).
	RetryBase, RetryMax time.Duration
	// Poll is how often due notices are looked for (default 1s).
	Poll time.Duration
	// SweepAfter is how long after an erasure comes into force (or is
	// begun, if later) the audit log is looked at again for deliveries of
	// the subject's data (Begin): longer than a delivery takes, from its
	// decision to its audit entry (default 2m).
	SweepAfter time.Duration
	// ErasedSubject finds an erased subject's id by its HMAC
	// (ErasedSubjects over the registry in force). A notice to another
	// region's Clearance (a natsregion connector) carries the id, so that
	// the region can apply the erasure to its own copies, and is not sent
	// while it is not found (nor at all without ErasedSubject): the region
	// would acknowledge it unapplied.
	ErasedSubject func(subjectHMAC string) (string, bool)
	// Verifier checks the acknowledgements regions answer notices with
	// (Acknowledge, ListenAcks).
	Verifier Verifier
	// NeedsPartyKey reports whether the recipients of a connector can read
	// only what is encrypted to their own public key (broker.NeedsPartyKey:
	// webhook partners). A notice to a party without one through such a
	// connector is undeliverable, as the broker refuses transfers to it,
	// rather than sealed under the broker's own key and counted as given.
	// Nil: no connector needs one.
	NeedsPartyKey func(connectors.Connector) bool
	// Caller returns the account id (the token's "sub") of the caller an
	// HTTP request's context was authenticated for
	// (compliance.CallerAccount, the binary serving the routes behind
	// compliance.GuardRoute); a justification posted without one is
	// refused (401). Nil: the routes are served without authentication,
	// and a justification is recorded as by no account
	// ("unauthenticated").
	Caller func(ctx context.Context) (account string, ok bool)
	// Logger receives operational messages (ids and HMACs only).
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Notifier creates, sends and tracks erasure notices. Its methods are safe
// for concurrent use; several instances share one store.
type Notifier struct {
	opts  Options
	log   *slog.Logger
	owner string

	stop chan struct{}
	wake chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

// New migrates the notices table and returns a Notifier that is not yet
// sending; Start starts it.
func New(ctx context.Context, opts Options) (*Notifier, error) {
	var errs []error
	for name, missing := range map[string]bool{
		"DB": opts.DB == nil, "Audit": opts.Audit == nil, "Keys": opts.Keys == nil, "Parties": opts.Parties == nil,
		"Connectors": opts.Connectors == nil, "SubjectKey": len(opts.SubjectKey) == 0,
	} {
		if missing {
			errs = append(errs, fmt.Errorf("erasure: options: %s is required", name))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if opts.EscalateAfter <= 0 {
		opts.EscalateAfter = 72 * time.Hour
	}
	if opts.RetryBase <= 0 {
		opts.RetryBase = time.Second
	}
	if opts.RetryMax < opts.RetryBase {
		opts.RetryMax = max(10*time.Minute, opts.RetryBase)
	}
	if opts.Poll <= 0 {
		opts.Poll = time.Second
	}
	if opts.SweepAfter <= 0 {
		opts.SweepAfter = 2 * time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if err := migrateSchema(ctx, opts.DB); err != nil {
		return nil, err
	}
	return &Notifier{opts: opts, log: opts.Logger.With("component", "erasure"), owner: nuid.Next(),
		stop: make(chan struct{}), wake: make(chan struct{}, 1)}, nil
}

// Begin finds in the audit log every recipient that received subject's
// data, or may have (a failed delivery that may have reached it,
// audit.Entry.MayHaveReached), and creates a notice for each not notified
// yet; it returns how many
// it created. The subject id is hashed at once and never stored. A
// recipient notified already of some of the requests is notified again of
// all of them once the log names more (its notice is reopened). Begin
// also sets a sweep: the same look, SweepAfter past the erasure's time or
// now, whichever is later, for the deliveries that were under way when the
// erasure came into force, or that an erasure dated ahead let through.
func (n *Notifier) Begin(ctx context.Context, subject string, erasedAt time.Time) (int, error) {
	hmac := audit.SubjectHMAC(n.opts.SubjectKey, subject)
	created, err := n.begin(ctx, hmac, erasedAt)
	if err != nil {
		return created, err
	}
	if err := n.setSweep(ctx, hmac, erasedAt); err != nil {
		return created, err
	}
	return created, nil
}

// begin is Begin for a subject HMAC, without the sweep.
func (n *Notifier) begin(ctx context.Context, hmac string, erasedAt time.Time) (int, error) {
	// The recipients of every delivery, and of every failed one that may
	// have reached them (audit.ReasonMayHaveReceived): they may hold the
	// data as well.
	byRecipient := map[string][]string{}
	for _, ev := range []audit.Event{audit.EventDelivered, audit.EventDeliveryFailed} {
		err := n.opts.Audit.Scan(ctx, audit.Filter{SubjectHMAC: hmac, Event: ev}, func(e *audit.Entry) error {
			if e.MayHaveReached() {
				byRecipient[e.Recipient] = append(byRecipient[e.Recipient], e.RequestID)
			}
			return nil
		})
		if err != nil {
			return 0, fmt.Errorf("erasure: find recipients: %w", err)
		}
	}
	now := n.opts.Now().UTC()
	created, reopened := 0, 0
	for recipient, ids := range byRecipient {
		sort.Strings(ids)
		ids = slices.Compact(ids)
		data, _ := json.Marshal(ids) // strings
		row := &noticeRow{ID: "erasure-" + nuid.Next(), SubjectHMAC: hmac, Recipient: recipient, RequestIDs: string(data),
			ErasedAt: erasedAt.UTC(), Status: string(StatusPending), CreatedAt: now, NextAt: now, LeaseUntil: time.Unix(0, 0).UTC()}
		res, err := n.opts.DB.NewInsert().Model(row).On("CONFLICT DO NOTHING").Exec(ctx)
		if err != nil {
			return created, fmt.Errorf("erasure: create notice: %w", err)
		}
		if k, _ := res.RowsAffected(); k > 0 {
			created++
			continue
		}
		more, err := n.extend(ctx, hmac, recipient, ids, now)
		if err != nil {
			return created, err
		}
		if more {
			reopened++
		}
	}
	n.log.Info("erasure notices", "subject_hmac", hmac, "recipients", len(byRecipient), "created", created, "reopened", reopened)
	n.poke()
	return created, nil
}

// extend adds to the notice of hmac to recipient the request ids of ids it
// does not name yet, and reopens it (due now, under a new id) so that the
// recipient is told of them: pending, or escalated if it was once (it is
// escalated once); a notice an officer closed (undeliverable, justified)
// is left as it is. The update holds only if the notice's ids and status
// are still those read, and a sender that sent the old ids meanwhile does
// not mark it acknowledged (work), nor does an answer to them
// (Acknowledge): it is sent again with all of them. One that changed
// between the read and the update is read again: a few times, and then an
// error, so that the ids are not dropped (the caller, or the sweep, tries
// again).
func (n *Notifier) extend(ctx context.Context, hmac, recipient string, ids []string, now time.Time) (bool, error) {
	const tries = 5
	for range tries {
		var r noticeRow
		if err := n.opts.DB.NewSelect().Model(&r).Where("subject_hmac = ?", hmac).Where("recipient = ?", recipient).
			Scan(ctx); err != nil {
			return false, fmt.Errorf("erasure: read notice: %w", err)
		}
		switch Status(r.Status) {
		case StatusPending, StatusEscalated, StatusAcknowledged:
		default:
			return false, nil
		}
		var known []string
		_ = json.Unmarshal([]byte(r.RequestIDs), &known) // written by this package
		all := slices.Compact(slices.Sorted(slices.Values(append(known, ids...))))
		if len(all) == len(known) {
			return false, nil
		}
		data, _ := json.Marshal(all) // strings
		status := r.Status
		if Status(status) == StatusAcknowledged {
			status = string(StatusPending)
			if !r.EscalatedAt.IsZero() {
				status = string(StatusEscalated)
			}
		}
		// A new id: an acknowledgement of what was sent under the old one
		// (a region answers by notice id) does not close the notice that
		// names more requests.
		res, err := n.opts.DB.NewUpdate().Model((*noticeRow)(nil)).
			Set("id = ?", "erasure-"+nuid.Next()).
			Set("request_ids = ?", string(data)).Set("status = ?", status).Set("next_at = ?", now).
			Set("lease_until = ?", time.Unix(0, 0).UTC()).Set("acknowledged_at = NULL").
			Where("id = ?", r.ID).Where("request_ids = ?", r.RequestIDs).Where("status = ?", r.Status).Exec(ctx)
		if err != nil {
			return false, fmt.Errorf("erasure: extend notice: %w", err)
		}
		if k, _ := res.RowsAffected(); k > 0 {
			return true, nil
		}
	}
	return false, fmt.Errorf("erasure: extend notice: it changed under %d tries; try again", tries)
}

// Status returns the notices of subject, by recipient.
func (n *Notifier) Status(ctx context.Context, subject string) ([]Notice, error) {
	var rows []noticeRow
	err := n.opts.DB.NewSelect().Model(&rows).Where("subject_hmac = ?", audit.SubjectHMAC(n.opts.SubjectKey, subject)).
		Order("recipient").Scan(ctx)
	if err != nil {
		return nil, fmt.Errorf("erasure: read notices: %w", err)
	}
	out := make([]Notice, len(rows))
	for i := range rows {
		out[i] = rows[i].notice()
	}
	return out, nil
}

// ErrNoNotice means the subject has no open notice for that recipient.
var ErrNoNotice = errors.New("erasure: no open notice for this recipient")

// Justify closes the notice of subject to recipient with an officer's
// justification where notice is impossible or disproportionate (Art. 19).
// account is the id of the officer's account as the caller was
// authenticated (its token's "sub"; "" for a notifier served without
// authentication), never a name typed in: it is kept, with the notice and
// in the audit entry, only as its HMAC (AccountHMAC). The text is stored
// with the notice; the audit entry holds its digest. The entry is written
// with the status change (recordChange): if its append fails, Justify
// returns the error and the same justification given again appends it
// (so does the next round), and once it is recorded the same justification
// again changes nothing and is no error.
func (n *Notifier) Justify(ctx context.Context, subject, recipient, account, text string) error {
	if text == "" {
		return errors.New("erasure: a justification needs a text")
	}
	hmac := audit.SubjectHMAC(n.opts.SubjectKey, subject)
	by := n.AccountHMAC(account)
	for range 2 {
		var row noticeRow
		err := n.opts.DB.NewSelect().Model(&row).Where("subject_hmac = ? AND recipient = ?", hmac, recipient).Scan(ctx)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNoNotice
		}
		if err != nil {
			return fmt.Errorf("erasure: read notice: %w", err)
		}
		e := &audit.Entry{Event: EventErasureJustified, RequestID: row.ID, Source: "officer", Recipient: recipient,
			SubjectHMAC: hmac, PayloadDigest: audit.Digest([]byte(text)), Reasons: []string{"account:" + by}}
		switch Status(row.Status) {
		case StatusPending, StatusEscalated, StatusUndeliverable:
			closed, err := n.recordChange(ctx, e, func(db bun.IDB) *bun.UpdateQuery {
				return db.NewUpdate().Model((*noticeRow)(nil)).
					Set("status = ?", string(StatusJustified)).Set("officer = ?", by).Set("justification = ?", text).
					Where("id = ?", row.ID).
					Where("status IN (?)", bun.In(openStatuses(StatusPending, StatusEscalated, StatusUndeliverable)))
			})
			if err != nil || closed {
				return err
			}
			// Changed meanwhile (closed, or reopened under a new id by
			// Begin): read it again.
		case StatusJustified:
			if row.Justification != text {
				return ErrNoNotice
			}
			// The same justification again: a retry, whose entry a
			// failure may have left pending. Another call appending it
			// now (a form sent twice) records it: the retry is answered
			// as done, as an acknowledgement heard twice is.
			if err := n.flushPending(ctx, pendingID(e)); err != nil && !errors.Is(err, errPendingBusy) {
				return err
			}
			return nil
		default:
			return ErrNoNotice
		}
	}
	return ErrNoNotice
}

// AccountHMAC returns how a caller's account is recorded: the HMAC, under
// the audit log's subject key, of "account:" and its id, as the compliance
// API records the caller of every call it audits (the subject_hmac of its
// compliance_api_call entries), so that the two can be matched and
// neither names the account; "unauthenticated" for account "".
func (n *Notifier) AccountHMAC(account string) string {
	if account == "" {
		return "unauthenticated"
	}
	return audit.SubjectHMAC(n.opts.SubjectKey, "account:"+account)
}

// Start sends due notices until Stop.
func (n *Notifier) Start() {
	n.wg.Add(1)
	go n.run()
}

// Stop stops sending and waits for the notices in work. It is idempotent.
func (n *Notifier) Stop() {
	n.once.Do(func() { close(n.stop) })
	n.wg.Wait()
}

func (n *Notifier) poke() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

func (n *Notifier) run() {
	defer n.wg.Done()
	t := time.NewTicker(n.opts.Poll)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		case <-n.wake:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if err := n.round(ctx); err != nil {
			n.log.Warn("erasure notices", "err", err)
		}
		cancel()
	}
}
