package audit

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

// TestEntryGolden pins the JSON form of an entry (the export line format and
// the hash input) as read back from the store.
func TestEntryGolden(t *testing.T) {
	tests := []struct {
		name string
		give *Entry
	}{
		{"entry-decided", decidedEntry(1)},
		{"entry-registry-applied", &Entry{Time: testTime, Event: EventRegistryApplied,
			Source: "clearance registry apply", RegistryVersion: "sha256:" + strings.Repeat("cd", 32)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := openTestLog(t, openTestDB(t, sqliteDSN(t)), testOptions(t))
			if _, err := l.Append(t.Context(), tt.give); err != nil {
				t.Fatal(err)
			}
			got, err := l.Query(t.Context(), Filter{})
			if err != nil || len(got) != 1 {
				t.Fatalf("read back: %v, %v", got, err)
			}
			b, err := json.MarshalIndent(got[0], "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			b = append(b, '\n')
			path := filepath.Join("testdata", tt.name+".golden.json")
			if *update {
				if err := os.WriteFile(path, b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(b, want) {
				t.Errorf("entry JSON differs from %s:\n%s", path, b)
			}
			if bytes.Contains(b, []byte("cust-")) {
				t.Error("entry JSON holds the subject id in clear")
			}
		})
	}
}

// TestManifestGolden pins the JSON of an archive manifest and the checkpoint
// payloads inside it; a fixed clock and Ed25519's deterministic signatures
// make them reproducible.
func TestManifestGolden(t *testing.T) {
	opts := testOptions(t)
	opts.Now = func() time.Time { return testTime }
	l := openTestLog(t, openTestDB(t, sqliteDSN(t)), opts)
	appendN(t, l, 1, 3)
	if _, err := l.Checkpoint(t.Context()); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	m, _, err := l.Archive(t.Context(), nil, testTime.Add(time.Hour), &buf)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	var c Checkpoint
	if err := openSigned(t.Context(), testSigner(t), m.Checkpoints[0], &c); err != nil {
		t.Fatal(err)
	}
	cb, _ := json.Marshal(c)
	b = append(append(append(b, '\n'), cb...), '\n')
	path := filepath.Join("testdata", "manifest.golden.json")
	if *update {
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(b, want) {
		t.Errorf("manifest differs from %s:\n%s", path, b)
	}
}
