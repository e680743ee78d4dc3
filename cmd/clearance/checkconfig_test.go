package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckConfigPastedSecrets: serve --check-config said OK to a Postgres
// DSN in libpq's keyword form, which serve then opened as a SQLite file of
// that name, and repeated a token pasted into vault.auth.token_env and a
// key pasted into audit.hmac_key's file. It refuses each, naming its key,
// and shows none of them.
func TestCheckConfigPastedSecrets(t *testing.T) {
	const (
		token = "hvs.CAESIJ1234abcdEFGH5678"
		key   = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	)
	dir := t.TempDir()
	t.Chdir(dir)
	path := filepath.Join(dir, "clearance.yaml")
	cfg := "nats: {urls: [nats://127.0.0.1:4222]}\n" +
		"store: {dsn: \"host=pg.internal user=clearance password=hunter2 dbname=clearance\"}\n" +
		"vault: {address: \"https://vault.internal:8200\", auth: {token_env: " + token + "}}\n" +
		"audit: {hmac_key: {file: " + key + "}}\n" +
		"registry: {dir: " + dir + "}\n"
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	if c := run(t.Context(), []string{"serve", "--config", path, "--check-config"}, &out, &out); c != 2 {
		t.Errorf("exit %d, want 2", c)
	}
	for _, want := range []string{
		"store.dsn: reads as a libpq keyword DSN",
		"store.dsn: holds a literal password; give it by reference in store.password",
		"vault.auth.token_env: must be an environment variable name",
		"audit.hmac_key: cannot read the secret file (no such file or directory): the value does not look like a file path",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	for _, secret := range []string{"hunter2", "CAESIJ", key} {
		if strings.Contains(out.String(), secret) {
			t.Errorf("the output shows %q:\n%s", secret, out.String())
		}
	}
	if files, _ := os.ReadDir(dir); len(files) != 1 {
		t.Errorf("files beside the configuration: %v", files)
	}
}
