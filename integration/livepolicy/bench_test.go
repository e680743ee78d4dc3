package livepolicy

import (
	"fmt"
	"testing"

	"github.com/clearance-broker/clearance/broker/brokertest"
)

// BenchmarkSubjectKeysOnVault measures what a per-subject key costs on a
// real Vault and Postgres: sealing a 1 KiB kept payload under the broker's
// shared transit-backed key (baseline) against sealing it under the
// subject's key with the key cached (1,000 subjects) and for a subject seen
// for the first time (key created, wrapped and stored). vault_trips/op
// counts HTTP requests to Vault.
func BenchmarkSubjectKeysOnVault(b *testing.B) {
	v := vaultKeys(b)
	auditLog, db := brokertest.OpenAudit(b, brokertest.PostgresDSN(b), v)
	k := keyring(b, db, v, auditLog, nil)
	payload := make([]byte, 1024)
	subjects := make([]string, 1000)
	for i := range subjects {
		subjects[i] = fmt.Sprintf("cust-%d", i)
		if _, err := k.Seal(b.Context(), subjects[i], payload); err != nil {
			b.Fatal(err)
		}
	}
	trips := func(b *testing.B, start uint64) {
		b.ReportMetric(float64(v.RoundTrips()-start)/float64(b.N), "vault_trips/op")
	}
	b.Run("baseline_shared_key", func(b *testing.B) {
		start := v.RoundTrips()
		for b.Loop() {
			if _, err := v.Seal(b.Context(), payload); err != nil {
				b.Fatal(err)
			}
		}
		trips(b, start)
	})
	b.Run("subject_key_cached", func(b *testing.B) {
		start, i := v.RoundTrips(), 0
		for b.Loop() {
			if _, err := k.Seal(b.Context(), subjects[i%len(subjects)], payload); err != nil {
				b.Fatal(err)
			}
			i++
		}
		trips(b, start)
	})
	b.Run("subject_key_new", func(b *testing.B) {
		start, i := v.RoundTrips(), 0
		for b.Loop() {
			if _, err := k.Seal(b.Context(), fmt.Sprintf("new-%d-%d", b.N, i), payload); err != nil {
				b.Fatal(err)
			}
			i++
		}
		trips(b, start)
	})
	b.Run("subject_key_cold_open", func(b *testing.B) {
		// Another instance opening what this one sealed: key read from the
		// store and unwrapped once per subject, then cached.
		sealed := make([][]byte, len(subjects))
		for i, s := range subjects {
			var err error
			if sealed[i], err = k.Seal(b.Context(), s, payload); err != nil {
				b.Fatal(err)
			}
		}
		other := keyring(b, db, v, auditLog, nil)
		start, i := v.RoundTrips(), 0
		for b.Loop() {
			if _, err := other.Open(b.Context(), sealed[i%len(sealed)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
		trips(b, start)
	})
}
