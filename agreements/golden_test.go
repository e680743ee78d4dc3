package agreements

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// goldenAt is the fixed decision time of the golden files.
const goldenAt = "2026-11-28T00:00:00Z"

// TestGoldenExamples decides every example request against the example
// registry and compares the decision JSON with testdata/golden. The
// decision JSON is a format the broker, the audit log and compliance teams
// depend on; run `go test ./agreements -run Golden -update` after an
// intended change.
func TestGoldenExamples(t *testing.T) {
	reg, err := Load("../examples/registry")
	if err != nil {
		t.Fatalf("example registry: %v", err)
	}
	engine := NewEngine(reg)
	at := mustTime(t, goldenAt)
	files, err := filepath.Glob("../examples/requests/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no example requests: %v", err)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".json")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			reqs, err := ParseRequests(data)
			if err != nil {
				t.Fatalf("example request: %v", err)
			}
			var out any
			decisions := make([]*Decision, len(reqs))
			for i, req := range reqs {
				decisions[i] = engine.Decide(req, at)
			}
			out = decisions
			if bytes.TrimSpace(data)[0] != '[' {
				out = decisions[0]
			}
			got, err := json.MarshalIndent(out, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			path := filepath.Join("testdata", "golden", name+".json")
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("golden file (run with -update to create): %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("decision differs from %s (run with -update after an intended change)\ngot:\n%s\nwant:\n%s", path, got, want)
			}
		})
	}
}

func TestDecisionJSONShape(t *testing.T) {
	d := &Decision{RequestID: "r", Decision: Deny, At: mustTime(t, "2026-11-28T01:02:03+01:00")}
	got, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"request_id":"r","decision":"deny","reasons":[],"legal_basis":null,"agreement":null,"mechanism":null,` +
		`"fields":{"kept":[],"removed":{}},"registry_version":"","at":"2026-11-28T00:02:03Z"}`
	if string(got) != want {
		t.Errorf("JSON =\n%s\nwant\n%s", got, want)
	}
}
