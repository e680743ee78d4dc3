package policy

import "errors"

var (
	// ErrNotApplied: no registry was ever applied to the store, so a
	// run-time change has nothing to apply to.
	ErrNotApplied = errors.New("policy: no registry applied yet")
	// ErrAgreementEdited: an applied agreement differs from the stored one
	// of the same id and version; an edit needs a new version number.
	ErrAgreementEdited = errors.New("policy: agreement changed without a new version")
	// ErrGap: an event does not follow the state it is applied to; the
	// store is read to catch up.
	ErrGap = errors.New("policy: events out of order")
	// ErrCorruptEvent: a stored or published event cannot be decoded.
	ErrCorruptEvent = errors.New("policy: corrupt event")
	// ErrInvalidChange: a run-time change names unknown purposes, parties,
	// agreements or categories, or lacks a field; nothing was stored.
	ErrInvalidChange = errors.New("policy: invalid change")
	// ErrAuditPending: a change or an apply was stored and put in force,
	// but its audit entries could not all be written; every instance
	// writes what is missing later (reconcile), so the caller must not
	// record it again.
	ErrAuditPending = errors.New("policy: in force; audit entries written later")
	// ErrClosed: the Live registry was stopped.
	ErrClosed = errors.New("policy: closed")
)
