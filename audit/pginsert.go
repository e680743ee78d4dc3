package audit

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unsafe"
)

// pgBatchInsert is the statement fastInsert prepares once per connection: it
// moves the head of row $5 from ($3, $4) to ($1, $2) in a data-modifying CTE
// and inserts the batch from one array per column ($6 on, in entryColumns
// order), unnested into rows. The head moves only if none of the request ids
// of the last array (the batch's final outcomes) already has a final outcome
// recorded (pgMaybeFinal, looked up as pgRecordedFinals does, one index
// range scan per id). Each row's sequence is kept only if the CTE moved the
// head; if another writer moved it first, or a final outcome is recorded,
// the sequences are NULL and the whole statement fails on the NOT NULL of
// seq, and the writer takes the head lock and looks the outcomes up there.
// Sent as a prepared statement with array parameters, a batch costs the
// server neither a parse nor a plan of thousands of literals, whatever its
// size, and the look-up costs no round trip of its own.
//
// The arrays are unnested in a select list (a ProjectSet node, which makes
// each row as the insert asks for it), not in FROM: unnest in FROM is a
// function scan, which first copies every row of the batch into a
// tuplestore and then reads them back, about 2.7 µs of server time a row
// more (400-row batches into a table with the log's indexes, 50,000 rows,
// four alternating runs: 934 against 798 ms; a plain INSERT ... SELECT of
// the same rows from a table, 771 ms). The arrays are all as long as the
// batch, so the set-returning functions step together.
var pgBatchInsert = func() string {
	cols := strings.Split(entryColumns, ", ")
	params := make([]string, len(cols))
	sel := make([]string, len(cols))
	for i, c := range cols {
		params[i] = fmt.Sprintf("unnest($%d::%s[]) AS %s", i+6, pgColumnType(c), c)
		sel[i] = "u." + c
	}
	sel[0] = "CASE WHEN (SELECT moved FROM h) THEN u.seq END"
	finals := fmt.Sprintf("$%d::text[]", len(cols)+6)
	return "WITH d AS (SELECT 1 FROM unnest(" + finals + ") AS r(id) CROSS JOIN LATERAL " +
		"(SELECT 1 FROM audit_entries WHERE request_id = r.id AND " + pgMaybeFinal + " OFFSET 0) AS e LIMIT 1), " +
		"h AS (UPDATE audit_head SET seq = $1, hash = $2 WHERE id = $5 AND seq = $3 AND hash = $4 AND NOT EXISTS (SELECT 1 FROM d) RETURNING true AS moved) " +
		"INSERT INTO audit_entries (" + entryColumns + ") SELECT " + strings.Join(sel, ", ") +
		" FROM (SELECT " + strings.Join(params, ", ") + ") AS u"
}()

// pgColumnType is the type of the array that carries column c.
func pgColumnType(c string) string {
	switch c {
	case "seq", "agreement_version":
		return "bigint"
	case "at":
		return "timestamptz"
	}
	return "text"
}

// insertStmt returns pgBatchInsert prepared on the lane's connection,
// preparing it on first use. Only the lane's writer goroutine calls it;
// release closes the statement.
func (ln *lane) insertStmt(ctx context.Context) (*sql.Stmt, error) {
	if ln.pgInsert == nil {
		st, err := ln.conn.PrepareContext(ctx, pgBatchInsert)
		if err != nil {
			return nil, fmt.Errorf("prepare insert: %w", err)
		}
		ln.pgInsert = st
	}
	return ln.pgInsert, nil
}

// batchArgs returns the arguments of pgBatchInsert for batch chained from
// head to next in the lane's chain: the head's new and expected values and
// its row, then one array literal per column of audit_entries, in
// entryColumns order, and the request ids of the batch's final outcomes
// when checkFinals (empty otherwise: under the head lock they were looked
// up already).
//
// The literals are built in the lane's column buffers, reused from batch to
// batch, and the arguments are strings over those buffers, not copies: the
// caller must be done with them (ExecContext has returned: the driver copies
// its arguments into the message it sends and keeps none) before the next
// batchArgs, and then calls releaseArgs.
func (ln *lane) batchArgs(batch []*pending, head, next headRow, checkFinals bool) []any {
	cols := &ln.cols
	for c := range cols {
		cols[c] = append(cols[c][:0], '{')
	}
	for i, p := range batch {
		if i > 0 {
			for c := range cols {
				cols[c] = append(cols[c], ',')
			}
		}
		e := &p.e
		cols[0] = strconv.AppendInt(cols[0], e.Sequence, 10)
		cols[1] = appendArrayTime(cols[1], e.Time)
		cols[2] = appendArrayText(cols[2], string(e.Event))
		cols[3] = appendArrayText(cols[3], e.RequestID)
		cols[4] = appendArrayText(cols[4], e.Source)
		cols[5] = appendArrayText(cols[5], e.Recipient)
		cols[6] = appendArrayText(cols[6], e.RecipientCountry)
		cols[7] = appendArrayText(cols[7], e.Origin)
		cols[8] = appendArrayText(cols[8], e.Purpose)
		cols[9] = appendArrayText(cols[9], e.Dataset)
		cols[10] = appendArrayText(cols[10], e.Decision)
		cols[11] = appendArrayText(cols[11], p.list(p.lists.reasons))
		cols[12] = appendArrayText(cols[12], e.LegalBasis)
		cols[13] = appendArrayText(cols[13], e.AgreementID)
		cols[14] = strconv.AppendInt(cols[14], int64(e.AgreementVersion), 10)
		cols[15] = appendArrayText(cols[15], e.Mechanism)
		cols[16] = appendArrayText(cols[16], p.list(p.lists.categories))
		cols[17] = appendArrayText(cols[17], p.list(p.lists.fieldsRemoved))
		cols[18] = appendArrayText(cols[18], e.KeyRef)
		cols[19] = appendArrayText(cols[19], e.PayloadDigest)
		cols[20] = appendArrayText(cols[20], e.RegistryVersion)
		cols[21] = appendArrayText(cols[21], e.SubjectHMAC)
		if i == 0 {
			cols[22] = appendArrayText(cols[22], head.Hash)
		} else {
			cols[22] = appendArrayText(cols[22], batch[i-1].hash[:])
		}
		cols[23] = appendArrayText(cols[23], p.hash[:])
	}
	args := append(ln.args[:0], next.Seq, next.Hash, head.Seq, head.Hash, int64(ln.chain+1))
	for c := range cols {
		cols[c] = append(cols[c], '}')
		args = append(args, unsafe.String(unsafe.SliceData(cols[c]), len(cols[c])))
	}
	f := append(ln.finals[:0], '{')
	for _, p := range batch {
		if checkFinals && p.final {
			if len(f) > 1 {
				f = append(f, ',')
			}
			f = appendArrayText(f, p.e.RequestID)
		}
	}
	ln.finals = append(f, '}')
	args = append(args, unsafe.String(unsafe.SliceData(ln.finals), len(ln.finals)))
	ln.args = args
	return args
}

// entryColumnCount is the number of columns in entryColumns.
const entryColumnCount = 24

// releaseArgs drops the arguments batchArgs returned, which alias the
// column buffers, and the buffers that one outsized batch grew.
func (ln *lane) releaseArgs() {
	clear(ln.args)
	for c := range ln.cols {
		if cap(ln.cols[c]) > 16*maxKeptBuffer {
			ln.cols[c] = nil
		}
	}
}

// appendArrayTime appends t as an element of a PostgreSQL array literal:
// double-quoted, in UTC, as "2006-01-02 15:04:05.999999+00:00".
func appendArrayTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	t = t.UTC()
	if n := len(b); t.Nanosecond()%1000 == 0 {
		// time's own RFC 3339 writer is quicker than a layout and, for
		// microseconds in a year of 4 digits, gives the same digits.
		b = t.AppendFormat(b, time.RFC3339Nano)
		if len(b)-n >= len("2006-01-02T15:04:05Z") && b[n+10] == 'T' && b[len(b)-1] == 'Z' {
			b[n+10] = ' '
			b = append(b[:len(b)-1], "+00:00"...)
			return append(b, '"')
		}
		b = b[:n]
	}
	b = t.AppendFormat(b, "2006-01-02 15:04:05.999999-07:00")
	return append(b, '"')
}

// appendArrayText appends s as an element of a PostgreSQL array literal:
// double-quoted with '"' and '\' escaped. Entries hold no NUL bytes
// (Entry.validate).
func appendArrayText[T string | []byte](b []byte, s T) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', c)
			start = i + 1
		}
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
