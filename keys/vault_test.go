package keys

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestVaultSealOpen(t *testing.T) {
	s := startVault(t, "ecdsa-p256")
	sealer := newVault(t, tokenConfig(t, s, s.Token))
	before := sealer.RoundTrips()
	var payloads []string
	for i := range 100 {
		payloads = append(payloads, fmt.Sprintf(`{"order_id":"%d","name":"someone"}`, i))
	}
	sealed := mustSeal(t, sealer, payloads...)
	if got := sealer.RoundTrips() - before; got != 0 {
		t.Errorf("round trips for 100 seals = %d, want 0 (the data key NewVault took)", got)
	}
	for i, m := range sealed {
		if !bytes.Equal(m[:bytes.IndexByte(m, '.')], sealed[0][:bytes.IndexByte(sealed[0], '.')]) {
			t.Fatalf("seal %d has a header of its own: more than one data key", i)
		}
	}
	if got := kref(t, sealed[0]); got != "transit:clearance-data:v1" {
		t.Errorf("kref = %q", got)
	}
	if sealer.KeyRef() != "transit:clearance-data" {
		t.Errorf("KeyRef = %q", sealer.KeyRef())
	}
	// Another instance opens them, unwrapping the data key once.
	opener := newVault(t, tokenConfig(t, s, s.Token))
	before = opener.RoundTrips()
	for i, m := range sealed {
		got, err := opener.Open(t.Context(), m)
		if err != nil || string(got) != payloads[i] {
			t.Fatalf("open %d: %q %v", i, got, err)
		}
	}
	if got := opener.RoundTrips() - before; got != 1 {
		t.Errorf("round trips for 100 opens = %d, want 1 (one unwrap)", got)
	}
}

func TestVaultRotation(t *testing.T) {
	s := startVault(t, "ecdsa-p256")
	cfg := tokenConfig(t, s, s.Token)
	cfg.DataKeyMaxAge = 300 * time.Millisecond
	v := newVault(t, cfg)
	old := mustSeal(t, v, "before rotation")[0]
	s.Write("transit/keys/clearance-data/rotate", nil)
	if got := kref(t, mustSeal(t, v, "cached data key")[0]); got != "transit:clearance-data:v1" {
		t.Fatalf("within data_key_max_age the cached data key is used, kref = %q", got)
	}
	waitFor(t, "the data key is past data_key_max_age", sealKeyExpired(v.env))
	fresh := mustSeal(t, v, "after rotation")[0]
	if got := kref(t, fresh); got != "transit:clearance-data:v2" {
		t.Fatalf("rotation not picked up without restart: kref = %q", got)
	}
	other := newVault(t, tokenConfig(t, s, s.Token))
	for want, m := range map[string][]byte{"before rotation": old, "after rotation": fresh} {
		got, err := other.Open(t.Context(), m)
		if err != nil || string(got) != want {
			t.Fatalf("open %q: %q %v", want, got, err)
		}
	}
}

func TestVaultMinDecryptionVersion(t *testing.T) {
	s := startVault(t, "ecdsa-p256")
	cfg := tokenConfig(t, s, s.Token)
	cfg.OpenCacheTTL = 200 * time.Millisecond
	v := newVault(t, cfg)
	old := mustSeal(t, v, "sealed under v1")[0]
	s.Write("transit/keys/clearance-data/rotate", nil)
	s.Write("transit/keys/clearance-data/config", map[string]any{"min_decryption_version": 2})
	waitFor(t, "cached keys are past open_cache_ttl", openCacheEmpty(v.env))
	tests := []struct {
		name string
		v    *Vault
	}{
		{"same instance after the cache ttl", v},
		{"fresh instance", newVault(t, tokenConfig(t, s, s.Token))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.v.Open(t.Context(), old)
			if !errors.Is(err, ErrKeyRetired) || errors.Is(err, ErrUnavailable) {
				t.Fatalf("err = %v, want ErrKeyRetired (permanent)", err)
			}
			if got != nil {
				t.Fatal("plaintext returned")
			}
		})
	}
}

func TestVaultRewrap(t *testing.T) {
	s := startVault(t, "ecdsa-p256")
	cfg := tokenConfig(t, s, s.Token)
	cfg.DataKeyMaxUses = 2 // two data keys for three messages
	v := newVault(t, cfg)
	payloads := []string{"first", "second", "third"}
	old := mustSeal(t, v, payloads...)
	s.Write("transit/keys/clearance-data/rotate", nil)
	before := v.RoundTrips()
	rewrapped, err := v.Rewrap(t.Context(), old)
	if err != nil {
		t.Fatal(err)
	}
	if got := v.RoundTrips() - before; got != 1 {
		t.Errorf("round trips for rewrap = %d, want 1 batched request", got)
	}
	same, err := v.Rewrap(t.Context(), rewrapped[:1])
	if err != nil || !bytes.Equal(same[0], rewrapped[0]) {
		t.Errorf("rewrap at the latest version changed the message: %v", err)
	}
	s.Write("transit/keys/clearance-data/config", map[string]any{"min_decryption_version": 2})
	fresh := newVault(t, tokenConfig(t, s, s.Token))
	for i, m := range rewrapped {
		if got := kref(t, m); got != "transit:clearance-data:v2" {
			t.Errorf("message %d kref = %q", i, got)
		}
		got, err := fresh.Open(t.Context(), m)
		if err != nil || string(got) != payloads[i] {
			t.Fatalf("open rewrapped %d: %q %v", i, got, err)
		}
		if _, err := fresh.Open(t.Context(), old[i]); !errors.Is(err, ErrKeyRetired) {
			t.Fatalf("original %d still opens: %v", i, err)
		}
	}
}

func TestVaultOpenRefusesOtherKeys(t *testing.T) {
	s := startVault(t, "ed25519")
	s.Write("transit/keys/other-data", map[string]any{"type": "aes256-gcm96"})
	v := newVault(t, tokenConfig(t, s, s.Token))
	cfg := tokenConfig(t, s, s.Token)
	cfg.EncryptionKey = "other-data"
	other := newVault(t, cfg)
	sealed := mustSeal(t, other, "for another key")[0]
	if got := kref(t, sealed); got != "transit:other-data:v1" {
		t.Fatalf("kref = %q", got)
	}
	if got, err := v.Open(t.Context(), sealed); !errors.Is(err, ErrMalformed) || got != nil {
		t.Fatalf("message under another key: %q, %v", got, err)
	}
}
