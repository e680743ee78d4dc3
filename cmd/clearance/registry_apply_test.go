package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clearance-broker/clearance/broker/brokertest"
)

func TestRegistryApply(t *testing.T) {
	root, _ := filepath.Abs(filepath.Join("..", ".."))
	dir := t.TempDir()
	hmacFile := filepath.Join(dir, "hmac")
	if err := os.WriteFile(hmacFile, []byte("apply-test-subject-hmac-key-0001\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ns := brokertest.StartNATS(t)
	regDir := brokertest.RekeyedRegistry(t, root, []byte(`{"kty":"EC","crv":"P-256","x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4","y":"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM","kid":"k1"}`))
	cfgPath := filepath.Join(dir, "clearance.yaml")
	cfg := fmt.Sprintf(`
nats: {urls: [%q]}
store: {dsn: %q}
dev_keyring: {path: %q}
audit: {hmac_key: {file: %q}}
registry: {dir: %q}
http: {listen: "127.0.0.1:0"}
logging: {format: json, level: warn}
`, ns.ClientURL(), "sqlite://"+filepath.Join(dir, "store.db"), filepath.Join(dir, "ring.json"), hmacFile, regDir)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	broken := t.TempDir()
	if err := os.WriteFile(filepath.Join(broken, "a.yaml"), []byte("purposes:\n  - id: x\n    legal_basis: whim\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		code int
		out  string
	}{
		{"first apply", []string{"registry", "apply", "--config", cfgPath, regDir}, 0, "applied: event 1, registry version sha256:"},
		{"same content", []string{"registry", "apply", "--config", cfgPath, regDir}, 0, "unchanged: version sha256:"},
		{"lint problems", []string{"registry", "apply", "--config", cfgPath, broken}, 1, "legal_basis"},
		{"no config", []string{"registry", "apply", regDir}, 2, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr syncBuffer
			if code := run(t.Context(), tt.args, &stdout, &stderr); code != tt.code {
				t.Fatalf("exit %d, want %d\n%s%s", code, tt.code, stdout.String(), stderr.String())
			}
			if !strings.Contains(stdout.String(), tt.out) {
				t.Fatalf("stdout %q lacks %q", stdout.String(), tt.out)
			}
			// The dates that need attention follow, whatever the day: the
			// example keeps a suspended agreement.
			if note := "agreement dpa-fastfreight-returns v1: not_active: its status is suspended"; tt.code == 0 && !strings.Contains(stdout.String(), note) {
				t.Fatalf("stdout %q lacks %q", stdout.String(), note)
			}
		})
	}
}
