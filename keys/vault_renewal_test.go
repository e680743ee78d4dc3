package keys

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/integration/vaulttest"
)

// switchable is a reverse proxy to a Vault that answers 503 while down is
// set, as a Vault does that is sealed or has no active node.
type switchable struct {
	down atomic.Bool
	srv  *httptest.Server
}

func newSwitchable(t *testing.T, target string) *switchable {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &switchable{}
	proxy := httputil.NewSingleHostReverseProxy(u)
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.down.Load() {
			http.Error(w, `{"errors":["Vault is sealed"]}`, http.StatusServiceUnavailable)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// clearancePolicy writes the policy the product ships and returns its name.
func clearancePolicy(t *testing.T, s *vaulttest.Server) string {
	t.Helper()
	policy, err := os.ReadFile(filepath.Join("..", "deploy", "vault", "clearance-policy.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	s.Write("sys/policies/acl/clearance", map[string]any{"policy": string(policy)})
	return "clearance"
}

// TestVaultTokenRenewalOutlivesVaultDown: Vault answers 503 when the token
// is due for renewal, and again before the token would expire. Renewal
// resumes once Vault answers: the token (periodic, renewable for good)
// lives on and key operations work. A renewer that gave up at the first
// failure let the token expire, an outage until restart.
func TestVaultTokenRenewalOutlivesVaultDown(t *testing.T) {
	s := startVault(t, "ecdsa-p256")
	const period = 10 * time.Second
	sec := s.Write("auth/token/create", map[string]any{"policies": []string{clearancePolicy(t, s)}, "period": "10s", "no_default_policy": true})
	proxy := newSwitchable(t, s.Addr)
	cfg := tokenConfig(t, s, sec.Auth.ClientToken)
	cfg.Address, cfg.DataKeyMaxUses, cfg.Timeout = proxy.srv.URL, 1, 2*time.Second
	start := time.Now()
	v := newVault(t, cfg)
	// Renewal falls due at 70-73 % of the period; Vault is down from 60 %
	// to 90 %, past the point where the client's own retries give up.
	time.Sleep(time.Until(start.Add(period * 6 / 10)))
	proxy.down.Store(true)
	time.Sleep(time.Until(start.Add(period * 9 / 10)))
	proxy.down.Store(false)
	time.Sleep(time.Until(start.Add(period * 13 / 10)))
	if _, err := v.Seal(t.Context(), []byte("x")); err != nil {
		t.Fatalf("seal once Vault answered again: %v", err)
	}
	if _, err := s.Client().Auth().Token().Lookup(sec.Auth.ClientToken); err != nil {
		t.Fatalf("token expired although Vault renews it: %v", err)
	}
}

// TestVaultTokenFileReplaced: the token reaches its maximum TTL and an
// agent (Vault Agent, an operator) writes a new one to auth.token_file;
// the instance takes the new token up instead of running on to the old
// one's end.
func TestVaultTokenFileReplaced(t *testing.T) {
	s := startVault(t, "ecdsa-p256")
	policy := clearancePolicy(t, s)
	old := s.Write("auth/token/create", map[string]any{"policies": []string{policy}, "ttl": "3s", "explicit_max_ttl": "3s", "no_default_policy": true})
	cfg := tokenConfig(t, s, old.Auth.ClientToken)
	cfg.DataKeyMaxUses = 1
	v := newVault(t, cfg)
	fresh := s.Write("auth/token/create", map[string]any{"policies": []string{policy}, "period": "1h", "no_default_policy": true})
	if err := os.WriteFile(cfg.Auth.TokenFile, []byte(fresh.Auth.ClientToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Second) // past the old token's end
	if _, err := v.Seal(t.Context(), []byte("x")); err != nil {
		t.Fatalf("seal after the old token's end: %v", err)
	}
}

// TestVaultAppRoleBatchToken: a batch token cannot be renewed; the
// instance keeps it until shortly before its end rather than logging in
// again and again (each login may use up one of the secret id's uses).
func TestVaultAppRoleBatchToken(t *testing.T) {
	s := startVault(t, "ecdsa-p256")
	policy := clearancePolicy(t, s)
	v := newVault(t, appRoleConfig(t, s, map[string]any{"token_policies": policy, "token_type": "batch", "token_ttl": "1h"}))
	first := v.client.Token()
	time.Sleep(2 * time.Second)
	if v.client.Token() != first {
		t.Fatal("a new AppRole login while the batch token had most of its hour left")
	}
	if _, err := v.Seal(t.Context(), []byte("x")); err != nil {
		t.Fatal(err)
	}
}

// TestVaultAppRoleNamespace: the AppRole login goes to the configured
// namespace, as every other request does.
func TestVaultAppRoleNamespace(t *testing.T) {
	var ns atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/auth/approle/login" {
			ns.Store(r.Header.Get("X-Vault-Namespace"))
		}
		http.Error(w, `{"errors":["permission denied"]}`, http.StatusForbidden)
	}))
	defer srv.Close()
	secretFile := filepath.Join(t.TempDir(), "secret-id")
	if err := os.WriteFile(secretFile, []byte("s"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := NewVault(t.Context(), VaultConfig{
		Address: srv.URL, Namespace: "team-a", Timeout: 2 * time.Second, MaxRetries: -1,
		Auth: VaultAuth{AppRole: &AppRoleAuth{RoleID: "r", SecretIDFile: secretFile}},
	}, nil)
	if err == nil {
		t.Fatal("a login Vault refused was taken")
	}
	if got, _ := ns.Load().(string); got != "team-a" {
		t.Fatalf("the login went to namespace %q, want team-a", got)
	}
}
