package audit

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// pgBatchInsert is the statement fastInsert prepares once per connection: it
// moves the head of row $5 from ($3, $4) to ($1, $2) in a data-modifying CTE
// and inserts the batch from one array per column ($6 on, in entryColumns
// order), unnested into rows. Each row's sequence is kept only if the CTE
// moved the head; if another writer moved it first the sequences are NULL
// and the whole statement fails on the NOT NULL of seq. Sent as a prepared
// statement with array parameters, a batch costs the server neither a parse
// nor a plan of thousands of literals, whatever its size.
var pgBatchInsert = func() string {
	cols := strings.Split(entryColumns, ", ")
	params := make([]string, len(cols))
	sel := make([]string, len(cols))
	for i, c := range cols {
		params[i] = fmt.Sprintf("$%d::%s[]", i+6, pgColumnType(c))
		sel[i] = "u." + c
	}
	sel[0] = "CASE WHEN (SELECT moved FROM h) THEN u.seq END"
	return "WITH h AS (UPDATE audit_head SET seq = $1, hash = $2 WHERE id = $5 AND seq = $3 AND hash = $4 RETURNING true AS moved) " +
		"INSERT INTO audit_entries (" + entryColumns + ") SELECT " + strings.Join(sel, ", ") +
		" FROM unnest(" + strings.Join(params, ", ") + ") AS u(" + entryColumns + ")"
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

// batchArgs returns the arguments of pgBatchInsert for rows chained from
// head to next in chain c: the head's new and expected values and its row,
// then one array literal per column of audit_entries.
func batchArgs(rows []entryRow, c int, head, next headRow) []any {
	args := make([]any, 5, 5+strings.Count(entryColumns, ",")+1)
	args[0], args[1], args[2], args[3], args[4] = next.Seq, next.Hash, head.Seq, head.Hash, int64(c+1)
	var cols [][]byte
	for i := range rows {
		for c, v := range rows[i].values(rows[i].Seq) {
			if i == 0 {
				cols = append(cols, make([]byte, 0, 80*len(rows)))
				cols[c] = append(cols[c], '{')
			} else {
				cols[c] = append(cols[c], ',')
			}
			cols[c] = appendArrayElem(cols[c], v)
		}
	}
	for _, b := range cols {
		args = append(args, string(append(b, '}')))
	}
	return args
}

// appendArrayElem appends v as an element of a PostgreSQL array literal:
// numbers bare, times and text double-quoted with '"' and '\' escaped.
// Entries hold no NUL bytes (Entry.validate).
func appendArrayElem(b []byte, v any) []byte {
	switch v := v.(type) {
	case int64:
		return strconv.AppendInt(b, v, 10)
	case int:
		return strconv.AppendInt(b, int64(v), 10)
	case time.Time:
		b = append(b, '"')
		b = v.UTC().AppendFormat(b, "2006-01-02 15:04:05.999999-07:00")
		return append(b, '"')
	case string:
		b = append(b, '"')
		for i := 0; i < len(v); i++ {
			if v[i] == '"' || v[i] == '\\' {
				b = append(b, '\\')
			}
			b = append(b, v[i])
		}
		return append(b, '"')
	}
	panic(fmt.Sprintf("audit: no array encoding for %T", v))
}
