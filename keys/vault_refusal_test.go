package keys

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/integration/vaulttest"
)

// pathCounter is a reverse proxy to a Vault that counts the requests per
// path.
type pathCounter struct {
	srv *httptest.Server
	mu  sync.Mutex
	n   map[string]int
}

func newPathCounter(t *testing.T, target string) *pathCounter {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	c := &pathCounter{n: map[string]int{}}
	proxy := httputil.NewSingleHostReverseProxy(u)
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		c.n[r.URL.Path]++
		c.mu.Unlock()
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *pathCounter) count(path string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[path]
}

// appRoleConfig sets up AppRole on s with a role of the given settings
// (token_policies, token_ttl, ...), and returns a config logging in with
// it.
func appRoleConfig(t *testing.T, s *vaulttest.Server, role map[string]any) VaultConfig {
	t.Helper()
	s.Write("sys/auth/approle", map[string]any{"type": "approle"})
	s.Write("auth/approle/role/clearance", role)
	roleID, err := s.Client().Logical().Read("auth/approle/role/clearance/role-id")
	if err != nil {
		t.Fatal(err)
	}
	secretID := s.Write("auth/approle/role/clearance/secret-id", nil)
	secretFile := filepath.Join(t.TempDir(), "secret-id")
	if err := os.WriteFile(secretFile, []byte(secretID.Data["secret_id"].(string)), 0o600); err != nil {
		t.Fatal(err)
	}
	return VaultConfig{
		Address: s.Addr, Timeout: 5 * time.Second, MaxRetries: -1, DataKeyMaxUses: 1,
		Auth: VaultAuth{AppRole: &AppRoleAuth{RoleID: roleID.Data["role_id"].(string), SecretIDFile: secretFile}},
	}
}

// callUntilOK repeats call until it succeeds, failing the test if it
// still fails after within.
func callUntilOK(t *testing.T, within time.Duration, call func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := call()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing after %v: %v", within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func sealOnce(ctx context.Context, v *Vault) error {
	_, err := v.Seal(ctx, []byte("x"))
	return err
}

func readyOnce(ctx context.Context, v *Vault) error { return v.Ready(ctx) }

// TestVaultRevokedTokenFileReplaced: Vault revokes the token in use (a
// leaked token revoked, its uses spent, Vault restored from a snapshot)
// and Vault Agent writes a new one to auth.token_file. The first call
// Vault refuses makes the instance read the file again and take the new
// token, instead of running on the dead one until its renewal falls due
// (40 minutes into an hour's TTL). When the new token comes only after the
// first refusal, a later refusal takes it up.
func TestVaultRevokedTokenFileReplaced(t *testing.T) {
	s := startVault(t, "ecdsa-p256")
	policy := clearancePolicy(t, s)
	tests := []struct {
		name string
		call func(context.Context, *Vault) error
		// refusedFirst makes a call that Vault refuses before the new
		// token is written.
		refusedFirst bool
		within       time.Duration
	}{
		{name: "seal", call: sealOnce, within: 2 * time.Second},
		{name: "ready", call: readyOnce, within: 2 * time.Second},
		{name: "new token after the first refusal", call: sealOnce, refusedFirst: true, within: 6 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			token := map[string]any{"policies": []string{policy}, "period": "1h", "no_default_policy": true}
			old := s.Write("auth/token/create", token).Auth.ClientToken
			cfg := tokenConfig(t, s, old)
			cfg.DataKeyMaxUses = 1
			v := newVault(t, cfg)
			v.readyWithin = 0
			s.Write("auth/token/revoke", map[string]any{"token": old})
			if tt.refusedFirst {
				if err := tt.call(t.Context(), v); !errors.Is(err, ErrPermissionDenied) {
					t.Fatalf("call with the revoked token: %v, want ErrPermissionDenied", err)
				}
				time.Sleep(200 * time.Millisecond) // the file is read again before the new token is there
			}
			fresh := s.Write("auth/token/create", token).Auth.ClientToken
			if err := os.WriteFile(cfg.Auth.TokenFile, []byte(fresh+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			callUntilOK(t, tt.within, func() error { return tt.call(t.Context(), v) })
			if v.client.Token() != fresh {
				t.Fatal("a call succeeded without the new token")
			}
		})
	}
}

// TestVaultRevokedAppRoleTokenLogsInAgain: Vault revokes the token an
// AppRole login gave; the first call it refuses makes the instance log in
// again.
func TestVaultRevokedAppRoleTokenLogsInAgain(t *testing.T) {
	tests := []struct {
		name string
		call func(context.Context, *Vault) error
	}{
		{name: "seal", call: sealOnce},
		{name: "ready", call: readyOnce},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startVault(t, "ecdsa-p256")
			v := newVault(t, appRoleConfig(t, s, map[string]any{"token_policies": clearancePolicy(t, s), "token_ttl": "1h", "token_no_default_policy": true}))
			v.readyWithin = 0
			old := v.client.Token()
			s.Write("auth/token/revoke", map[string]any{"token": old})
			callUntilOK(t, 2*time.Second, func() error { return tt.call(t.Context(), v) })
			if v.client.Token() == old {
				t.Fatal("a call succeeded with the revoked token")
			}
		})
	}
}

// TestVaultPolicyRefusalPaced: the token is valid but its policy lacks
// transit/sign, and every Sign is refused. The instance checks its token
// on the refusals, keeps it, and paces the checks: a few lookups over two
// seconds of refusals, and no AppRole login.
func TestVaultPolicyRefusalPaced(t *testing.T) {
	const noSign = `
path "transit/datakey/plaintext/clearance-data" { capabilities = ["update"] }
path "transit/keys/clearance-signing" { capabilities = ["read"] }
path "auth/token/renew-self" { capabilities = ["update"] }
path "auth/token/lookup-self" { capabilities = ["read"] }
`
	tests := []struct {
		name   string
		config func(*testing.T, *vaulttest.Server) VaultConfig
	}{
		{name: "token file", config: func(t *testing.T, s *vaulttest.Server) VaultConfig {
			token := s.Write("auth/token/create", map[string]any{"policies": []string{"no-sign"}, "period": "1h", "no_default_policy": true})
			return tokenConfig(t, s, token.Auth.ClientToken)
		}},
		{name: "approle", config: func(t *testing.T, s *vaulttest.Server) VaultConfig {
			return appRoleConfig(t, s, map[string]any{"token_policies": "no-sign", "token_ttl": "1h", "token_no_default_policy": true})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startVault(t, "ecdsa-p256")
			s.Write("sys/policies/acl/no-sign", map[string]any{"policy": noSign})
			proxy := newPathCounter(t, s.Addr)
			cfg := tt.config(t, s)
			cfg.Address = proxy.srv.URL
			v := newVault(t, cfg)
			token := v.client.Token()
			lookups, logins := proxy.count("/v1/auth/token/lookup-self"), proxy.count("/v1/auth/approle/login")
			for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
				if _, err := v.Sign(t.Context(), [][]byte{[]byte("x")}); !errors.Is(err, ErrPermissionDenied) {
					t.Fatalf("sign without transit/sign: %v, want ErrPermissionDenied", err)
				}
			}
			time.Sleep(100 * time.Millisecond) // a check under way
			checks := proxy.count("/v1/auth/token/lookup-self") - lookups
			if checks < 1 || checks > 3 {
				t.Errorf("%d token lookups over 2 s of refusals, want 1 to 3", checks)
			}
			if n := proxy.count("/v1/auth/approle/login") - logins; n != 0 {
				t.Errorf("%d AppRole logins for a valid token lacking a policy", n)
			}
			if v.client.Token() != token {
				t.Error("the valid token was replaced")
			}
		})
	}
}
