package audit

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/uptrace/bun"
)

// entryRow is an Entry as stored. Lists and maps are kept as JSON text so
// that both dialects store them identically.
type entryRow struct {
	bun.BaseModel `bun:"table:audit_entries"`

	Seq              int64     `bun:"seq,pk"`
	At               time.Time `bun:"at,notnull"`
	Event            string    `bun:"event,notnull"`
	RequestID        string    `bun:"request_id,notnull"`
	Source           string    `bun:"source,notnull"`
	Recipient        string    `bun:"recipient,notnull"`
	RecipientCountry string    `bun:"recipient_country,notnull"`
	Origin           string    `bun:"origin,notnull"`
	Purpose          string    `bun:"purpose,notnull"`
	Dataset          string    `bun:"dataset,notnull"`
	Decision         string    `bun:"decision,notnull"`
	Reasons          string    `bun:"reasons,notnull"`
	LegalBasis       string    `bun:"legal_basis,notnull"`
	AgreementID      string    `bun:"agreement_id,notnull"`
	AgreementVersion int       `bun:"agreement_version,notnull"`
	Mechanism        string    `bun:"mechanism,notnull"`
	CategoriesSent   string    `bun:"categories_sent,notnull"`
	FieldsRemoved    string    `bun:"fields_removed,notnull"`
	KeyRef           string    `bun:"key_ref,notnull"`
	PayloadDigest    string    `bun:"payload_digest,notnull"`
	RegistryVersion  string    `bun:"registry_version,notnull"`
	SubjectHMAC      string    `bun:"subject_hmac,notnull"`
	PrevHash         string    `bun:"prev_hash,notnull"`
	Hash             string    `bun:"hash,notnull"`
}

// headRow holds the head of one chain: row id 1 is chain 0 (the single
// chain of a log that never forked), row c+1 chain c. Its row lock
// serialises the batch writers of that chain across instances.
type headRow struct {
	bun.BaseModel `bun:"table:audit_head"`

	ID   int64  `bun:"id,pk"`
	Seq  int64  `bun:"seq,notnull"`
	Hash string `bun:"hash,notnull"`
}

// chainsRow is the single row (id 1) of audit_chains: the number of chains
// and the sequence of the entry they forked from.
type chainsRow struct {
	bun.BaseModel `bun:"table:audit_chains"`

	ID      int64 `bun:"id,pk"`
	Chains  int64 `bun:"chains,notnull"`
	ForkSeq int64 `bun:"fork_seq,notnull"`
}

// checkpointRow is a signed checkpoint: JWS over {sequence, head}.
type checkpointRow struct {
	bun.BaseModel `bun:"table:audit_checkpoints"`

	Seq  int64     `bun:"seq,pk"`
	Head string    `bun:"head,notnull"`
	At   time.Time `bun:"at,notnull"`
	JWS  string    `bun:"jws,notnull"`
}

// archiveRow records one retention archive: the signed manifest and the
// anchor from which the retained chain continues.
type archiveRow struct {
	bun.BaseModel `bun:"table:audit_archives"`

	ToSeq      int64     `bun:"to_seq,pk"`
	FromSeq    int64     `bun:"from_seq,notnull"`
	AnchorHash string    `bun:"anchor_hash,notnull"`
	At         time.Time `bun:"at,notnull"`
	Manifest   string    `bun:"manifest,notnull"`
}

func toRow(e *Entry) entryRow {
	return entryRow{
		Seq: e.Sequence, At: e.Time, Event: string(e.Event), RequestID: e.RequestID,
		Source: e.Source, Recipient: e.Recipient, RecipientCountry: e.RecipientCountry,
		Origin: e.Origin, Purpose: e.Purpose, Dataset: e.Dataset, Decision: e.Decision,
		Reasons: mustJSON(e.Reasons), LegalBasis: e.LegalBasis, AgreementID: e.AgreementID,
		AgreementVersion: e.AgreementVersion, Mechanism: e.Mechanism,
		CategoriesSent: mustJSON(e.CategoriesSent), FieldsRemoved: mustJSON(e.FieldsRemoved),
		KeyRef: e.KeyRef, PayloadDigest: e.PayloadDigest, RegistryVersion: e.RegistryVersion,
		SubjectHMAC: e.SubjectHMAC, PrevHash: e.PrevHash, Hash: e.Hash,
	}
}

func (r *entryRow) entry() (Entry, error) {
	e := Entry{
		Sequence: r.Seq, Time: r.At.UTC(), Event: Event(r.Event), RequestID: r.RequestID,
		Source: r.Source, Recipient: r.Recipient, RecipientCountry: r.RecipientCountry,
		Origin: r.Origin, Purpose: r.Purpose, Dataset: r.Dataset, Decision: r.Decision,
		LegalBasis: r.LegalBasis, AgreementID: r.AgreementID, AgreementVersion: r.AgreementVersion,
		Mechanism: r.Mechanism, KeyRef: r.KeyRef, PayloadDigest: r.PayloadDigest,
		RegistryVersion: r.RegistryVersion, SubjectHMAC: r.SubjectHMAC,
		PrevHash: r.PrevHash, Hash: r.Hash,
	}
	if err := json.Unmarshal([]byte(r.Reasons), &e.Reasons); err != nil {
		return e, fmt.Errorf("audit: entry %d reasons: %w", r.Seq, err)
	}
	if err := json.Unmarshal([]byte(r.CategoriesSent), &e.CategoriesSent); err != nil {
		return e, fmt.Errorf("audit: entry %d categories: %w", r.Seq, err)
	}
	if err := json.Unmarshal([]byte(r.FieldsRemoved), &e.FieldsRemoved); err != nil {
		return e, fmt.Errorf("audit: entry %d fields removed: %w", r.Seq, err)
	}
	return e.clone(), nil
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic("audit: encode: " + err.Error())
	}
	return string(b)
}

// entryColumns and values list the columns of audit_entries in one order, for
// the hand-built single-statement insert on PostgreSQL (see fastInsert).
const entryColumns = "seq, at, event, request_id, source, recipient, recipient_country, origin, " +
	"purpose, dataset, decision, reasons, legal_basis, agreement_id, agreement_version, mechanism, " +
	"categories_sent, fields_removed, key_ref, payload_digest, registry_version, subject_hmac, prev_hash, hash"

func (r *entryRow) values(seq any) []any {
	return []any{seq, r.At, r.Event, r.RequestID, r.Source, r.Recipient, r.RecipientCountry, r.Origin,
		r.Purpose, r.Dataset, r.Decision, r.Reasons, r.LegalBasis, r.AgreementID, r.AgreementVersion,
		r.Mechanism, r.CategoriesSent, r.FieldsRemoved, r.KeyRef, r.PayloadDigest, r.RegistryVersion,
		r.SubjectHMAC, r.PrevHash, r.Hash}
}
