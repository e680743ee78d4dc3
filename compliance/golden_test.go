package compliance_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clearance-broker/clearance/compliance"
	"github.com/clearance-broker/clearance/compliance/compliancetest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// TestGoldenROPA pins the records of processing of the example registry and
// requests, as JSON and CSV: compliance teams file and diff them.
func TestGoldenROPA(t *testing.T) {
	f := compliancetest.New(t)
	f.Seed(t, 1)
	c := client{t: t, base: f.HTTP.URL, token: f.Token(t, compliance.RoleViewer)}
	tests := []struct {
		name, query, file string
	}{
		{"json", "format=json", "ropa.json"},
		{"csv", "format=csv", "ropa.csv"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, got := c.get("/v1/reports/ropa?from=2026-10-01&to=2026-12-01&" + tt.query)
			if code != 200 {
				t.Fatalf("%d %s", code, got)
			}
			if tt.name == "json" {
				var v any
				if err := json.Unmarshal(got, &v); err != nil {
					t.Fatal(err)
				}
			}
			path := filepath.Join("testdata", tt.file)
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%s differs from the golden file; if intended, run go test -update\n got: %.400s", path, got)
			}
		})
	}
}

// TestROPACSVFormulas: no cell of the records of processing in CSV is left
// for a spreadsheet to run as a formula.
func TestROPACSVFormulas(t *testing.T) {
	r := &compliance.ROPA{Purposes: []compliance.ProcessingRecord{{Purpose: "=HYPERLINK(\"http://attacker.invalid/\")", LegalBasis: "contract",
		Recipients: []compliance.ROPARecipient{{ID: "-partner", Role: "processor", Country: "DE"}}}}}
	var b bytes.Buffer
	if err := r.WriteCSV(&b); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&b).ReadAll()
	if err != nil || len(rows) != 2 {
		t.Fatalf("csv: %q, %v", rows, err)
	}
	if rows[1][0] != "'"+r.Purposes[0].Purpose || !strings.HasPrefix(rows[1][4], "'-partner") {
		t.Errorf("purpose, recipients = %q, %q", rows[1][0], rows[1][4])
	}
}
