package audit

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/clearance-broker/clearance/internal/csvsafe"
)

// Format is an export format.
type Format string

// The export formats.
const (
	// FormatJSONL writes one entry JSON object per line.
	FormatJSONL Format = "jsonl"
	// FormatCSV writes a header row and one row per entry; lists and maps are
	// JSON inside their cell, and a cell a spreadsheet would take for a
	// formula (starting with =, +, -, @, a tab or a carriage return) is
	// written behind an apostrophe (csvsafe.Cell).
	FormatCSV Format = "csv"
)

// ErrUnknownFormat is returned by Export for a format it does not write.
var ErrUnknownFormat = errors.New("audit: unknown export format")

// csvHeader is the CSV column order: the entry's JSON names.
var csvHeader = []string{
	"sequence", "time", "event", "request_id", "source", "recipient", "recipient_country",
	"origin_jurisdiction", "purpose", "dataset", "decision", "reasons", "legal_basis",
	"agreement_id", "agreement_version", "mechanism", "categories_sent", "fields_removed",
	"key_ref", "payload_digest", "registry_version", "subject_hmac", "prev_hash", "hash",
}

// csvRecord is e's row, each cell kept from being read as a formula
// (csvsafe): a request id, source, recipient or purpose is the producer's.
func csvRecord(e *Entry) []string {
	return csvsafe.Row([]string{
		strconv.FormatInt(e.Sequence, 10), e.Time.Format(time.RFC3339Nano), string(e.Event),
		e.RequestID, e.Source, e.Recipient, e.RecipientCountry, e.Origin, e.Purpose, e.Dataset,
		e.Decision, mustJSON(e.Reasons), e.LegalBasis, e.AgreementID,
		strconv.Itoa(e.AgreementVersion), e.Mechanism, mustJSON(e.CategoriesSent),
		mustJSON(e.FieldsRemoved), e.KeyRef, e.PayloadDigest, e.RegistryVersion,
		e.SubjectHMAC, e.PrevHash, e.Hash,
	})
}

// Export streams the entries matching f to w in format, row by row, and
// returns how many it wrote.
func (l *Log) Export(ctx context.Context, w io.Writer, format Format, f Filter) (int64, error) {
	bw := bufio.NewWriter(w)
	var n int64
	var write func(*Entry) error
	switch format {
	case FormatJSONL:
		enc := json.NewEncoder(bw)
		write = func(e *Entry) error { return enc.Encode(e) }
	case FormatCSV:
		cw := csv.NewWriter(bw)
		if err := cw.Write(csvHeader); err != nil {
			return 0, fmt.Errorf("audit: export: %w", err)
		}
		write = func(e *Entry) error {
			if err := cw.Write(csvRecord(e)); err != nil {
				return err
			}
			cw.Flush()
			return cw.Error()
		}
	default:
		return 0, fmt.Errorf("%w: %q", ErrUnknownFormat, format)
	}
	err := l.Scan(ctx, f, func(e *Entry) error {
		if err := write(e); err != nil {
			return fmt.Errorf("audit: export: %w", err)
		}
		n++
		return nil
	})
	if err != nil {
		return n, err
	}
	if err := bw.Flush(); err != nil {
		return n, fmt.Errorf("audit: export: %w", err)
	}
	return n, nil
}
