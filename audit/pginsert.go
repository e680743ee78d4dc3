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
// and inserts the batch from one parameter per column ($6 on, in
// entryColumns order), unnested into rows. The head moves only if none of
// the request ids of the next parameter (a text array: the batch's
// decisions to allow, and its final outcomes where the unique index of
// final outcomes does not refuse a second one by itself) already has a
// final outcome recorded
// (pgMaybeFinal, looked up as pgRecordedFinals does, one index range scan
// per id). The rows are inserted only if the CTE moved the head; if another
// writer moved it first, or a final outcome is recorded, the statement
// inserts nothing (fewer rows affected than the batch holds: see
// insertedAll) and the writer takes the head lock and looks the outcomes up
// there. Nothing fails on that path, so the server logs nothing: the
// statement used to fail on the NOT NULL of seq instead, and the server
// logged an error with the whole row for every batch that lost the race to
// another instance (BENCHMARKS.md, finding 54). A second final outcome
// where the unique index of final outcomes refuses it still fails the
// statement. pgBatchInsertSingle, the statement of a writer that writes
// the log as one chain, moves the head only if audit_chains records no
// fork: a Log opened as one chain that goes on writing after another
// instance forked the log would otherwise write the single chain over the
// other chains' places whenever its batch ends on a sequence of chain 0,
// which the check on audit_head lets through. Its batch then inserts
// nothing, and the locked path reports the fork (lane.forkError); the
// look-up scans the table of at most one row once per statement. Sent as
// a prepared statement, a batch costs the
// server neither a parse nor a plan of thousands of literals, whatever its
// size, and the look-up costs no round trip of its own.
//
// The number and time columns are array literals. Each text column is the
// bytes of its values, each preceded by the batch's delimiter (the last
// parameter, one control character that none of the batch's text holds),
// split by string_to_array; a batch whose text holds every control
// character sends array literals there too, with an empty delimiter. The
// split costs the server a third of what the input of an array literal of
// the same values does (quoted and escaped elements, read twice), and the
// writer builds it without escaping (BENCHMARKS.md, finding 45). The text
// columns are sent as text: the driver copies a text parameter a rune at a
// time, dropping NUL and replacing invalid UTF-8, which changes nothing here
// since newPending refuses an entry holding either. They were sent as bytea,
// which the driver writes in hex and the server decodes, until that
// decoding proved to cost more than the rune copy: as text, the server's
// CPU per entry is 7.6 % less and the appending process's 2.5 % (finding
// 55).
//
// The arrays are unnested in a select list (a ProjectSet node, which makes
// each row as the insert asks for it), not in FROM: unnest in FROM is a
// function scan, which first copies every row of the batch into a
// tuplestore and then reads them back, about 2.7 µs of server time a row
// more (400-row batches into a table with the log's indexes, 50,000 rows,
// four alternating runs: 934 against 798 ms; a plain INSERT ... SELECT of
// the same rows from a table, 771 ms). The arrays are all as long as the
// batch, so the set-returning functions step together.
var (
	pgBatchInsert       = batchInsertSQL(false)
	pgBatchInsertSingle = batchInsertSQL(true)
)

// batchInsertSQL returns pgBatchInsert, or pgBatchInsertSingle if single.
func batchInsertSQL(single bool) string {
	cols := strings.Split(entryColumns, ", ")
	params := make([]string, len(cols))
	sel := make([]string, len(cols))
	delim := fmt.Sprintf("$%d::text", len(cols)+7)
	for i, c := range cols {
		if t := pgColumnType(c); t != "text" {
			params[i] = fmt.Sprintf("unnest($%d::%s[]) AS %s", i+6, t, c)
		} else {
			text := fmt.Sprintf("$%d::text", i+6)
			params[i] = fmt.Sprintf("unnest(CASE WHEN %[1]s = '' THEN %[2]s::text[] ELSE (string_to_array(%[2]s, %[1]s))[2:] END) AS %[3]s",
				delim, text, c)
		}
		sel[i] = "u." + c
	}
	finals := fmt.Sprintf("$%d::text[]", len(cols)+6)
	unforked := ""
	if single {
		unforked = "AND NOT EXISTS (SELECT 1 FROM audit_chains) "
	}
	return "WITH d AS (SELECT 1 FROM unnest(" + finals + ") AS r(id) CROSS JOIN LATERAL " +
		"(SELECT 1 FROM audit_entries WHERE request_id = r.id AND " + pgMaybeFinal + " OFFSET 0) AS e LIMIT 1), " +
		"h AS (UPDATE audit_head SET seq = $1, hash = $2 WHERE id = $5 AND seq = $3 AND hash = $4 AND NOT EXISTS (SELECT 1 FROM d) " + unforked + "RETURNING true AS moved) " +
		"INSERT INTO audit_entries (" + entryColumns + ") SELECT " + strings.Join(sel, ", ") +
		" FROM (SELECT " + strings.Join(params, ", ") + ") AS u WHERE (SELECT moved FROM h)"
}

// batchInsert is the lane's batch statement: pgBatchInsertSingle if it
// writes the log as one chain, else pgBatchInsert.
func (ln *lane) batchInsert() string {
	if ln.l.ly.k == 1 {
		return pgBatchInsertSingle
	}
	return pgBatchInsert
}

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

// insertStmt returns the lane's batch statement (batchInsert) prepared on
// the lane's connection, preparing it on first use. Only the lane's writer goroutine calls it;
// release closes the statement.
func (ln *lane) insertStmt(ctx context.Context) (*sql.Stmt, error) {
	if ln.pgInsert == nil {
		st, err := ln.conn.PrepareContext(ctx, ln.batchInsert())
		if err != nil {
			return nil, fmt.Errorf("prepare insert: %w", err)
		}
		ln.pgInsert = st
	}
	return ln.pgInsert, nil
}

// batchArgs returns the arguments of pgBatchInsert for batch chained from
// head to next in the lane's chain: the head's new and expected values and
// its row, one parameter per column of audit_entries, in entryColumns order,
// the request ids the statement is to look up when look (none otherwise:
// under the head lock dedupe looked them up already): those of the batch's
// decisions to allow, and of its final outcomes unless the unique index of
// final outcomes refuses a second one (finalsIndexed); and the delimiter
// of the text columns.
//
// The columns are built in the lane's column buffers, reused from batch to
// batch, and the arguments are strings and slices over those buffers, not
// copies: the caller must be done with them (ExecContext has returned: the
// driver copies its arguments into the message it sends and keeps none)
// before the next batchArgs, and then calls releaseArgs.
func (ln *lane) batchArgs(batch []*pending, head, next headRow, look bool) []any {
	delim := freeDelim(batch)
	ln.buildColumns(batch, head, delim)
	args := append(ln.args[:0], next.Seq, next.Hash, head.Seq, head.Hash, int64(ln.chain+1))
	for _, col := range ln.cols {
		args = append(args, bstr(col))
	}
	f := append(ln.finals[:0], '{')
	for _, p := range batch {
		if look && (p.opens || p.final && !ln.finalsIndexed) {
			if len(f) > 1 {
				f = append(f, ',')
			}
			f = appendArrayText(f, p.e.RequestID)
		}
	}
	ln.finals = append(f, '}')
	args = append(args, bstr(ln.finals), delimiter(delim))
	ln.args = args
	return args
}

// defaultDelim is the text columns' delimiter unless some text holds it:
// the ASCII unit separator.
const defaultDelim = 0x1f

// delimiters holds the control characters, each at its own value, so that
// a delimiter's string is a slice of it.
const delimiters = "\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f" +
	"\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f"

// delimiter returns d as the statement's delimiter parameter: empty for 0
// (array literals).
func delimiter(d byte) string {
	if d == 0 {
		return ""
	}
	return delimiters[d : d+1]
}

// textColumns tells, by index in entryColumns, the columns of type text.
var textColumns = func() (text [entryColumnCount]bool) {
	for i, c := range strings.Split(entryColumns, ", ") {
		text[i] = pgColumnType(c) == "text"
	}
	return text
}()

// texts returns the values of p's text columns by their index in
// entryColumns (the other places empty), p chained after prev.
func (p *pending) texts(prev string) [entryColumnCount]string {
	e := &p.e
	return [entryColumnCount]string{
		2: string(e.Event), 3: e.RequestID, 4: e.Source, 5: e.Recipient, 6: e.RecipientCountry,
		7: e.Origin, 8: e.Purpose, 9: e.Dataset, 10: e.Decision, 11: bstr(p.list(p.lists.reasons)),
		12: e.LegalBasis, 13: e.AgreementID, 15: e.Mechanism, 16: bstr(p.list(p.lists.categories)),
		17: bstr(p.list(p.lists.fieldsRemoved)), 18: e.KeyRef, 19: e.PayloadDigest, 20: e.RegistryVersion,
		21: e.SubjectHMAC, 22: prev, 23: bstr(p.hash[:]),
	}
}

// prevHash is the hash entry i of batch follows: the head's for the first.
func prevHash(batch []*pending, head headRow, i int) string {
	if i == 0 {
		return head.Hash
	}
	return bstr(batch[i-1].hash[:])
}

// buildColumns writes the batch's values into the lane's column buffers:
// seq, at and agreement_version as array literals, the text columns as each
// value preceded by delim, which no text of the batch holds (freeDelim),
// or, with delim 0, as array literals.
func (ln *lane) buildColumns(batch []*pending, head headRow, delim byte) {
	cols := &ln.cols
	literal := func(c int) bool { return !textColumns[c] || delim == 0 }
	for c := range cols {
		cols[c] = cols[c][:0]
		if literal(c) {
			cols[c] = append(cols[c], '{')
		}
	}
	for i, p := range batch {
		if i > 0 {
			for c := range cols {
				if literal(c) {
					cols[c] = append(cols[c], ',')
				}
			}
		}
		cols[0] = strconv.AppendInt(cols[0], p.e.Sequence, 10)
		cols[1] = appendArrayTime(cols[1], p.e.Time)
		cols[14] = strconv.AppendInt(cols[14], int64(p.e.AgreementVersion), 10)
		for c, s := range p.texts(prevHash(batch, head, i)) {
			switch {
			case !textColumns[c]:
			case delim == 0:
				cols[c] = appendArrayText(cols[c], s)
			default:
				cols[c] = append(append(cols[c], delim), s...)
			}
		}
	}
	for c := range cols {
		if literal(c) {
			cols[c] = append(cols[c], '}')
		}
	}
}

// bstr is b as a string, without a copy; b must not change while it is used.
func bstr(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// freeDelim returns the text columns' delimiter for batch: a control
// character (1 to 31) that no text of the batch holds, defaultDelim unless
// some does, or 0 if they hold them all. Each entry's control bytes were
// noted when its hash body was written.
func freeDelim(batch []*pending) byte {
	var seen uint32
	for _, p := range batch {
		seen |= p.lists.text.Controls()
	}
	for d := byte(defaultDelim); d > 0; d-- {
		if seen&(1<<d) == 0 {
			return d
		}
	}
	return 0
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
