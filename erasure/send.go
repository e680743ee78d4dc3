package erasure

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/connectors"
	"github.com/clearance-broker/clearance/keys"
	"github.com/uptrace/bun"
)

// NoticePayload is what a recipient reads once it opened and verified a
// notice: which of the transfers it received must be erased. It names the
// subject only through those request ids.
type NoticePayload struct {
	Kind       string    `json:"kind"`
	NoticeID   string    `json:"notice_id"`
	Recipient  string    `json:"recipient"`
	RequestIDs []string  `json:"request_ids"`
	ErasedAt   time.Time `json:"erased_at"`
	Basis      string    `json:"basis"`
	// Subject is the erased subject's id, only in a notice to another
	// region's Clearance (signed, and sealed under the keys the regions
	// share), which applies the erasure to its own registry and keys.
	Subject string `json:"subject,omitempty"`
	// AckSubject, in a notice to another region's Clearance, is where it
	// answers with a signed AckPayload once it applied the notice; the
	// notice counts as acknowledged only then.
	AckSubject string `json:"ack_subject,omitempty"`
}

// batch is how many notices one round claims.
const batch = 32

// round claims the due notices and works on each.
func (n *Notifier) round(ctx context.Context) error {
	now := n.opts.Now().UTC().Truncate(time.Microsecond)
	if err := n.sweep(ctx, now); err != nil {
		return err
	}
	if err := n.flushDue(ctx, now); err != nil {
		// The pending entries are read again next round; the notices
		// due go out meanwhile.
		n.log.Warn("erasure notices' pending audit entries", "err", err)
	}
	rows, err := claim(ctx, n.opts.DB, n.owner, now, now.Add(2*time.Minute), batch)
	if err != nil {
		return err
	}
	for i := range rows {
		if err := n.work(ctx, &rows[i]); err != nil {
			return err
		}
	}
	return nil
}

// work sends one notice and records the outcome.
func (n *Notifier) work(ctx context.Context, r *noticeRow) error {
	now := n.opts.Now().UTC()
	if Status(r.Status) == StatusPending && r.EscalatedAt.IsZero() && now.Sub(r.CreatedAt) >= n.opts.EscalateAfter {
		if ok, err := n.escalate(ctx, r, now); !ok {
			// Changed meanwhile (acknowledged, extended under a new id):
			// the next round reads it again.
			return err
		}
	}
	// The attempt is recorded before it is made: a region may answer
	// before this round records the outcome, and its acknowledgement (which
	// an outcome recorded after it does not overwrite) must count it.
	r.Attempts++
	if _, err := n.opts.DB.NewUpdate().Model(r).Column("attempts").
		WherePK().Where("lease_owner = ?", n.owner).Exec(ctx); err != nil {
		return fmt.Errorf("erasure: record attempt: %w", err)
	}
	digest, awaiting, err := n.send(ctx, r)
	switch {
	case err == nil && awaiting:
		// The region's stream has it; the region's answer acknowledges it.
		r.LastError = awaitingAck
		r.NextAt = now.Add(n.backoff(r.Attempts))
	case err == nil:
		r.Status, r.AcknowledgedAt, r.LastError = string(StatusAcknowledged), now, ""
		if _, aerr := n.opts.Audit.Append(ctx, &audit.Entry{Event: audit.EventErasureNotified, RequestID: r.ID, Source: "erasure",
			Recipient: r.Recipient, SubjectHMAC: r.SubjectHMAC, KeyRef: n.opts.Keys.KeyRef(), PayloadDigest: digest,
			Reasons: []string{fmt.Sprintf("acknowledged_after_attempts:%d", r.Attempts)}}); aerr != nil {
			return fmt.Errorf("erasure: audit notice: %w", aerr)
		}
	case errors.Is(err, errUndeliverable):
		r.Status, r.LastError = string(StatusUndeliverable), "undeliverable"
		n.log.Warn("erasure notice undeliverable; an officer's justification is needed", "notice", r.ID, "recipient", r.Recipient)
	default:
		r.LastError = classOf(err)
		r.NextAt = now.Add(n.backoff(r.Attempts))
		var ra *connectors.RetryAfterError
		if errors.As(err, &ra) && now.Add(ra.After).After(r.NextAt) {
			// A partner's wait is honoured up to RetryMax: a notice put
			// off for years would never come due, nor escalate.
			r.NextAt = now.Add(min(ra.After, n.opts.RetryMax))
		}
		n.log.Info("erasure notice not acknowledged", "notice", r.ID, "recipient", r.Recipient, "attempt", r.Attempts, "class", r.LastError)
	}
	r.LeaseUntil = time.Unix(0, 0).UTC()
	_, err = n.opts.DB.NewUpdate().Model(r).
		Column("status", "attempts", "last_error", "next_at", "lease_until", "acknowledged_at", "escalated_at").
		WherePK().Where("lease_owner = ?", n.owner).
		// An acknowledgement that arrived meanwhile stays, and a notice
		// that Begin extended meanwhile (extend) is sent again.
		Where("status IN (?)", bun.In([]string{string(StatusPending), string(StatusEscalated)})).
		Where("request_ids = ?", r.RequestIDs).Exec(ctx)
	if err != nil {
		return fmt.Errorf("erasure: record notice: %w", err)
	}
	return nil
}

// escalate marks r escalated and records its entry, in one transaction
// (recordChange), before the attempt is made: the notice is escalated
// once, whatever becomes of the attempt. Before, the entry was appended
// first and the status written with the attempt's outcome, which does not
// hold once the notice changed meanwhile (Begin extended it under a new id,
// keeping the status it read: pending), so that the next round escalated
// it again. It reports whether r was escalated; an escalation whose entry
// could not be appended yet is (the entry is pending, appended by a later
// round), and is only logged.
func (n *Notifier) escalate(ctx context.Context, r *noticeRow, now time.Time) (bool, error) {
	e := &audit.Entry{Event: EventErasureEscalated, RequestID: r.ID, Source: "erasure",
		Recipient: r.Recipient, SubjectHMAC: r.SubjectHMAC, Reasons: []string{"unacknowledged_after:" + n.opts.EscalateAfter.String()}}
	at := now.Truncate(time.Microsecond)
	changed, err := n.recordChange(ctx, e, func(db bun.IDB) *bun.UpdateQuery {
		return db.NewUpdate().Model((*noticeRow)(nil)).
			Set("status = ?", string(StatusEscalated)).Set("escalated_at = ?", at).
			Where("id = ?", r.ID).Where("lease_owner = ?", n.owner).Where("escalated_at IS NULL").
			Where("status = ?", string(StatusPending)).Where("request_ids = ?", r.RequestIDs)
	})
	if !changed {
		return false, err
	}
	r.Status, r.EscalatedAt = string(StatusEscalated), at
	n.log.Warn("erasure notice escalated", "notice", r.ID, "recipient", r.Recipient, "subject_hmac", r.SubjectHMAC, "attempts", r.Attempts)
	if err != nil {
		n.log.Warn("erasure notice's escalation entry pending", "notice", r.ID, "err", err)
	}
	return true, nil
}

// Reopen puts the notices marked undeliverable back in work at once, for
// the registry in force now (a registry apply may have given their
// recipient a public key, or a connector this instance configures, or
// made it a party again); it returns how many. A notice still
// undeliverable is marked so again after one attempt. One past
// EscalateAfter is escalated (audited) the first time only: a notice
// escalated before comes back escalated.
func (n *Notifier) Reopen(ctx context.Context) (int, error) {
	res, err := n.opts.DB.NewUpdate().Model((*noticeRow)(nil)).
		Set("status = CASE WHEN escalated_at IS NULL THEN ? ELSE ? END", string(StatusPending), string(StatusEscalated)).
		Set("next_at = ?", n.opts.Now().UTC().Truncate(time.Microsecond)).
		Where("status = ?", string(StatusUndeliverable)).Exec(ctx)
	if err != nil {
		return 0, fmt.Errorf("erasure: reopen undeliverable notices: %w", err)
	}
	k, _ := res.RowsAffected()
	if k > 0 {
		n.poke()
	}
	return int(k), nil
}

func (n *Notifier) backoff(attempt int) time.Duration {
	d := n.opts.RetryBase
	for i := 1; i < attempt && d < n.opts.RetryMax; i++ {
		d *= 2
	}
	return min(d, n.opts.RetryMax)
}

// errUndeliverable: the recipient cannot be reached at all, or could not
// read a notice (a party without a public key on a connector that needs
// one, Options.NeedsPartyKey).
var errUndeliverable = errors.New("erasure: recipient cannot be reached")

// errSubjectNotFound: a notice to another region's Clearance waits, since
// the subject's id is not (yet) found among the erasures of the registry
// in force here (Options.ErasedSubject).
var errSubjectNotFound = errors.New("erasure: the erased subject is not in the registry in force here yet")

// send signs, encrypts and delivers the notice; it returns the digest of
// what went on the wire and whether the recipient (another region's
// Clearance) still has to answer it.
func (n *Notifier) send(ctx context.Context, r *noticeRow) (string, bool, error) {
	party, err := n.opts.Parties().Party(r.Recipient)
	if errors.Is(err, agreements.ErrUnknownParty) {
		return "", false, errUndeliverable
	}
	if err != nil {
		return "", false, err
	}
	conn, ok := n.opts.Connectors.Connector(party.Connector)
	if !ok {
		return "", false, errUndeliverable
	}
	if len(party.PublicKey) == 0 && n.opts.NeedsPartyKey != nil && n.opts.NeedsPartyKey(conn) {
		// It could not open what it would be sent (sealed under the
		// broker's own key): a notice it cannot read is no notice.
		return "", false, errUndeliverable
	}
	p := NoticePayload{Kind: NoticeKind, NoticeID: r.ID, Recipient: r.Recipient, ErasedAt: r.ErasedAt.UTC(), Basis: "GDPR Art. 17, Art. 19"}
	_ = json.Unmarshal([]byte(r.RequestIDs), &p.RequestIDs) // written by Begin
	awaiting := appliesErasure(conn) && len(party.PublicKey) == 0
	if awaiting {
		// The region acknowledges what it applied, and it applies only a
		// notice that names the subject: one sent without (this
		// instance's registry does not hold the erasure yet, as while it
		// starts) would be acknowledged unapplied. It waits instead.
		found := false
		if n.opts.ErasedSubject != nil {
			p.Subject, found = n.opts.ErasedSubject(r.SubjectHMAC)
		}
		if !found {
			return "", false, errSubjectNotFound
		}
		p.AckSubject = AckSubjectPrefix + "." + r.ID
	}
	payload, err := json.Marshal(p)
	if err != nil {
		return "", false, fmt.Errorf("erasure: encode notice: %w", err)
	}
	id := r.ID
	if awaiting {
		// Each attempt is a new message for the region's stream (which
		// de-duplicates by id), so a lost answer is asked for again.
		id = fmt.Sprintf("%s.a%d", r.ID, r.Attempts)
	}
	digest, err := n.deliver(ctx, conn, party, r, id, payload)
	return digest, awaiting, err
}

// deliver seals payload for party and hands it to conn: encrypted to the
// party's public key, or, for a party without one (a region's Clearance,
// which shares the broker's keys; send refuses one on a connector that
// needs a party key), signed and sealed under the broker's own key.
func (n *Notifier) deliver(ctx context.Context, conn connectors.Connector, party agreements.Party, r *noticeRow, id string, payload []byte) (string, error) {
	var err error
	var body []byte
	if len(party.PublicKey) > 0 {
		out, err := n.opts.Keys.SealFor(ctx, party.PublicKey, [][]byte{payload})
		if err != nil {
			return "", fmt.Errorf("erasure: seal notice: %w", err)
		}
		body = out[0]
	} else {
		signed, err := n.opts.Keys.Sign(ctx, [][]byte{payload})
		if err != nil {
			return "", fmt.Errorf("erasure: sign notice: %w", err)
		}
		if body, err = n.opts.Keys.Seal(ctx, signed[0]); err != nil {
			return "", fmt.Errorf("erasure: seal notice: %w", err)
		}
	}
	err = conn.Deliver(ctx, &connectors.Delivery{
		RequestID: id, Recipient: r.Recipient, Kind: NoticeKind, ContentType: "application/jose", Body: body,
		Headers: map[string]string{"Clearance-Key-Ref": n.opts.Keys.KeyRef(), "Clearance-Notice": NoticeKind},
	})
	if err != nil {
		return "", fmt.Errorf("erasure: deliver notice via %s: %w", party.Connector, err)
	}
	return audit.Digest(body), nil
}

// classOf names an error's class for the notice's status, never its text.
func classOf(err error) string {
	var ra *connectors.RetryAfterError
	switch {
	case errors.As(err, &ra):
		return "retry_after"
	case errors.Is(err, connectors.ErrPermanent):
		return "refused"
	case errors.Is(err, keys.ErrUnavailable):
		return "key_service_unavailable"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, errSubjectNotFound):
		return "subject_not_in_registry"
	}
	return "transient"
}
