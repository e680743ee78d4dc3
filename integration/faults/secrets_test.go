package faults

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestServeKeepsSecrets runs `clearance serve` with its secrets given by
// environment variable and by file (the Vault token, the audit HMAC key,
// the Postgres password) and searches everything it prints, running and
// failing, for them.
func TestServeKeepsSecrets(t *testing.T) {
	w := startWorld(t, 0, "")
	base, err := os.ReadFile(w.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	pgPassword := "pg-secret-" + time.Now().Format("150405.000000")
	pwFile := filepath.Join(w.dir, "pg-password")
	if err := os.WriteFile(pwFile, []byte(pgPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hmacKey := "env-subject-hmac-secret-key-" + time.Now().Format("150405.000000") // at least 32 bytes
	env := []string{"FAULTS_VAULT_TOKEN=" + w.vault.Token, "FAULTS_HMAC=" + hmacKey}
	secrets := []string{w.vault.Token, hmacKey, pgPassword}

	cfg := regexp.MustCompile(`token_file: "[^"]*"`).ReplaceAllString(string(base), "token_env: FAULTS_VAULT_TOKEN")
	cfg = regexp.MustCompile(`hmac_key: \{file: "[^"]*"\}`).ReplaceAllString(cfg, "hmac_key: {env: FAULTS_HMAC}")
	cfg = strings.Replace(cfg, "store: {dsn: ", "store: {password: {file: "+pwFile+"}, dsn: ", 1)
	if cfg == string(base) || !strings.Contains(cfg, "token_env") || !strings.Contains(cfg, "FAULTS_HMAC") {
		t.Fatalf("config not rewritten:\n%s", cfg)
	}
	path := filepath.Join(w.dir, "secrets.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	t.Run("running", func(t *testing.T) {
		c := newChild(t, w.bin, path, freeAddr(t), env)
		get(t, c.api+"/readyz", nil)
		c.terminate()
		scan(t, c.Log(), secrets)
	})
	failing := []struct {
		name string
		edit func(string) string
	}{
		{"vault unreachable", func(s string) string {
			return strings.Replace(s, "http://"+w.vaultNet.Addr(), "http://"+freeAddr(t), 1)
		}},
		{"vault refuses the token", func(s string) string { return s }},
		{"postgres unreachable", func(s string) string {
			return regexp.MustCompile(`127\.0\.0\.1:\d+/postgres`).ReplaceAllString(s, freeAddr(t)+"/postgres")
		}},
		{"bad config key", func(s string) string { return s + "surprise: {password: hunter2}\n" }},
	}
	for _, f := range failing {
		t.Run(f.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(p, []byte(f.edit(cfg)), 0o600); err != nil {
				t.Fatal(err)
			}
			runEnv := env
			if f.name == "vault refuses the token" {
				runEnv = []string{"FAULTS_VAULT_TOKEN=wrong-" + w.vault.Token, "FAULTS_HMAC=" + hmacKey}
			}
			var out bytes.Buffer
			cmd := exec.CommandContext(t.Context(), w.bin, "serve", "--config", p)
			cmd.Env = append(filterEnv(os.Environ(), "CLEARANCE_"), append(runEnv, "CLEARANCE_HTTP_LISTEN="+freeAddr(t))...)
			cmd.Stdout, cmd.Stderr = &out, &out
			done := make(chan error, 1)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				if err == nil {
					t.Errorf("serve exited 0:\n%s", out.String())
				}
			case <-time.After(60 * time.Second):
				_ = cmd.Process.Kill()
				<-done
				t.Errorf("serve did not give up within 60s:\n%s", tail(out.String(), 2048))
			}
			scan(t, out.String(), append(secrets, "wrong-"+w.vault.Token, "hunter2"))
			t.Logf("%s: %s", f.name, lastLine(out.String()))
		})
	}
}

func scan(t *testing.T, out string, secrets []string) {
	t.Helper()
	if out == "" {
		t.Error("nothing printed: the scan would prove nothing")
	}
	for _, s := range secrets {
		if strings.Contains(out, s) {
			t.Errorf("the output holds a secret (%d characters)", len(s))
		}
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return tail(lines[len(lines)-1], 300)
}
