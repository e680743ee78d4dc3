package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/audit"
)

// TestAuditCommand writes a small SQLite audit log, then runs the audit
// subcommands against it as an operator would.
func TestAuditCommand(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	dsn := "sqlite://" + filepath.Join(dir, "audit.db")
	key := []byte("cli-test-subject-key-0123456789ab")
	keyFile := filepath.Join(dir, "hmac.key")
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := audit.NewLocalSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	signingKey := filepath.Join(dir, "signing.pem")
	archive := filepath.Join(dir, "archive.jsonl")
	jwks, err := signer.JWKS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	jwksFile := filepath.Join(dir, "jwks.json")
	otherSigner, _ := audit.GenerateLocalSigner()
	otherJWKS, _ := otherSigner.JWKS(ctx)
	otherFile := filepath.Join(dir, "other.json")
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	for name, b := range map[string][]byte{keyFile: append(key, '\n'), jwksFile: jwks, otherFile: otherJWKS, signingKey: pemKey} {
		if err := os.WriteFile(name, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	db, err := audit.OpenDB(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.Open(ctx, db, audit.Options{SubjectKey: key, Signer: signer})
	if err != nil {
		t.Fatal(err)
	}
	for i, subject := range []string{"cust-1", "cust-2", "cust-1"} {
		e := &audit.Entry{Event: audit.EventDecided, RequestID: "req-" + string(rune('a'+i)), Recipient: "swiftship-de",
			RecipientCountry: "DE", Decision: "allow", SubjectID: subject, Time: time.Date(2026, 11, 28, i, 0, 0, 0, time.UTC)}
		if _, err := l.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	_ = db.Close()

	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  []string
	}{
		{"verify", []string{"audit", "verify", "--db", dsn, "--jwks", jwksFile}, 0,
			[]string{"OK", "entries checked:     3", "checkpoints checked: 1"}},
		{"verify with the wrong keys", []string{"audit", "verify", "--db", dsn, "--jwks", otherFile}, 1,
			[]string{"TAMPERED", "bad_checkpoint"}},
		{"verify without keys", []string{"audit", "verify", "--db", dsn}, 2, nil},
		{"query by subject", []string{"audit", "query", "--db", dsn, "--hmac-key-file", keyFile, "--subject", "cust-1"}, 0,
			[]string{`"request_id":"req-a"`, `"request_id":"req-c"`}},
		{"query by time", []string{"audit", "query", "--db", dsn, "--since", "2026-11-28T01:00:00Z", "--until", "2026-11-28T02:00:00Z"}, 0,
			[]string{`"request_id":"req-b"`}},
		{"subject without key", []string{"audit", "query", "--db", dsn, "--subject", "cust-1"}, 2, nil},
		{"export csv", []string{"audit", "export", "--db", dsn, "--format", "csv"}, 0,
			[]string{"sequence,time,event", "3,2026-11-28T02:00:00Z,decided,req-c"}},
		{"export bad format", []string{"audit", "export", "--db", dsn, "--format", "xml"}, 2, nil},
		{"no subcommand", []string{"audit"}, 2, nil},
		{"archive", []string{"audit", "archive", "--db", dsn, "--older-than", "1h", "--out", archive, "--signing-key", signingKey}, 0,
			[]string{"archived entries 1 to 3 (3)"}},
		{"verify-archive", []string{"audit", "verify-archive", "--jwks", jwksFile, archive}, 0, []string{"OK"}},
		{"verify-archive with the wrong keys", []string{"audit", "verify-archive", "--jwks", otherFile, archive}, 1, []string{"TAMPERED"}},
		{"verify after archiving", []string{"audit", "verify", "--db", dsn, "--jwks", jwksFile}, 0,
			[]string{"OK", "entries up to 3 archived"}},
		{"archive again", []string{"audit", "archive", "--db", dsn, "--older-than", "1h", "--out", archive + ".2", "--signing-key", signingKey}, 0,
			[]string{"nothing to archive"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(context.Background(), tt.args, &out, &errOut)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d; stderr: %s", code, tt.wantCode, errOut.String())
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
			if strings.Contains(out.String()+errOut.String(), "cust-") {
				t.Error("a subject id appears in clear")
			}
		})
	}
}
