package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/keys"
)

// TestAuditCommand writes a small SQLite audit log, then runs the audit
// subcommands against it as an operator would.
func TestAuditCommand(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	dsn := "sqlite://" + filepath.Join(dir, "audit.db")
	key := []byte("cli-test-subject-key-0123456789ab")
	keyFile := filepath.Join(dir, "hmac.key")
	signer, jwks, kid, _ := testSigningKey(t)
	archive := filepath.Join(dir, "archive.jsonl")
	jwksFile := filepath.Join(dir, "jwks.json")
	otherSigner, _ := audit.GenerateLocalSigner()
	otherJWKS, _ := otherSigner.JWKS(ctx)
	otherFile := filepath.Join(dir, "other.json")
	// The archive is signed with a key of its own, as an operator's would be:
	// verifying the archived log takes the checkpoint keys and its key.
	archiveSigner, archiveJWKS, archiveKid, archivePEM := testSigningKey(t)
	archiveKey, archiveJWKSFile := filepath.Join(dir, "archive.pem"), filepath.Join(dir, "archive-jwks.json")
	// A set holding another key under the checkpoint key's id: a signature
	// checked against it is wrong, not unverifiable.
	forged := regexp.MustCompile(`"kid":"[^"]+"`).ReplaceAll(otherJWKS, []byte(`"kid":"`+kid+`"`))
	forgedFile := filepath.Join(dir, "forged.json")
	for name, b := range map[string][]byte{keyFile: append(key, '\n'), jwksFile: jwks, otherFile: otherJWKS,
		archiveKey: archivePEM, archiveJWKSFile: archiveJWKS, forgedFile: forged} {
		if err := os.WriteFile(name, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeTestLog(t, dsn, key, signer)

	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  []string
	}{
		{"verify", []string{"audit", "verify", "--db", dsn, "--jwks", jwksFile}, 0,
			[]string{"OK", "entries checked:     3", "checkpoints checked: 1"}},
		{"verify with another key set", []string{"audit", "verify", "--db", dsn, "--jwks", otherFile}, 1,
			[]string{"UNVERIFIED", "bad_checkpoint", "signed with key ID \"" + kid + "\", which none of the --jwks sets holds"}},
		{"verify with a forged key", []string{"audit", "verify", "--db", dsn, "--jwks", forgedFile}, 1,
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
		// A device that refuses every write, as a full disk does.
		{"export to a full disk", []string{"audit", "export", "--db", dsn, "--out", "/dev/full", "--force"}, 1, nil},
		{"no subcommand", []string{"audit"}, 2, nil},
		{"archive without keys", []string{"audit", "archive", "--db", dsn, "--older-than", "1h", "--out", archive, "--signing-key", archiveKey}, 2, nil},
		// The log is verified before anything is archived: checkpoints
		// that cannot be authenticated leave it where it is.
		{"archive with another key set", []string{"audit", "archive", "--db", dsn, "--jwks", otherFile, "--older-than", "1h", "--out", archive, "--signing-key", archiveKey}, 1,
			[]string{"nothing archived: the log does not verify", "UNVERIFIED", kid}},
		{"archive", []string{"audit", "archive", "--db", dsn, "--jwks", jwksFile, "--older-than", "1h", "--out", archive, "--signing-key", archiveKey}, 0,
			[]string{"archived entries 1 to 3 (3)"}},
		{"archive key's set", []string{"audit", "archive", "--print-jwks", "--signing-key", archiveKey}, 0, []string{string(archiveJWKS) + "\n"}},
		{"print-jwks without a key", []string{"audit", "archive", "--print-jwks"}, 2, nil},
		{"verify-archive", []string{"audit", "verify-archive", "--jwks", jwksFile, "--jwks", archiveJWKSFile, archive}, 0, []string{"OK"}},
		{"verify-archive without the archive key", []string{"audit", "verify-archive", "--jwks", jwksFile, archive}, 1,
			[]string{"UNVERIFIED", archiveKid}},
		{"verify-archive without the checkpoint keys", []string{"audit", "verify-archive", "--jwks", archiveJWKSFile, archive}, 1,
			[]string{"UNVERIFIED", kid}},
		{"verify-archive with a forged checkpoint key", []string{"audit", "verify-archive", "--jwks", forgedFile + "," + archiveJWKSFile, archive}, 1,
			[]string{"TAMPERED"}},
		{"verify after archiving", []string{"audit", "verify", "--db", dsn, "--jwks", jwksFile + "," + archiveJWKSFile}, 0,
			[]string{"OK", "entries up to 3 archived"}},
		{"verify after archiving without the archive key", []string{"audit", "verify", "--db", dsn, "--jwks", jwksFile}, 1,
			[]string{"UNVERIFIED", archiveKid}},
		// The earlier archive's manifest verifies with the archive key's
		// own set, which archive adds to --jwks.
		{"archive again", []string{"audit", "archive", "--db", dsn, "--jwks", jwksFile, "--older-than", "1h", "--out", archive + ".2", "--signing-key", archiveKey}, 0,
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
	// Whoever runs retention holds its key and the database: a chain
	// sealed with a checkpoint signed by the archive key is refused, also
	// where one --jwks list holds both keys, as before --archive-jwks.
	t.Run("checkpoint signed with the archive key", func(t *testing.T) {
		forgedDir := t.TempDir()
		forgedDSN := "sqlite://" + filepath.Join(forgedDir, "audit.db")
		src, err := os.ReadFile(filepath.Join(dir, "audit.db"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(forgedDir, "audit.db"), src, 0o600); err != nil {
			t.Fatal(err)
		}
		writeTestLog(t, forgedDSN, key, archiveSigner)
		for _, args := range [][]string{
			{"--jwks", jwksFile + "," + archiveJWKSFile},
			{"--jwks", jwksFile, "--jwks", archiveJWKSFile},
		} {
			var out, errOut bytes.Buffer
			code := run(ctx, append([]string{"audit", "verify", "--db", forgedDSN}, args...), &out, &errOut)
			if code != 1 || !strings.Contains(out.String(), "bad_checkpoint") || !strings.Contains(out.String(), "retention key") {
				t.Errorf("verify %v: exit %d\n%s%s", args, code, out.String(), errOut.String())
			}
		}
		var out, errOut bytes.Buffer
		code := run(ctx, []string{"audit", "verify", "--db", forgedDSN, "--jwks", jwksFile, "--archive-jwks", archiveJWKSFile}, &out, &errOut)
		if code != 1 || !strings.Contains(out.String(), archiveKid) {
			t.Errorf("verify --archive-jwks: exit %d\n%s%s", code, out.String(), errOut.String())
		}
	})
	t.Run("sets from the environment", func(t *testing.T) {
		t.Setenv(envAuditJWKS, jwksFile+","+archiveJWKSFile)
		var out, errOut bytes.Buffer
		if code := run(context.Background(), []string{"audit", "verify-archive", archive}, &out, &errOut); code != 0 {
			t.Fatalf("exit %d: %s%s", code, out.String(), errOut.String())
		}
		out.Reset()
		// The flag replaces the environment's list.
		if code := run(context.Background(), []string{"audit", "verify-archive", "--jwks", jwksFile, archive}, &out, &errOut); code != 1 ||
			!strings.Contains(out.String(), "UNVERIFIED") {
			t.Fatalf("exit %d: %s", code, out.String())
		}
	})
}

// testSigningKey returns a local Ed25519 signer, its JWK set and key id, and
// its private key as PKCS #8 PEM (what --signing-key reads).
func testSigningKey(t *testing.T) (*audit.LocalSigner, []byte, string, []byte) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := audit.NewLocalSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := signer.JWKS(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	kid := regexp.MustCompile(`"kid":"([^"]+)"`).FindStringSubmatch(string(jwks))[1]
	return signer, jwks, kid, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// TestAuditDevDir runs the audit commands on the data directory of a
// clearance dev run (--dir), as a newcomer would after a first transfer:
// its audit log, its subject key (written in hex) and its key ring's
// checkpoint keys, with no DSN or key set to find.
func TestAuditDevDir(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	ring, err := keys.NewDevKeyRing(keys.DevKeyRingOptions{Path: filepath.Join(dir, "dev-keyring.json"), Allow: true})
	if err != nil {
		t.Fatal(err)
	}
	key := []byte("dev-subject-key-0123456789abcdef")
	if err := os.WriteFile(filepath.Join(dir, "subject-hmac.key"), []byte(hex.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	writeTestLog(t, "sqlite://"+filepath.Join(dir, "audit.db"), key, ring)
	// The production settings in the environment do not take the place of
	// the directory named.
	t.Setenv(envAuditDB, "sqlite://"+filepath.Join(t.TempDir(), "other.db"))
	t.Setenv(envAuditJWKS, filepath.Join(t.TempDir(), "missing.json"))

	cli := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := run(ctx, args, &out, &errb)
		return code, out.String(), errb.String()
	}
	if code, out, errs := cli("audit", "verify", "--dir", dir); code != 0 || !strings.Contains(out, "OK") || !strings.Contains(out, "checkpoints checked: 1") ||
		!strings.Contains(out, "mirrored copies:     none (this clearance dev data directory holds no copies") {
		t.Fatalf("verify --dir: exit %d\n%s%s", code, out, errs)
	}
	if code, out, errs := cli("audit", "query", "--dir", dir, "--subject", "cust-1"); code != 0 || strings.Count(out, "\n") != 2 {
		t.Fatalf("query --dir --subject: exit %d\n%s%s", code, out, errs)
	}
	// --no-signatures reads no key set: a directory without its key ring
	// is verified all the same, and a key set asked for besides is a
	// mistake.
	keyless := t.TempDir()
	for _, name := range []string{"audit.db", "subject-hmac.key"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(keyless, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if code, out, errs := cli("audit", "verify", "--dir", keyless, "--no-signatures", "--json"); code != 0 || !strings.Contains(out, `"signatures_checked": false`) {
		t.Fatalf("verify --dir --no-signatures without a key ring: exit %d\n%s%s", code, out, errs)
	}
	if code, _, errs := cli("audit", "verify", "--dir", dir, "--no-signatures", "--jwks", filepath.Join(dir, "dev-keyring.json")); code != 2 ||
		!strings.Contains(errs, "--no-signatures checks no signature") {
		t.Fatalf("verify --no-signatures --jwks: exit %d %s", code, errs)
	}
	if code, _, errs := cli("audit", "query", "--dir", t.TempDir()); code != 2 || !strings.Contains(errs, "no audit log in") {
		t.Fatalf("query --dir of an empty directory: exit %d %s", code, errs)
	}
	// A key file is read as clearance serve reads audit.hmac_key's: white
	// space around the key is not part of it.
	keyFile := filepath.Join(dir, "serve-hmac.key")
	if err := os.WriteFile(keyFile, append(append([]byte(" \t"), key...), " \r\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := cli("audit", "query", "--dir", dir, "--hmac-key-file", keyFile, "--subject", "cust-1"); code != 0 || strings.Count(out, "\n") != 2 {
		t.Fatalf("query --hmac-key-file with white space: exit %d\n%s%s", code, out, errs)
	}
	// Archived with a key of its own, the log verifies with the dev run's
	// keys and that key's set, which --jwks adds to them.
	_, archiveJWKS, archiveKid, archivePEM := testSigningKey(t)
	pemFile, jwksFile := filepath.Join(t.TempDir(), "archive.pem"), filepath.Join(t.TempDir(), "archive-jwks.json")
	for path, b := range map[string][]byte{pemFile: archivePEM, jwksFile: archiveJWKS} {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if code, out, errs := cli("audit", "archive", "--dir", dir, "--older-than", "1h", "--out", filepath.Join(t.TempDir(), "a.jsonl"), "--signing-key", pemFile); code != 0 ||
		!strings.Contains(out, "archived entries 1 to 3 (3)") {
		t.Fatalf("archive --dir: exit %d\n%s%s", code, out, errs)
	}
	if code, out, _ := cli("audit", "verify", "--dir", dir); code != 1 || !strings.Contains(out, "UNVERIFIED") || !strings.Contains(out, archiveKid) {
		t.Fatalf("verify --dir without the archive key's set: exit %d\n%s", code, out)
	}
	if code, out, errs := cli("audit", "verify", "--dir", dir, "--jwks", jwksFile); code != 0 || !strings.Contains(out, "entries up to 3 archived") {
		t.Fatalf("verify --dir --jwks: exit %d\n%s%s", code, out, errs)
	}
}

// writeTestLog writes the audit log at dsn: three decisions, two of them
// for subject cust-1, hashed with key, and the checkpoint signer signs on
// closing.
func writeTestLog(t *testing.T, dsn string, key []byte, signer audit.Signer) {
	t.Helper()
	ctx := t.Context()
	db, err := audit.OpenDB(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
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
}

// TestAuditVerifyMissingCheckpoints removes the checkpoints of a log, as a
// thief covering a rewrite would: verify must fail and name the entries
// left unsealed, where it passed with them.
func TestAuditVerifyMissingCheckpoints(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	dsn := "sqlite://" + filepath.Join(dir, "audit.db")
	signer, jwks, _, _ := testSigningKey(t)
	jwksFile := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(jwksFile, jwks, 0o600); err != nil {
		t.Fatal(err)
	}
	writeTestLog(t, dsn, []byte("cli-test-subject-key-0123456789ab"), signer)
	verify := func(args ...string) (int, string) {
		var out, errOut bytes.Buffer
		code := run(ctx, append([]string{"audit", "verify", "--db", dsn, "--jwks", jwksFile}, args...), &out, &errOut)
		return code, out.String() + errOut.String()
	}
	if code, out := verify(); code != 0 || !strings.Contains(out, "OK") || !strings.Contains(out, "unsealed tail:       0 entries") {
		t.Fatalf("before: exit %d\n%s", code, out)
	}
	db, err := audit.OpenDB(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "DELETE FROM audit_checkpoints"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  []string
	}{
		// The entries were written on 2026-11-28, long before now.
		{"tail older than the interval", nil, 1,
			[]string{"UNSEALED: entries 1 to 3 unsealed", "follow the last checkpoint", "checkpoints are missing"}},
		// Within the cadence, an unsealed tail is reported, not failed.
		{"tail within the cadence", []string{"--checkpoint-every", "1", "--checkpoint-interval", "1000000h"}, 0,
			[]string{"OK", "unsealed tail:       3 entries"}},
		{"negative cadence", []string{"--checkpoint-every", "-1"}, 2, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out := verify(tt.args...)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d\n%s", code, tt.wantCode, out)
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if strings.Contains(out, "cust-") || strings.Contains(out, "req-") {
				t.Error("entry content appears in the output")
			}
		})
	}
	// Archive verifies the log first: the manifest it signs would vouch for
	// the unsealed entries it removes, so it archives nothing.
	t.Run("archive refuses the unsealed log", func(t *testing.T) {
		_, _, _, pem := testSigningKey(t)
		keyFile, out := filepath.Join(dir, "archive.pem"), filepath.Join(dir, "archive.jsonl")
		if err := os.WriteFile(keyFile, pem, 0o600); err != nil {
			t.Fatal(err)
		}
		var stdout, stderr bytes.Buffer
		code := run(ctx, []string{"audit", "archive", "--db", dsn, "--jwks", jwksFile, "--older-than", "1h",
			"--out", out, "--signing-key", keyFile}, &stdout, &stderr)
		if code != 1 || !strings.Contains(stdout.String(), "nothing archived: the log does not verify") ||
			!strings.Contains(stdout.String(), "UNSEALED: entries 1 to 3") {
			t.Fatalf("exit %d\n%s%s", code, stdout.String(), stderr.String())
		}
		if _, err := os.Stat(out); !os.IsNotExist(err) {
			t.Errorf("archive file left behind: %v", err)
		}
		var n int
		if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM audit_entries").Scan(&n); err != nil || n != 3 {
			t.Errorf("entries left: %d (%v), want 3", n, err)
		}
	})
}

// TestAuditQueryFlags runs audit query (and export) with each filter flag
// wrong and right: a wrong one is a usage error naming the flag and what it
// takes, as the compliance API's search answers 400.
func TestAuditQueryFlags(t *testing.T) {
	dir := t.TempDir()
	dsn := "sqlite://" + filepath.Join(dir, "audit.db")
	signer, _, _, _ := testSigningKey(t)
	writeTestLog(t, dsn, []byte("cli-test-subject-key-0123456789ab"), signer)
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  []string // on stdout for 0, stderr otherwise
		notOut   []string
	}{
		{"bad decision", []string{"--decision", "maybe"}, 2, []string{"--decision: want allow or deny"}, nil},
		{"country in lower case", []string{"--country", "de"}, 2, []string{"--country: want an ISO 3166 alpha-2 code"}, nil},
		{"country name", []string{"--country", "Germany"}, 2, []string{"--country:"}, nil},
		{"unknown event", []string{"--event", "decidedd"}, 2, []string{"--event: not an event of the audit log", "compliance_api_call"}, nil},
		{"inverted range", []string{"--since", "2026-11-28T02:00:00Z", "--until", "2026-11-28T01:00:00Z"}, 2, []string{"--until: must be after --since"}, nil},
		{"empty range", []string{"--since", "2026-11-28", "--until", "2026-11-28"}, 2, []string{"--until: must be after --since"}, nil},
		{"bad time", []string{"--since", "28/11/2026"}, 2, []string{"--since: want an RFC 3339 time", "or a date"}, nil},
		{"limit 0", []string{"--limit", "0"}, 2, []string{"--limit: want a number of entries, 1 or more"}, nil},
		{"limit -1", []string{"--limit", "-1"}, 2, []string{"--limit:"}, nil},
		{"after -5", []string{"--after", "-5"}, 2, []string{"--after: want a sequence number, 0 or more"}, nil},
		{"date-only since", []string{"--since", "2026-11-28", "--until", "2026-11-28T01:00:00Z"}, 0,
			[]string{`"request_id":"req-a"`}, []string{`"request_id":"req-b"`}},
		{"date-only until", []string{"--until", "2026-11-29"}, 0, []string{`"request_id":"req-a"`, `"request_id":"req-c"`}, nil},
		{"date-only until excludes its day", []string{"--until", "2026-11-28"}, 0, nil, []string{`"request_id"`}},
		{"every valid filter", []string{"--decision", "allow", "--country", "DE", "--event", "decided", "--after", "1", "--limit", "1"}, 0,
			[]string{`"request_id":"req-b"`}, []string{`"request_id":"req-a"`, `"request_id":"req-c"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(context.Background(), append([]string{"audit", "query", "--db", dsn}, tt.args...), &out, &errOut)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d; stderr: %s", code, tt.wantCode, errOut.String())
			}
			got := out.String()
			if code != 0 {
				got = errOut.String()
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(got, w) {
					t.Errorf("output lacks %q:\n%s", w, got)
				}
			}
			for _, w := range tt.notOut {
				if strings.Contains(got, w) {
					t.Errorf("output holds %q:\n%s", w, got)
				}
			}
		})
	}
	t.Run("export checks the same flags", func(t *testing.T) {
		var out, errOut bytes.Buffer
		if code := run(context.Background(), []string{"audit", "export", "--db", dsn, "--decision", "maybe"}, &out, &errOut); code != 2 ||
			!strings.Contains(errOut.String(), "--decision") {
			t.Fatalf("exit %d: %s", code, errOut.String())
		}
	})
}

// TestAuditEventsListEveryEvent keeps --event's list in step with the
// events the code declares: every `audit.Event = "…"` constant of the
// repository (and the audit package's own `Event = "…"`).
func TestAuditEventsListEveryEvent(t *testing.T) {
	root, _ := filepath.Abs(filepath.Join("..", ".."))
	decl := regexp.MustCompile(`(?m)^\s*(?:const\s+)?\w+\s+(?:audit\.)?Event\s*=\s*"([^"]+)"`)
	known := map[string]bool{}
	for _, n := range auditEventNames() {
		known[n] = true
	}
	found := 0
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata" || d.Name() == "integration") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range decl.FindAllStringSubmatch(string(b), -1) {
			found++
			if !known[m[1]] {
				t.Errorf("%s declares event %q, which auditEvents does not list", path, m[1])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if found < len(known) {
		t.Errorf("found %d event declarations, fewer than the %d listed: the pattern is out of date", found, len(known))
	}
}

// TestAuditOpensExistingLog: the audit commands read a log; given a SQLite
// file that does not exist they created it empty, and verify then passed
// and query answered nothing. They fail, naming the file, and create
// nothing.
func TestAuditOpensExistingLog(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "no-such-audit.db")
	jwksFile := filepath.Join(dir, "jwks.json")
	_, jwks, _, _ := testSigningKey(t)
	if err := os.WriteFile(jwksFile, jwks, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"verify", "--db", "sqlite://" + missing, "--jwks", jwksFile},
		{"query", "--db", "sqlite://" + missing},
		{"export", "--db", missing, "--format", "csv"},
	} {
		t.Run(args[0], func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(t.Context(), append([]string{"audit"}, args...), &out, &errOut)
			if code != 1 || !strings.Contains(errOut.String(), strconv.Quote(missing)+": file does not exist") {
				t.Errorf("exit %d, want 1 and the file named:\n%s%s", code, out.String(), errOut.String())
			}
			if _, err := os.Stat(missing); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("%s created: %v", missing, err)
			}
		})
	}
}

// TestAuditDSNNotEchoed: a Postgres DSN in libpq's keyword form was taken
// for a SQLite file path, created under that name, and the error of the
// failed open named it whole, password included. It is refused without
// being repeated.
func TestAuditDSNNotEchoed(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	for _, dsn := range []string{
		"host=pg.internal user=clearance password=hunter2 dbname=clearance",
		"postgres://clearance:hunter2@pg internal/clearance",
	} {
		var out, errOut bytes.Buffer
		code := run(t.Context(), []string{"audit", "query", "--db", dsn}, &out, &errOut)
		if code == 0 || strings.Contains(out.String()+errOut.String(), "hunter2") {
			t.Errorf("audit query --db %q: exit %d\n%s%s", dsn, code, out.String(), errOut.String())
		}
	}
	if files, _ := os.ReadDir(dir); len(files) > 0 {
		t.Errorf("files created: %v", files)
	}
}

// TestAuditExportOut: export --out writes a file only its owner reads, and
// refuses one that exists (an earlier export) unless --force.
func TestAuditExportOut(t *testing.T) {
	dir := t.TempDir()
	dsn := "sqlite://" + filepath.Join(dir, "audit.db")
	signer, _, _, _ := testSigningKey(t)
	writeTestLog(t, dsn, []byte("cli-test-subject-key-0123456789ab"), signer)
	export := func(args ...string) (int, string) {
		var out, errOut bytes.Buffer
		code := run(t.Context(), append([]string{"audit", "export", "--db", dsn, "--format", "csv"}, args...), &out, &errOut)
		return code, out.String() + errOut.String()
	}
	mode := func(path string) os.FileMode {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return st.Mode().Perm()
	}
	out := filepath.Join(dir, "export.csv")
	if code, msg := export("--out", out); code != 0 || mode(out) != 0o600 {
		t.Fatalf("export --out: exit %d, mode %v\n%s", code, mode(out), msg)
	}
	if err := os.WriteFile(out, []byte("kept\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(out, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, msg := export("--out", out); code != 1 || !strings.Contains(msg, "--out "+out+": file already exists (--force overwrites it)") {
		t.Errorf("export --out over an existing file: exit %d\n%s", code, msg)
	}
	if b, _ := os.ReadFile(out); string(b) != "kept\n" {
		t.Errorf("the existing file was changed: %q", b)
	}
	if code, msg := export("--out", out, "--force"); code != 0 || mode(out) != 0o600 {
		t.Fatalf("export --out --force: exit %d, mode %v\n%s", code, mode(out), msg)
	}
	if b, _ := os.ReadFile(out); !strings.HasPrefix(string(b), "sequence,time,event") {
		t.Errorf("--force did not overwrite: %q", b)
	}
	if code, msg := export("--force"); code != 2 || !strings.Contains(msg, "--force needs --out") {
		t.Errorf("--force without --out: exit %d\n%s", code, msg)
	}
}

// archiveFixture writes a test log at dsn and, in dir, the files an
// archive of it takes: the JWKS of its checkpoints' key and the archive's
// signing key. It returns the archive's path, the JWKS's and the key's.
func archiveFixture(t *testing.T, dir, dsn string) (archive, jwksFile, archiveKey string) {
	t.Helper()
	signer, jwks, _, _ := testSigningKey(t)
	_, _, _, archivePEM := testSigningKey(t)
	archive, jwksFile, archiveKey = filepath.Join(dir, "archive.jsonl"), filepath.Join(dir, "jwks.json"), filepath.Join(dir, "archive.pem")
	for name, b := range map[string][]byte{jwksFile: jwks, archiveKey: archivePEM} {
		if err := os.WriteFile(name, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeTestLog(t, dsn, []byte("cli-test-subject-key-0123456789ab"), signer)
	return archive, jwksFile, archiveKey
}

// TestAuditArchiveKeepsItsCopy: once the entries have left the log, the
// archive file is their only copy: a manifest that cannot be written (here
// a directory is in its place) leaves the file where it is, and the
// manifest is printed to be saved beside it.
func TestAuditArchiveKeepsItsCopy(t *testing.T) {
	dir := t.TempDir()
	dsn := "sqlite://" + filepath.Join(dir, "audit.db")
	archive, jwksFile, archiveKey := archiveFixture(t, dir, dsn)
	if err := os.Mkdir(archive+".manifest.jws", 0o700); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	code := run(t.Context(), []string{"audit", "archive", "--db", dsn, "--jwks", jwksFile, "--older-than", "1h", "--out", archive, "--signing-key", archiveKey}, &out, &errOut)
	if code != 1 || !strings.Contains(errOut.String(), "manifest was not written") || !strings.Contains(errOut.String(), "save it as") {
		t.Fatalf("exit %d: %s%s", code, out.String(), errOut.String())
	}
	data, err := os.ReadFile(archive)
	if err != nil || bytes.Count(data, []byte("\n")) != 3 {
		t.Fatalf("the archive of the 3 entries that left the log: %d bytes, %v", len(data), err)
	}
}
