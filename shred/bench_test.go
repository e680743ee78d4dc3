package shred_test

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/clearance-broker/clearance/broker/brokertest"
)

// BenchmarkSeal compares sealing a 1 KiB dead letter under the broker's
// shared key (baseline) with sealing it under the subject's own key, warm
// (1,000 subjects, keys cached) and cold (a new subject each time: a new
// key stored and wrapped).
func BenchmarkSeal(b *testing.B) {
	ringPath := filepath.Join(b.TempDir(), "ring.json")
	k, _ := newKeyring(b, brokertest.SQLiteDSN(b), ringPath, nil)
	ring := brokertest.DevKeys(b, ringPath)
	payload := make([]byte, 1024)
	subjects := make([]string, 1000)
	for i := range subjects {
		subjects[i] = fmt.Sprintf("cust-%d", i)
		if _, err := k.Seal(b.Context(), subjects[i], payload); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("baseline_shared_key", func(b *testing.B) {
		for b.Loop() {
			if _, err := ring.Seal(b.Context(), payload); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("subject_key_cached", func(b *testing.B) {
		i := 0
		for b.Loop() {
			if _, err := k.Seal(b.Context(), subjects[i%len(subjects)], payload); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("subject_key_new", func(b *testing.B) {
		i := 0
		for b.Loop() {
			if _, err := k.Seal(b.Context(), fmt.Sprintf("new-%d", i), payload); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}
