package erasure

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/connectors"
	"github.com/clearance-broker/clearance/connectors/natsregion"
	"github.com/nats-io/nats.go"
	"github.com/uptrace/bun"
)

// AckKind is the kind of a receiving region's acknowledgement of a notice.
const AckKind = "erasure_ack"

// AckSubjectPrefix starts the NATS subject a receiving region answers a
// notice on: AckSubjectPrefix + "." + notice id. The sending region listens
// on it (ListenAcks) with a connection to the receiving region's NATS.
const AckSubjectPrefix = "clearance.erasure.acks"

// AckPayload is what a receiving region's Clearance signs once it applied
// a notice to its own copies: it recorded the erasure in its registry (so
// nothing more flows for the subject) and destroyed its subject keys.
type AckPayload struct {
	Kind      string    `json:"kind"`
	NoticeID  string    `json:"notice_id"`
	Recipient string    `json:"recipient"`
	AppliedAt time.Time `json:"applied_at"`
}

// Verifier checks a compact JWS signed by the key service the regions
// share; *keys.Vault and *keys.DevKeyRing satisfy it.
type Verifier interface {
	Verify(ctx context.Context, jws []byte) ([]byte, error)
}

// ErrBadAck means an acknowledgement does not verify, does not decode or
// names no open notice of that recipient.
var ErrBadAck = errors.New("erasure: acknowledgement not valid")

// ErrUnknownNotice (with ErrBadAck) means a verified acknowledgement names a
// notice this instance's store does not hold: one another region sent.
// Every region's instances listen for acknowledgements on their own NATS
// too, so a receiving region sees the answers it gives itself.
var ErrUnknownNotice = errors.New("no such notice")

// awaitingAck is the LastError class of a regional notice the region's
// stream accepted but whose acknowledgement has not come yet; the notice
// stays pending and is sent again after backoff.
const awaitingAck = "awaiting_acknowledgement"

// appliesErasure reports whether conn reaches another region's Clearance,
// which applies a notice to its own copies and answers it (a
// natsregion connector).
func appliesErasure(conn connectors.Connector) bool {
	_, ok := conn.(*natsregion.Region)
	return ok
}

// ErasedSubjects returns a lookup of erased subject ids by subject HMAC
// over the registry in force (its erasures), for Options.ErasedSubject.
// Each erased subject's HMAC is computed once: the lookup keeps them, reads
// the registry's erasures again only for an HMAC it does not know (a
// subject erased since), and answers only for a subject the registry in
// force still holds an erasure of. It is safe for concurrent use.
func ErasedSubjects(reg func() *agreements.Registry, subjectKey []byte) func(string) (string, bool) {
	var (
		mu     sync.Mutex
		byHMAC = map[string]string{}
		hashed = map[string]bool{}
	)
	return func(hmac string) (string, bool) {
		r := reg()
		mu.Lock()
		defer mu.Unlock()
		id, ok := byHMAC[hmac]
		if !ok {
			for _, e := range r.Erasures() {
				if !hashed[e.Subject] {
					hashed[e.Subject] = true
					byHMAC[audit.SubjectHMAC(subjectKey, e.Subject)] = e.Subject
				}
			}
			if id, ok = byHMAC[hmac]; !ok {
				return "", false
			}
		}
		if _, erasures := r.Subject(id); len(erasures) == 0 {
			return "", false
		}
		return id, true
	}
}

// Acknowledge records a receiving region's signed acknowledgement (a
// compact JWS over an AckPayload): the notice of that recipient is marked
// acknowledged and audited, its entry written with the status change
// (recordChange), so that it is never lost with an append that failed. An
// acknowledgement of a notice already closed is accepted and changes
// nothing, but for appending the entry of its closing if a failure left it
// pending; several instances hearing one answer record it once.
func (n *Notifier) Acknowledge(ctx context.Context, signed []byte) error {
	if n.opts.Verifier == nil {
		return fmt.Errorf("%w: no verifier configured", ErrBadAck)
	}
	payload, err := n.opts.Verifier.Verify(ctx, signed)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadAck, err)
	}
	var a AckPayload
	if err := json.Unmarshal(payload, &a); err != nil || a.Kind != AckKind || a.NoticeID == "" || a.Recipient == "" {
		return fmt.Errorf("%w: payload", ErrBadAck)
	}
	var row noticeRow
	if err := n.opts.DB.NewSelect().Model(&row).Where("id = ? AND recipient = ?", a.NoticeID, a.Recipient).Scan(ctx); err != nil {
		return fmt.Errorf("%w: %w", ErrBadAck, ErrUnknownNotice)
	}
	now := n.opts.Now().UTC()
	e := &audit.Entry{Event: audit.EventErasureNotified, RequestID: row.ID, Source: "erasure",
		Recipient: row.Recipient, SubjectHMAC: row.SubjectHMAC, PayloadDigest: audit.Digest(signed),
		Reasons: []string{"acknowledged_by_recipient", fmt.Sprintf("acknowledged_after_attempts:%d", row.Attempts)}}
	closed, err := n.recordChange(ctx, e, func(db bun.IDB) *bun.UpdateQuery {
		return db.NewUpdate().Model((*noticeRow)(nil)).
			Set("status = ?", string(StatusAcknowledged)).Set("acknowledged_at = ?", now).Set("last_error = ''").
			Where("id = ?", a.NoticeID).Where("status IN (?)", bun.In(openStatuses(StatusPending, StatusEscalated)))
	})
	if err != nil {
		return err
	}
	if !closed {
		// Closed already: by this answer, perhaps, given again, whose
		// entry a failure left pending (appended now; another instance
		// hearing the same answer may be at it, and then it is its).
		if err := n.flushPending(ctx, pendingID(e)); err != nil && !errors.Is(err, errPendingBusy) {
			return err
		}
		return nil
	}
	n.log.Info("erasure notice acknowledged by the recipient", "notice", row.ID, "recipient", row.Recipient)
	return nil
}

// ListenAcks consumes acknowledgements arriving on nc (a connection to the
// receiving region's NATS, or the instance's own) until the returned stop
// is called. A refused acknowledgement is logged as a warning, except a
// verified one for a notice sent elsewhere (ErrUnknownNotice), which is
// routine and logged at debug level.
func (n *Notifier) ListenAcks(nc *nats.Conn) (stop func(), err error) {
	sub, err := nc.Subscribe(AckSubjectPrefix+".>", func(m *nats.Msg) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		switch err := n.Acknowledge(ctx, m.Data); {
		case errors.Is(err, ErrUnknownNotice):
			// Signed by a region, for a notice another region sent (this
			// one's own answer, on its own NATS): nothing to record here.
			n.log.Debug("erasure acknowledgement of a notice sent elsewhere", "err", err)
		case err != nil:
			n.log.Warn("erasure acknowledgement refused", "err", err)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("erasure: subscribe to acknowledgements: %w", err)
	}
	return func() { _ = sub.Drain() }, nil
}
