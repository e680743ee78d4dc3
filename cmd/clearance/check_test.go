package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	exampleRegistry = "../../examples/registry"
	exampleRequest  = "../../examples/requests/01-delivery-eea-allow.json"
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCheckExitCodes(t *testing.T) {
	badRegistry := filepath.Dir(writeFile(t, "r.yaml", "parties:\n  - {id: x, country: XX}\n"))
	malformed := writeFile(t, "bad.json", `{"id": "r", "source": "s", "recipient": 5}`)
	denied := "../../examples/requests/06-delivery-brazil-no-mechanism.json"
	tests := []struct {
		name       string
		give       []string
		wantCode   int
		wantOut    string
		wantStderr string
	}{
		{"allowed decision", []string{"--registry", exampleRegistry, "--request", exampleRequest, "--at", "2026-11-28T00:00:00Z"}, 0, `"decision": "allow"`, ""},
		{"denied decision still exits 0", []string{"--registry", exampleRegistry, "--request", denied, "--at", "2026-11-28T00:00:00Z"}, 0, `"no_transfer_mechanism"`, ""},
		{"array in, array out", []string{"--registry", exampleRegistry, "--request", "../../examples/requests/24-batch.json", "--at", "2026-11-28T00:00:00Z"}, 0, "[\n  {", ""},
		{"missing flags", []string{"--registry", exampleRegistry}, 2, "", "--registry and --request are required"},
		{"bad time", []string{"--registry", exampleRegistry, "--request", exampleRequest, "--at", "yesterday"}, 2, "", "--at: want an RFC 3339 time"},
		{"bad registry", []string{"--registry", badRegistry, "--request", exampleRequest}, 2, "", "parties[0].country: invalid country code"},
		{"missing request file", []string{"--registry", exampleRegistry, "--request", "/nonexistent.json"}, 2, "", "read request"},
		{"malformed request names the field", []string{"--registry", exampleRegistry, "--request", malformed}, 2, "", "invalid_request: recipient: want a string"},
		{"unknown flag", []string{"--registry", exampleRegistry, "--request", exampleRequest, "--verbose"}, 2, "", "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(t.Context(), append([]string{"check"}, tt.give...), &stdout, &stderr)
			if code != tt.wantCode {
				t.Errorf("exit code = %d, want %d; stderr: %s", code, tt.wantCode, stderr.String())
			}
			if !strings.Contains(stdout.String(), tt.wantOut) {
				t.Errorf("stdout does not contain %q:\n%s", tt.wantOut, stdout.String())
			}
			if !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Errorf("stderr does not contain %q:\n%s", tt.wantStderr, stderr.String())
			}
		})
	}
}

func TestCheckOutputIsTheDecisionJSON(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run(t.Context(), []string{"check", "--registry", exampleRegistry, "--request", exampleRequest, "--at", "2026-11-28T00:00:00Z"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	var got map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
		t.Fatalf("output is not JSON: %v", err)
	}
	for _, key := range []string{"request_id", "decision", "reasons", "legal_basis", "agreement", "mechanism", "fields", "registry_version", "at"} {
		if _, ok := got[key]; !ok {
			t.Errorf("decision JSON lacks %q", key)
		}
	}
	if got["at"] != "2026-11-28T00:00:00Z" {
		t.Errorf("at = %v", got["at"])
	}
}

func TestRegistryLint(t *testing.T) {
	broken := filepath.Dir(writeFile(t, "r.yaml", "parties:\n  - {id: x, name: X, role: courier, country: XX, connector: c}\npurposes:\n  - {id: p, legal_basis: whim}\n"))
	tests := []struct {
		name     string
		give     []string
		wantCode int
		wantOut  []string
	}{
		{"example registry is clean", []string{"lint", exampleRegistry}, 0, []string{"ok: 1 zones", "version: sha256:"}},
		{"every problem is printed", []string{"lint", broken}, 1, []string{"r.yaml:2: parties[0].role", "r.yaml:2: parties[0].country", "r.yaml:4: purposes[0].legal_basis"}},
		{"dates that need attention", []string{"lint", "--at", "2026-12-02", exampleRegistry}, 0, []string{
			"7 date(s) need attention on 2026-12-02 (they do not fail the lint):\n" +
				"  " + filepath.Join(exampleRegistry, "40-agreements.yaml") + ":49: agreement scc-cargolink-us v1: tia_review_within_30_days: its transfer impact assessment TIA-2025-04 is due for review on 2026-12-31 (in 29 days)\n" +
				"  " + filepath.Join(exampleRegistry, "40-agreements.yaml") + ":64: agreement scc-shipfast-in v1: tia_overdue: its transfer impact assessment TIA-2025-11 was due for review on 2026-06-30 (155 days ago); it carries no transfer until reviewed\n",
			"40-agreements.yaml:90: agreement dpa-swiftship-returns-2023 v1: expired: its last valid day was 2025-12-31 (336 days ago)",
			"40-agreements.yaml:99: agreement dpa-fastfreight-returns v1: not_active: its status is suspended",
			"40-agreements.yaml:134: agreement sharing-promoreach v1: expires_within_30_days: its last valid day is 2026-12-31 (in 29 days)",
			"50-subjects.yaml:40: legal order order-2026-113: expires_within_30_days: its last valid day is 2026-12-31 (in 29 days)"}},
		{"the day after", []string{"lint", "--at", "2027-01-01T08:00:00Z", exampleRegistry}, 0, []string{
			"agreement scc-cargolink-us v1: tia_overdue: its transfer impact assessment TIA-2025-04 was due for review on 2026-12-31 (1 day ago)",
			"legal order order-2026-113: expired: its last valid day was 2026-12-31 (1 day ago)"}},
		{"categories beyond a transfer mechanism", []string{"lint", filepath.Join("..", "..", "agreements", "testdata", "engine")}, 0, []string{
			"3 case(s) of an agreement permitting categories the transfer mechanism of the same party and purpose does not list (they do not fail the lint):\n",
			"registry.yaml:65: agreement s-dpa-pref v1: categories_beyond_mechanism: lets p-us (US) receive identity.name for delivery, which scc scc-us v1 (",
			"registry.yaml:39: agreement a-de v1: categories_beyond_mechanism: lets p-sg (SG) receive financial.payment, identity.name for delivery, which bcr bcr-sg v1 ("}},
		{"a day that is none", []string{"lint", "--at", "tomorrow", exampleRegistry}, 2, nil},
		{"no directory", []string{"lint"}, 2, nil},
		{"no subcommand", nil, 2, nil},
		{"apply is not in this build", []string{"apply", exampleRegistry}, 2, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(t.Context(), append([]string{"registry"}, tt.give...), &stdout, &stderr)
			if code != tt.wantCode {
				t.Errorf("exit code = %d, want %d; stderr: %s", code, tt.wantCode, stderr.String())
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("stdout does not contain %q:\n%s", w, stdout.String())
				}
			}
			if len(tt.give) > 0 && tt.give[len(tt.give)-1] == exampleRegistry && strings.Contains(stdout.String(), "categories_beyond_mechanism") {
				t.Errorf("the example registry's mechanisms list every category its agreements permit:\n%s", stdout.String())
			}
		})
	}
}
