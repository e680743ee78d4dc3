package broker

import (
	"bytes"
	"context"
	"errors"
	"slices"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/audit"
)

// RegistrySource is what a Decider may also offer: the registry it decides
// with. When it does, a message whose registry changed after it was decided
// (a consent withdrawn, an agreement suspended while it was sealed and
// audited) is decided again just before it is delivered; *agreements.Engine
// offers it.
type RegistrySource interface {
	Registry() *agreements.Registry
}

// maxRedecide bounds how often one attempt re-decides when the registry
// keeps changing under it; past it the attempt is retried later.
const maxRedecide = 3

// redecide returns a new decision for res when the registry in force is not
// the one res.dec was made with, or nil when it is (or the Decider does not
// say).
func (b *Broker) redecide(res *result) *agreements.Decision {
	src, ok := b.opts.Decider.(RegistrySource)
	if !ok || src.Registry().Version() == res.dec.RegistryVersion {
		return nil
	}
	return b.opts.Decider.Decide(res.req, b.opts.Now())
}

// sameTransfer reports whether a new allowing decision sends exactly what
// the old one did, so that the payload sealed for the old one may go.
func sameTransfer(old, nd *agreements.Decision) bool {
	return nd.Allowed() && sameAgreement(old.Agreement, nd.Agreement) && old.LegalOrder == nd.LegalOrder &&
		old.Mechanism == nd.Mechanism && old.RetentionDays == nd.RetentionDays &&
		slices.Equal(old.Fields.Kept, nd.Fields.Kept)
}

// denyAtDelivery records that res, allowed when it was decided, is denied
// by the registry in force at delivery: the new decision is audited and the
// payload is not sent.
func (b *Broker) denyAtDelivery(ctx context.Context, res *result, nd *agreements.Decision) *result {
	res.dec, res.reasons, res.attempted = nd, nd.Reasons, false
	b.metrics.decision(string(nd.Decision), nd.Reasons)
	seq, err := b.appendEntry(ctx, b.entry(audit.EventDecided, res))
	if err != nil {
		res.outcome, res.err = OutcomeTransient, err
		return res
	}
	res.outcome, res.seq = OutcomeDenied, seq
	return res
}

// sameParty reports whether the recipient in force under nd is reached
// through the connector, and with the public key, that res's payload was
// sealed for: a payload sealed to a key the registry has since replaced (a
// partner's key rotated, or one reported lost) is sealed again rather than
// sent.
func (b *Broker) sameParty(res *result, nd *agreements.Decision) bool {
	party, err := b.opts.Parties.Party(res.req.Recipient)
	if err != nil {
		return false
	}
	connector := nd.Connector
	if connector == "" {
		connector = party.Connector
	}
	return connector == res.connector && bytes.Equal(party.PublicKey, res.partyKey)
}

func sameAgreement(a, b *agreements.AgreementRef) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// again re-decides res before its delivery: it returns nil when the payload
// sealed for the decision may go, or the result of the attempt otherwise (a
// denial recorded, the transfer sealed and audited anew under a decision
// that sends something else, or a transient failure when the registry keeps
// changing).
func (b *Broker) again(ctx context.Context, res *result) *result {
	nd := b.redecide(res)
	switch {
	case nd == nil:
		return nil
	case !nd.Allowed():
		return b.denyAtDelivery(ctx, res, nd)
	case sameTransfer(res.dec, nd) && b.sameParty(res, nd):
		res.dec = nd
		return nil
	case res.redecided >= maxRedecide:
		res.attempted = false
		res.outcome, res.err = OutcomeTransient, errRegistryChanging
		return res
	}
	res.redecided++
	res.dec, res.attempted = nd, false
	return b.deliver(ctx, res)
}

// errRegistryChanging: the registry changed under one attempt more often
// than maxRedecide; the message is retried later.
var errRegistryChanging = errors.New("broker: registry changed during delivery")
