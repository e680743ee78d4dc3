// Package csvsafe keeps a spreadsheet from taking a cell of a CSV file that
// Clearance writes for people (the audit export, the records of processing)
// for a formula. Producers choose request ids, sources and the names of
// recipients and purposes a refused request gives, and all of them reach
// those files: a request id "=HYPERLINK(...)" would otherwise run as a
// formula in the compliance officer's spreadsheet (CSV injection).
package csvsafe

// Cell returns s, or s behind an apostrophe when s starts with a character
// a spreadsheet reads as the start of a formula: =, +, -, @, a tab or a
// carriage return. Spreadsheets show the apostrophe's cell as the text
// after it; a program reading the file sees the apostrophe, so a file meant
// for programs is better taken as JSON lines, written as stored.
func Cell(s string) string {
	if s == "" {
		return s
	}
	switch s[0] {
	case '=', '+', '-', '@', '\t', '\r':
		return "'" + s
	}
	return s
}

// Row applies Cell to every cell of row, in place, and returns row.
func Row(row []string) []string {
	for i, c := range row {
		row[i] = Cell(c)
	}
	return row
}
