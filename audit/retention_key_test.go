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
// retention keys alone (VerifyOptions.Manifests), a chain rewritten after
// the archives and sealed by a checkpoint signed with a retention key is
// refused; one verifier of every key takes it for the writers', unless
// RefuseManifestKey is set. That holds for the key of an older archive as
// for the last one's: the log was archived twice, under a retention key
// replaced in between. The forger cannot take the older key out of the
// refused ones by deleting or altering the older manifest either.
func TestRetentionKeySignsNoCheckpoint(t *testing.T) {
	for _, tt := range []struct {
		name   string
		older  bool   // the forger signs with the older archive's key
		hiding string // and then runs this on the store
		detail string
	}{
		{"the last archive's key", false, "", "retention key"},
		{"an older archive's key", true, "", "retention key"},
		{"an older archive's key, its manifest deleted", true, "DELETE FROM audit_archives WHERE to_seq = 10", "archives before it end at 0"},
		{"an older archive's key, its manifest altered", true, "UPDATE audit_archives SET manifest = 'x' || manifest WHERE to_seq = 10", "archive manifest"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			db := openTestDB(t, sqliteDSN(t))
			opts := testOptions(t)
			opts.CheckpointEvery = 1 << 30
			l := openTestLog(t, db, opts)
			for i := 1; i <= 30; i++ {
				e := decidedEntry(i)
				e.Time = testTime.Add(-time.Duration(72-24*((i-1)/10)) * time.Hour) // 1-10: -72h, 11-20: -48h
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
			var retention []*LocalSigner
			for _, before := range []time.Duration{-60 * time.Hour, -24 * time.Hour} {
				r, err := GenerateLocalSigner()
				if err != nil {
					t.Fatal(err)
				}
				var buf bytes.Buffer
				if _, _, err := l.Archive(ctx, r, testTime.Add(before), &buf); err != nil {
					t.Fatal(err)
				}
				retention = append(retention, r)
			}
			writers, retentionV := testSigner(t), verifierOf(t, retention...)
			if _, err := l.VerifyWith(ctx, writers, VerifyOptions{Manifests: retentionV}); err != nil {
				t.Fatalf("before the forgery: %v", err)
			}
			all := verifierOf(t, append([]*LocalSigner{writers}, retention...)...)
			if _, err := l.VerifyWith(ctx, all, VerifyOptions{RefuseManifestKey: true}); err != nil {
				t.Fatalf("before the forgery, with one verifier of every key: %v", err)
			}

			// The forgery: entries 21 to 30 rewritten, checkpoint 30
			// signed anew with a retention key.
			if err := rewriteFrom(ctx, db, 21); err != nil {
				t.Fatal(err)
			}
			if _, err := db.ExecContext(ctx, "DELETE FROM audit_checkpoints WHERE seq = 30"); err != nil {
				t.Fatal(err)
			}
			fopts := testOptions(t)
			fopts.Signer, fopts.CheckpointEvery = retention[1], 1<<30
			if tt.older {
				fopts.Signer = retention[0]
			}
			if _, err := openTestLog(t, db, fopts).Checkpoint(ctx); err != nil {
				t.Fatal(err)
			}
			if tt.hiding != "" {
				if _, err := db.ExecContext(ctx, tt.hiding); err != nil {
					t.Fatal(err)
				}
			}

			_, err := l.VerifyWith(ctx, writers, VerifyOptions{Manifests: retentionV})
			var te *TamperError
			if !errors.As(err, &te) || te.Finding != FindingBadCheckpoint || te.Sequence != 30 {
				t.Fatalf("with the manifests verified apart: %v, want a bad checkpoint at 30", err)
			}
			// One verifier of every key (audit verify --jwks with the
			// retention keys' set among the writers', as before
			// --archive-jwks): with RefuseManifestKey, the keys that
			// signed the manifests sign no checkpoint.
			if _, err := l.Verify(ctx, all); err == nil {
				t.Log("one verifier of every key, RefuseManifestKey unset: the forged checkpoint is taken, as documented")
			}
			_, err = l.VerifyWith(ctx, all, VerifyOptions{RefuseManifestKey: true})
			if !errors.As(err, &te) || te.Finding != FindingBadCheckpoint || !strings.Contains(err.Error(), tt.detail) {
				t.Fatalf("with one verifier of every key: %v, want a bad checkpoint (%s)", err, tt.detail)
			}
		})
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
