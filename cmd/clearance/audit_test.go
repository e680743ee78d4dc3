package main

import (
	"bytes"
	"context"
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
	signer, err := audit.GenerateLocalSigner()
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := signer.JWKS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	jwksFile := filepath.Join(dir, "jwks.json")
	otherSigner, _ := audit.GenerateLocalSigner()
	otherJWKS, _ := otherSigner.JWKS(ctx)
	otherFile := filepath.Join(dir, "other.json")
	for name, b := range map[string][]byte{keyFile: append(key, '\n'), jwksFile: jwks, otherFile: otherJWKS} {
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
