package policy_test

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/policy"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// TestFormatsGolden pins the formats others read: the receipt of a rights
// message, and an event as published on the bucket (number, kind and
// version; the change stays in the store).
func TestFormatsGolden(t *testing.T) {
	published := policy.Event{Seq: 7, Kind: policy.KindChange, Version: "sha256:77", At: time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)}
	tests := []struct {
		name string
		give any
	}{
		{"receipt", policy.Receipt{RequestID: "cms-1", Status: policy.StatusRecorded, Reasons: []string{}, Event: 7, RegistryVersion: "sha256:77"}},
		{"rejected", policy.Receipt{RequestID: "cms-2", Status: policy.StatusRejected, Reasons: []string{"invalid_request: action: required field is missing"}}},
		{"event", published},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := json.MarshalIndent(tt.give, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", tt.name+".golden.json")
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
				t.Fatalf("%s changed:\n%s\nwant:\n%s", tt.name, got, want)
			}
		})
	}
}
