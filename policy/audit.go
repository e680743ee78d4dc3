package policy

import (
	"context"
	"fmt"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/audit"
)

// The audit events of registry changes besides those the audit package
// names (registry_applied, consent_recorded, erasure_recorded).
const (
	// EventLegalOrderRecorded records a legal order entered at run time,
	// one entry per subject it names.
	EventLegalOrderRecorded audit.Event = "legal_order_recorded"
	// EventAgreementSuspended records the suspension of an agreement.
	EventAgreementSuspended audit.Event = "agreement_suspended"
)

// The reasons of consent entries.
const (
	ReasonConsentGranted   = "consent_granted"
	ReasonConsentWithdrawn = "consent_withdrawn"
)

// requestID ties the audit entries of one registry event together.
func requestID(ev Event) string { return fmt.Sprintf("registry-event-%d", ev.Seq) }

// changeEntries returns the audit entries of a run-time change: one per
// consent, withdrawal, erasure, subject of a legal order and suspension.
func changeEntries(ev Event) []*audit.Entry {
	ch, id := ev.Change, requestID(ev)
	entry := func(e audit.Event) *audit.Entry {
		return &audit.Entry{Time: ev.At, Event: e, RequestID: id, Source: "registry", RegistryVersion: ev.Version}
	}
	var out []*audit.Entry
	for _, c := range ch.Consents {
		e := entry(audit.EventConsentRecorded)
		e.SubjectID, e.Purpose, e.Reasons = c.Subject, c.Purpose, []string{ReasonConsentGranted}
		if len(c.Recipients) == 1 {
			e.Recipient = c.Recipients[0]
		}
		out = append(out, e)
	}
	for _, w := range ch.Withdrawals {
		e := entry(audit.EventConsentRecorded)
		e.SubjectID, e.Purpose, e.Reasons = w.Subject, w.Purpose, []string{ReasonConsentWithdrawn}
		out = append(out, e)
	}
	for _, er := range ch.Erasures {
		e := entry(audit.EventErasureRecorded)
		e.SubjectID = er.Subject
		out = append(out, e)
	}
	for _, o := range ch.LegalOrders {
		for _, s := range o.Subjects {
			e := entry(EventLegalOrderRecorded)
			e.SubjectID, e.Recipient, e.CategoriesSent, e.Reasons = s, o.Authority, o.Categories, []string{"legal_order:" + o.ID}
			out = append(out, e)
		}
	}
	for _, a := range ch.Suspend {
		e := entry(EventAgreementSuspended)
		e.AgreementID, e.AgreementVersion = a, ev.Suspended[a]
		out = append(out, e)
	}
	return out
}

// applyEntries returns the audit entries of an apply: the new base and
// every agreement version it stored for the first time.
func applyEntries(ev Event, added []agreements.Agreement) []*audit.Entry {
	id := requestID(ev)
	out := []*audit.Entry{{Time: ev.At, Event: audit.EventRegistryApplied, RequestID: id, Source: "registry",
		RegistryVersion: ev.Version, Reasons: []string{"base:" + ev.Base}}}
	for _, a := range added {
		out = append(out, &audit.Entry{Time: ev.At, Event: audit.EventRegistryApplied, RequestID: id, Source: "registry",
			RegistryVersion: ev.Version, AgreementID: a.ID, AgreementVersion: a.Version, Reasons: []string{"agreement_version_stored"}})
	}
	return out
}

func (l *Live) auditApply(ctx context.Context, ev Event, added []agreements.Agreement) error {
	return l.appendAll(ctx, ev, applyEntries(ev, added))
}

func (l *Live) auditChange(ctx context.Context, ev Event) error {
	return l.appendAll(ctx, ev, changeEntries(ev))
}

// appendAll appends es, retrying a failing append a few times: the change
// is stored and in force already, so its record must follow. The event
// stays pending (pendingRow) until the last is appended, and what is
// missing once the writer gave up is written later (reconcile).
func (l *Live) appendAll(ctx context.Context, ev Event, es []*audit.Entry) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	for i, e := range es {
		var err error
		for attempt := range 5 {
			if _, err = l.opts.Audit.Append(ctx, e); err == nil {
				break
			}
			select {
			case <-ctx.Done():
			case <-time.After(time.Duration(50<<attempt) * time.Millisecond):
			}
		}
		if err != nil {
			l.log.Error("audit registry event; written later", "seq", ev.Seq, "event", string(e.Event), "err", err)
			// On a context of its own: the writer's may be what ran out,
			// and reconcile would then write the first entries again.
			dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			derr := l.setDone(dctx, l.opts.Store.db, ev.Seq, i)
			dcancel()
			if derr != nil {
				l.log.Warn("record pending audit", "seq", ev.Seq, "err", derr)
			}
			return fmt.Errorf("policy: audit registry event %d: %w: %w", ev.Seq, ErrAuditPending, err)
		}
	}
	if err := l.setDone(ctx, l.opts.Store.db, ev.Seq, -1); err != nil {
		// The entries are written; the row left makes reconcile write them
		// again, as a second record of the same event.
		l.log.Warn("clear pending audit", "seq", ev.Seq, "err", err)
	}
	return nil
}
