package broker

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/audit"
)

// entryPool holds audit entries between appends. The audit log keeps
// nothing of an entry once Append has returned (AuditLog), so appendEntry
// gives each entry back, and its FieldsRemoved map is reused.
var entryPool = sync.Pool{New: func() any { return new(audit.Entry) }}

// entry builds the audit entry of ev for res, for appendEntry: ids, the
// decision's facts and the subject id (which the audit log replaces by its
// HMAC). Nothing of the record goes in. Its lists are res's and the
// decision's own, not copies: Append has encoded them when it returns.
func (b *Broker) entry(ev audit.Event, res *result) *audit.Entry {
	e := entryPool.Get().(*audit.Entry)
	removed := e.FieldsRemoved
	*e = audit.Entry{
		Time:      b.opts.Now(),
		Event:     ev,
		RequestID: res.requestID,
		Source:    res.source,
		Decision:  "deny",
		Reasons:   res.reasons,
	}
	if req := res.req; req != nil {
		e.Recipient = req.Recipient
		e.Purpose = req.Purpose
		e.Dataset = req.Dataset
		e.Origin = req.Subject.Jurisdiction
		e.SubjectID = req.Subject.ID
	}
	if d := res.dec; d != nil {
		e.Decision = string(d.Decision)
		if ev == audit.EventDecided {
			e.Reasons = d.Reasons
		}
		e.RecipientCountry = d.RecipientCountry
		e.LegalBasis = string(d.LegalBasis)
		setBasis(e, d.Agreement, d.LegalOrder)
		e.Mechanism = d.Mechanism
		e.RegistryVersion = d.RegistryVersion
		if d.Allowed() {
			e.CategoriesSent = d.Categories
		}
		if len(d.Fields.Removed) > 0 {
			if removed == nil {
				removed = make(map[string]string, len(d.Fields.Removed))
			}
			clear(removed)
			for _, f := range d.Fields.Removed {
				removed[f.Path] = f.Reason
			}
			e.FieldsRemoved = removed
		}
	}
	if res.digest != "" {
		e.PayloadDigest = res.digest
		e.KeyRef = b.keys.KeyRef()
		if res.keyRef != "" {
			e.KeyRef = res.keyRef
		}
	}
	return e
}

// setBasis records in e what the transfer rests on: the agreement a, or
// else the legal order (audit.LegalOrderAgreement).
func setBasis(e *audit.Entry, a *agreements.AgreementRef, legalOrder string) {
	switch {
	case a != nil:
		e.AgreementID, e.AgreementVersion = a.ID, a.Version
	case legalOrder != "":
		e.AgreementID = audit.LegalOrderAgreement(legalOrder)
	}
}

// maxPooledFields is the largest FieldsRemoved map kept with a pooled entry.
const maxPooledFields = 64

// appendEntry appends e and waits until it is durable. It takes e: e goes
// back to entryPool, and the caller must not use it afterwards.
func (b *Broker) appendEntry(ctx context.Context, e *audit.Entry) (int64, error) {
	t := time.Now()
	seq, err := b.opts.Audit.Append(ctx, e)
	b.metrics.since(stageAudit, t)
	ev := e.Event
	if len(e.FieldsRemoved) > maxPooledFields {
		e.FieldsRemoved = nil
	}
	*e = audit.Entry{FieldsRemoved: e.FieldsRemoved}
	entryPool.Put(e)
	if err != nil {
		return 0, fmt.Errorf("broker: audit %s: %w", ev, err)
	}
	return seq, nil
}
