package keys

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/integration/vaulttest"
)

func TestVaultUnavailableFailsClosed(t *testing.T) {
	s := startVault(t, "ecdsa-p256")
	cfg := tokenConfig(t, s, s.Token)
	cfg.DataKeyMaxUses = 1 // every seal needs Vault
	cfg.Timeout = 2 * time.Second
	v := newVault(t, cfg)
	sealed := mustSeal(t, v, "sealed while vault was up")[0]

	s.Stop()
	tests := []struct {
		name string
		call func() ([]byte, error)
	}{
		{"seal", func() ([]byte, error) { return v.Seal(t.Context(), []byte("personal data")) }},
		{"open with an uncached data key", func() ([]byte, error) {
			return newVaultOffline(t, v).Open(t.Context(), sealed)
		}},
		{"sign", func() ([]byte, error) {
			out, err := v.Sign(t.Context(), [][]byte{[]byte("personal data")})
			if len(out) > 0 {
				return out[0], err
			}
			return nil, err
		}},
		{"seal for a partner", func() ([]byte, error) {
			out, err := v.SealFor(t.Context(), []byte(`{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}`), [][]byte{[]byte("personal data")})
			if len(out) > 0 {
				return out[0], err
			}
			return nil, err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := tt.call()
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("err = %v, want ErrUnavailable", err)
			}
			if out != nil {
				t.Fatal("output returned while Vault is down")
			}
			if strings.Contains(err.Error(), "personal data") {
				t.Fatal("payload in error message")
			}
		})
	}

	// A sealed Vault answers 503: also transient.
	s.Start()
	s.Write("transit/keys/clearance-data", map[string]any{"type": "aes256-gcm96"})
	if _, err := v.Seal(t.Context(), []byte("x")); err != nil {
		t.Fatalf("seal after Vault came back: %v", err)
	}
	if err := s.Client().Sys().Seal(); err != nil {
		t.Fatal(err)
	}
	if out, err := v.Seal(t.Context(), []byte("x")); !errors.Is(err, ErrUnavailable) || out != nil {
		t.Fatalf("sealed Vault: err = %v", err)
	}
}

// newVaultOffline returns a Vault sharing v's client but with empty caches,
// so that opening must ask Vault.
func newVaultOffline(t *testing.T, v *Vault) *Vault {
	t.Helper()
	c := &Vault{cfg: v.cfg, keyRef: v.keyRef, client: v.client, log: v.log, sign: v.sign, auth: v.auth, batcher: v.batcher, readyWithin: v.readyWithin}
	c.env = newEnvelope(transitSource{c}, v.cfg.DataKeyMaxUses, v.cfg.DataKeyMaxAge, v.cfg.OpenCacheSize, v.cfg.OpenCacheTTL)
	return c
}

// TestVaultStartChecksBothKeys: NewVault fails, naming the configuration key,
// when either transit key is missing or the token may not make data keys,
// instead of starting an instance whose every seal fails.
func TestVaultStartChecksBothKeys(t *testing.T) {
	s := vaulttest.Start(t)
	s.Write("transit/keys/clearance-data", map[string]any{"type": "aes256-gcm96"})
	_, err := NewVault(t.Context(), tokenConfig(t, s, s.Token), nil)
	if err == nil || !strings.Contains(err.Error(), `vault.signing_key "clearance-signing" (mount "transit")`) ||
		!strings.Contains(err.Error(), "transit/keys/clearance-signing: not found") {
		t.Fatalf("no signing key: err = %v", err)
	}

	s = vaulttest.Start(t)
	s.Write("transit/keys/clearance-signing", map[string]any{"type": "ecdsa-p256"})
	_, err = NewVault(t.Context(), tokenConfig(t, s, s.Token), nil)
	if err == nil || !strings.Contains(err.Error(), `vault.encryption_key "clearance-data" (mount "transit")`) ||
		!strings.Contains(err.Error(), "encryption key not found") {
		t.Fatalf("no encryption key: err = %v", err)
	}
	s.Write("transit/keys/clearance-data", map[string]any{"type": "aes256-gcm96"})
	s.Write("sys/policies/acl/no-datakey", map[string]any{"policy": `
path "transit/sign/clearance-signing" { capabilities = ["update"] }
path "transit/keys/clearance-signing" { capabilities = ["read"] }
`})
	sec := s.Write("auth/token/create", map[string]any{"policies": []string{"no-datakey"}, "ttl": "1h"})
	if _, err := NewVault(t.Context(), tokenConfig(t, s, sec.Auth.ClientToken), nil); !errors.Is(err, ErrPermissionDenied) ||
		!strings.Contains(err.Error(), "vault.encryption_key") {
		t.Fatalf("token without transit/datakey: err = %v", err)
	}
	v := newVault(t, tokenConfig(t, s, s.Token))
	if _, err := v.Seal(t.Context(), []byte("x")); err != nil {
		t.Fatalf("seal once both keys exist: %v", err)
	}
}

func TestVaultPermissionDenied(t *testing.T) {
	s := startVault(t, "ecdsa-p256")
	s.Write("sys/policies/acl/no-sign", map[string]any{"policy": `
path "transit/datakey/plaintext/clearance-data" { capabilities = ["update"] }
path "transit/keys/clearance-signing" { capabilities = ["read"] }
`})
	sec := s.Write("auth/token/create", map[string]any{"policies": []string{"no-sign"}, "ttl": "1h"})
	v := newVault(t, tokenConfig(t, s, sec.Auth.ClientToken))
	if _, err := v.Seal(t.Context(), []byte("x")); err != nil {
		t.Fatalf("seal: %v", err)
	}
	_, err := v.Sign(t.Context(), [][]byte{[]byte("x")})
	if !errors.Is(err, ErrPermissionDenied) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrPermissionDenied", err)
	}
	if !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("unclear message: %v", err)
	}
	if _, err := NewVault(t.Context(), tokenConfig(t, s, "not-a-token"), nil); !errors.Is(err, ErrPermissionDenied) {
		t.Fatalf("bad token: %v", err)
	}
}

func TestVaultAppRoleWithShippedPolicy(t *testing.T) {
	s := startVault(t, "ecdsa-p256")
	policy, err := os.ReadFile(filepath.Join("..", "deploy", "vault", "clearance-policy.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	s.Write("sys/policies/acl/clearance", map[string]any{"policy": string(policy)})
	s.Write("sys/auth/approle", map[string]any{"type": "approle"})
	// Short TTLs: the token must be renewed, then replaced by a new login.
	s.Write("auth/approle/role/clearance", map[string]any{"token_policies": "clearance", "token_ttl": "2s", "token_max_ttl": "4s"})
	roleID, err := s.Client().Logical().Read("auth/approle/role/clearance/role-id")
	if err != nil {
		t.Fatal(err)
	}
	secretID := s.Write("auth/approle/role/clearance/secret-id", nil)
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret-id")
	if err := os.WriteFile(secretFile, []byte(secretID.Data["secret_id"].(string)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := VaultConfig{
		Address: s.Addr, Timeout: 5 * time.Second, MaxRetries: -1, DataKeyMaxUses: 1,
		Auth: VaultAuth{AppRole: &AppRoleAuth{RoleID: roleID.Data["role_id"].(string), SecretIDFile: secretFile}},
	}
	v := newVault(t, cfg)
	exercise := func() {
		t.Helper()
		sealed := mustSeal(t, v, "approle")
		if got, err := newVaultOffline(t, v).Open(t.Context(), sealed[0]); err != nil || string(got) != "approle" {
			t.Fatalf("open: %q %v", got, err)
		}
		if _, err := v.Rewrap(t.Context(), sealed); err != nil {
			t.Fatalf("rewrap: %v", err)
		}
		tokens, err := v.Sign(t.Context(), [][]byte{[]byte("p")})
		if err != nil {
			t.Fatalf("sign: %v", err)
		}
		if _, err := v.Verify(t.Context(), tokens[0]); err != nil {
			t.Fatalf("verify: %v", err)
		}
		if _, err := v.JWKS(t.Context()); err != nil {
			t.Fatalf("jwks: %v", err)
		}
	}
	exercise()
	first := v.client.Token()
	time.Sleep(5 * time.Second) // past token_max_ttl: only a new login keeps Clearance working
	if v.client.Token() == first {
		t.Fatal("no new AppRole login after the token's max TTL")
	}
	exercise()
}

func TestVaultTLS(t *testing.T) {
	s := vaulttest.Start(t, vaulttest.WithTLS())
	s.Write("transit/keys/clearance-data", map[string]any{"type": "aes256-gcm96"})
	s.Write("transit/keys/clearance-signing", map[string]any{"type": "ed25519"})
	tests := []struct {
		name    string
		tls     VaultTLS
		wantErr error
	}{
		{"trusted ca", VaultTLS{CAFile: s.CAFile}, nil},
		{"trusted ca and server name", VaultTLS{CAFile: s.CAFile, ServerName: "localhost"}, nil},
		{"system roots only", VaultTLS{}, ErrUntrustedServer},
		{"wrong server name", VaultTLS{CAFile: s.CAFile, ServerName: "vault.example.invalid"}, ErrUntrustedServer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tokenConfig(t, s, s.Token)
			cfg.TLS = tt.tls
			v, err := NewVault(t.Context(), cfg, nil)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || errors.Is(err, ErrUnavailable) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer v.Close(t.Context())
			sealed := mustSeal(t, v, "over tls")
			if got, err := v.Open(t.Context(), sealed[0]); err != nil || string(got) != "over tls" {
				t.Fatalf("open: %q %v", got, err)
			}
		})
	}
}

func TestVaultTokenRenewal(t *testing.T) {
	s := startVault(t, "ecdsa-p256")
	policy, err := os.ReadFile(filepath.Join("..", "deploy", "vault", "clearance-policy.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	s.Write("sys/policies/acl/clearance", map[string]any{"policy": string(policy)})
	sec := s.Write("auth/token/create", map[string]any{"policies": []string{"clearance"}, "ttl": "2s", "renewable": true, "no_default_policy": true})
	cfg := tokenConfig(t, s, sec.Auth.ClientToken)
	cfg.DataKeyMaxUses = 1
	v := newVault(t, cfg)
	time.Sleep(4 * time.Second) // twice the TTL: only renew-self keeps the token alive
	if _, err := v.Seal(t.Context(), []byte("x")); err != nil {
		t.Fatalf("seal after the initial TTL: %v", err)
	}
	if _, err := s.Client().Auth().Token().Lookup(sec.Auth.ClientToken); err != nil {
		t.Fatalf("token expired although renewable: %v", err)
	}
}

// TestVaultReady: Ready asks Vault at most every readyWithin, and then
// notices a revoked token and an unreachable Vault at once, where JWKS
// goes on answering from its cache until key_info_ttl.
func TestVaultReady(t *testing.T) {
	s := vaulttest.Start(t)
	s.Write("transit/keys/clearance-data", map[string]any{"type": "aes256-gcm96"})
	s.Write("transit/keys/clearance-signing", map[string]any{"type": "ecdsa-p256"})
	child := s.Write("auth/token/create", map[string]any{"ttl": "1h"}).Auth.ClientToken
	v := newVault(t, tokenConfig(t, s, child))
	if err := v.Ready(t.Context()); err != nil {
		t.Fatalf("ready: %v", err)
	}
	trips := v.RoundTrips()
	if err := v.Ready(t.Context()); err != nil || v.RoundTrips() != trips {
		t.Fatalf("a second probe within %s: %v, %d round trips", v.readyWithin, err, v.RoundTrips()-trips)
	}

	v.readyWithin = 0 // every probe asks Vault
	if err := v.Ready(t.Context()); err != nil || v.RoundTrips() != trips+1 {
		t.Fatalf("a probe past readyWithin: %v, %d round trips", err, v.RoundTrips()-trips)
	}
	s.Write("auth/token/revoke", map[string]any{"token": child})
	if err := v.Ready(t.Context()); !errors.Is(err, ErrPermissionDenied) {
		t.Errorf("revoked token: ready = %v, want ErrPermissionDenied", err)
	}
	if _, err := v.JWKS(t.Context()); err != nil {
		t.Errorf("JWKS from its cache after a failed probe: %v", err)
	}
	s.Stop()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := v.Ready(ctx); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Vault stopped: ready = %v, want ErrUnavailable", err)
	}
	if _, err := v.JWKS(t.Context()); err != nil {
		t.Errorf("JWKS from its cache with Vault stopped: %v", err)
	}
}
