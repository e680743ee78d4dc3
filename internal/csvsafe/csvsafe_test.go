package csvsafe

import (
	"slices"
	"testing"
)

func TestCell(t *testing.T) {
	for give, want := range map[string]string{
		"":                               "",
		"ord-10023":                      "ord-10023",
		`["no_consent"]`:                 `["no_consent"]`,
		"=HYPERLINK(\"http://x\",\"a\")": "'=HYPERLINK(\"http://x\",\"a\")",
		"+49 30 1234567":                 "'+49 30 1234567",
		"-2+3":                           "'-2+3",
		"@SUM(A1:A9)":                    "'@SUM(A1:A9)",
		"\t=1":                           "'\t=1",
		"\r=1":                           "'\r=1",
		"a=1":                            "a=1",
	} {
		if got := Cell(give); got != want {
			t.Errorf("Cell(%q) = %q, want %q", give, got, want)
		}
	}
	row := []string{"1", "=1+1", "x"}
	if got := Row(row); !slices.Equal(got, []string{"1", "'=1+1", "x"}) || &got[0] != &row[0] {
		t.Errorf("Row = %q, want the row changed in place", got)
	}
}
