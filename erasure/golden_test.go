package erasure_test

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/erasure"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// TestNoticeGolden pins the notice payload recipients open and verify.
func TestNoticeGolden(t *testing.T) {
	got, err := json.MarshalIndent(erasure.NoticePayload{
		Kind: erasure.NoticeKind, NoticeID: "erasure-0001", Recipient: "swiftship-de",
		RequestIDs: []string{"ord-1", "ord-2"}, ErasedAt: time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC),
		Basis: "GDPR Art. 17, Art. 19",
	}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "notice.golden.json")
	if *update {
		if err := os.WriteFile(path, append(got, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(want) != string(got)+"\n" {
		t.Fatalf("notice payload changed:\n%s\nwant:\n%s", got, want)
	}
}
