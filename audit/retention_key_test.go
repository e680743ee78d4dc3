package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestRetentionKeySignsNoCheckpoint: whoever runs retention holds its key
// (a local file) and the database. With the manifests verified by the
// retention key alone (VerifyOptions.Manifests), a chain rewritten after
// the archive and sealed by a checkpoint signed with that key is refused;
// one verifier of both keys takes it for the writers'.
func TestRetentionKeySignsNoCheckpoint(t *testing.T) {
	ctx := t.Context()
	db := openTestDB(t, sqliteDSN(t))
	opts := testOptions(t)
	opts.CheckpointEvery = 1 << 30
	l := openTestLog(t, db, opts)
	for i := 1; i <= 30; i++ {
		e := decidedEntry(i)
		e.Time = testTime.Add(-48 * time.Hour)
		if i > 20 {
			e.Time = testTime
		}
		if _, err := l.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
		if i%10 == 0 {
			if _, err := l.Checkpoint(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	retention, err := GenerateLocalSigner()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, _, err := l.Archive(ctx, retention, testTime.Add(-24*time.Hour), &buf); err != nil {
		t.Fatal(err)
	}
	writers, retentionV := testSigner(t), verifierOf(t, retention)
	if _, err := l.VerifyWith(ctx, writers, VerifyOptions{Manifests: retentionV}); err != nil {
		t.Fatalf("before the forgery: %v", err)
	}
	both := verifierOf(t, writers, retention)
	if _, err := l.VerifyWith(ctx, both, VerifyOptions{RefuseManifestKey: true}); err != nil {
		t.Fatalf("before the forgery, with one verifier of both keys: %v", err)
	}

	// The forgery: entries 21 to 30 rewritten, checkpoint 30 signed anew
	// with the retention key.
	if err := rewriteFrom(ctx, db, 21); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, "DELETE FROM audit_checkpoints WHERE seq = 30"); err != nil {
		t.Fatal(err)
	}
	fopts := testOptions(t)
	fopts.Signer, fopts.CheckpointEvery = retention, 1<<30
	if _, err := openTestLog(t, db, fopts).Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}

	_, err = l.VerifyWith(ctx, writers, VerifyOptions{Manifests: retentionV})
	var te *TamperError
	if !errors.As(err, &te) || te.Finding != FindingBadCheckpoint || te.Sequence != 30 {
		t.Fatalf("with the manifests verified apart: %v, want a bad checkpoint at 30", err)
	}
	// One verifier of both keys (audit verify --jwks with the retention
	// key's set among the writers', as before --archive-jwks): with
	// RefuseManifestKey, the key that signed the last manifest, the
	// retention key, signs no checkpoint either.
	if _, err := l.Verify(ctx, both); err == nil {
		t.Log("one verifier of both keys, RefuseManifestKey unset: the forged checkpoint is taken, as documented")
	}
	_, err = l.VerifyWith(ctx, both, VerifyOptions{RefuseManifestKey: true})
	if !errors.As(err, &te) || te.Finding != FindingBadCheckpoint || te.Sequence != 30 || !strings.Contains(err.Error(), "retention key") {
		t.Fatalf("with one verifier of both keys: %v, want a bad checkpoint at 30 signed with the retention key", err)
	}
}

// verifierOf verifies against the keys of every one of signers.
func verifierOf(t *testing.T, signers ...*LocalSigner) *JWKSVerifier {
	t.Helper()
	var keys []json.RawMessage
	for _, s := range signers {
		b, err := s.JWKS(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		var set struct {
			Keys []json.RawMessage `json:"keys"`
		}
		if err := json.Unmarshal(b, &set); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, set.Keys...)
	}
	merged, _ := json.Marshal(map[string]any{"keys": keys})
	v, err := NewJWKSVerifier(merged)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
