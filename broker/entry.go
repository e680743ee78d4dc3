package broker

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/clearance-broker/clearance/audit"
)

// entry builds the audit entry of ev for res: ids, the decision's facts and
// the subject id (which the audit log replaces by its HMAC). Nothing of the
// record goes in.
func (b *Broker) entry(ev audit.Event, res *result) *audit.Entry {
	e := &audit.Entry{
		Time:      b.opts.Now(),
		Event:     ev,
		RequestID: res.requestID,
		Source:    res.source,
		Decision:  "deny",
		Reasons:   slices.Clone(res.reasons),
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
			e.Reasons = slices.Clone(d.Reasons)
		}
		e.RecipientCountry = d.RecipientCountry
		e.LegalBasis = string(d.LegalBasis)
		if d.Agreement != nil {
			e.AgreementID, e.AgreementVersion = d.Agreement.ID, d.Agreement.Version
		}
		e.Mechanism = d.Mechanism
		e.RegistryVersion = d.RegistryVersion
		if d.Allowed() {
			e.CategoriesSent = slices.Clone(d.Categories)
		}
		if len(d.Fields.Removed) > 0 {
			e.FieldsRemoved = make(map[string]string, len(d.Fields.Removed))
			for _, f := range d.Fields.Removed {
				e.FieldsRemoved[f.Path] = f.Reason
			}
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

// appendEntry appends e and waits until it is durable.
func (b *Broker) appendEntry(ctx context.Context, e *audit.Entry) (int64, error) {
	t := time.Now()
	seq, err := b.opts.Audit.Append(ctx, e)
	b.metrics.since("audit", t)
	if err != nil {
		return 0, fmt.Errorf("broker: audit %s: %w", e.Event, err)
	}
	return seq, nil
}
