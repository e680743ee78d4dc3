package audit

import (
	"errors"
	"fmt"
)

var (
	// ErrClosed is returned by Append after Close.
	ErrClosed = errors.New("audit: log closed")
	// ErrReadOnly is returned by Append, Checkpoint and Archive (when given no
	// signer) on a Log opened without a Signer: such a Log can query, export,
	// verify and, with a signer argument, archive, but not append.
	ErrReadOnly = errors.New("audit: log opened read-only (no signer)")
	// ErrInvalidEntry is returned by Append for an entry without an event.
	ErrInvalidEntry = errors.New("audit: invalid entry")
	// ErrNoSubjectKey is returned when a subject id must be hashed but
	// Options.SubjectKey is empty.
	ErrNoSubjectKey = errors.New("audit: no subject HMAC key configured")
	// ErrTampered is matched (errors.Is) by every *TamperError.
	ErrTampered = errors.New("audit: log tampered")
	// ErrUnsupportedDSN is returned by OpenDB for a DSN it cannot open.
	ErrUnsupportedDSN = errors.New("audit: unsupported database DSN")
	// ErrDuplicateOutcome is matched (errors.Is) by every
	// *DuplicateOutcomeError: Append refused a final outcome (see
	// Entry.Final), or a decision to allow, because its request already has
	// a final outcome in the log, written by this or another instance, or
	// earlier in the same batch. Nothing was appended; the outcome already
	// recorded stands.
	ErrDuplicateOutcome = errors.New("audit: request already has a final outcome")
)

// DuplicateOutcomeError is what Append returns for a refused final outcome
// or decision to allow: the event refused and the event and sequence number
// of the final outcome the request already has. It holds no entry content.
type DuplicateOutcomeError struct {
	// Event is the event of the refused entry.
	Event Event
	// Recorded is the event of the final outcome already in the log.
	Recorded Event
	// Sequence is the sequence number of the final outcome already in the
	// log.
	Sequence int64
}

// Error implements error.
func (e *DuplicateOutcomeError) Error() string {
	return fmt.Sprintf("%s: %s refused, %s recorded at entry %d", ErrDuplicateOutcome, e.Event, e.Recorded, e.Sequence)
}

// Unwrap makes errors.Is(err, ErrDuplicateOutcome) hold.
func (e *DuplicateOutcomeError) Unwrap() error { return ErrDuplicateOutcome }

// Finding names the kind of tampering Verify found.
type Finding string

// The findings Verify reports.
const (
	// FindingChanged: the entry's content no longer matches its hash, or its
	// hash is not the one the next entry or a checkpoint recorded.
	FindingChanged Finding = "changed"
	// FindingRemoved: the entry is missing from the chain.
	FindingRemoved Finding = "removed"
	// FindingInserted: the entry was not written through the log (it lies
	// outside the chain head or before the retained anchor).
	FindingInserted Finding = "inserted"
	// FindingBadCheckpoint: a checkpoint or archive manifest does not verify
	// or does not agree with its row.
	FindingBadCheckpoint Finding = "bad_checkpoint"
)

// TamperError says what Verify found first: the finding, the sequence number
// of the entry (or checkpoint) concerned and a short explanation. It holds no
// entry content.
type TamperError struct {
	Finding  Finding `json:"finding"`
	Sequence int64   `json:"sequence"`
	Detail   string  `json:"detail"`
	// UnknownKeyID is set when the finding is a signature by a key the
	// verifier does not hold (UnknownKeyError): unverified, not proven
	// wrong.
	UnknownKeyID string `json:"unknown_key_id,omitempty"`
}

// signatureProblem is the finding f at seq for a signature that did not
// verify with err, described as detail followed by err.
func signatureProblem(f Finding, seq int64, detail string, err error) *TamperError {
	return &TamperError{Finding: f, Sequence: seq, Detail: detail + err.Error(), UnknownKeyID: UnknownKeyID(err)}
}

// Error implements error.
func (e *TamperError) Error() string {
	return fmt.Sprintf("audit: entry %d %s: %s", e.Sequence, e.Finding, e.Detail)
}

// Unwrap makes errors.Is(err, ErrTampered) hold.
func (e *TamperError) Unwrap() error { return ErrTampered }
