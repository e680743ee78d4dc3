package audit

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"
)

// FuzzVerifyArchive feeds arbitrary archive files and manifests (outside
// input read by operators) to VerifyArchive: it must never panic, and
// anything it accepts must be exactly what was signed.
func FuzzVerifyArchive(f *testing.F) {
	// A fixed clock and Ed25519's deterministic signatures make the seed
	// archive identical in every fuzzing worker.
	opts := testOptions(f)
	opts.Now = func() time.Time { return testTime }
	l := openTestLog(f, openTestDB(f, sqliteDSN(f)), opts)
	appendN(f, l, 1, 5)
	var buf bytes.Buffer
	_, jws, err := l.Archive(context.Background(), nil, testTime.Add(time.Hour), &buf)
	if err != nil {
		f.Fatal(err)
	}
	good := bytes.Clone(buf.Bytes())
	f.Add(good, jws)
	f.Add(good[:len(good)/3], jws)
	f.Add([]byte("{}\n"), []byte("a.b.c"))
	f.Add([]byte(""), []byte(""))
	signer := testSigner(f)
	f.Fuzz(func(t *testing.T, archive, manifest []byte) {
		m, err := VerifyArchive(context.Background(), bytes.NewReader(archive), manifest, signer)
		if err == nil && (!bytes.Equal(manifest, jws) || !bytes.Equal(archive, good)) && m.Entries > 0 {
			// Only the signed manifest can verify, and only with the archive
			// it describes (whitespace aside, which the digest also covers).
			t.Errorf("accepted an archive that was not signed")
		}
		var te *TamperError
		if err != nil && errors.As(err, &te) && te.Finding == "" {
			t.Error("tamper error without a finding")
		}
	})
}
