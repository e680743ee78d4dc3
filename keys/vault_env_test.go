package keys

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestVaultUntrustedWhateverVaultEnv: Vault's certificate is checked
// against vault.tls alone. VAULT_* variables that the Vault client library
// reads by default (skip verification, another CA) do not make a server
// trusted that the configuration does not trust; no request reaches it.
func TestVaultUntrustedWhateverVaultEnv(t *testing.T) {
	f := newFakeTransit(t, true)
	ca := f.caFile(t)
	caPEM, err := os.ReadFile(ca)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		env  map[string]string
	}{
		{"VAULT_SKIP_VERIFY", map[string]string{"VAULT_SKIP_VERIFY": "true"}},
		{"VAULT_CACERT", map[string]string{"VAULT_CACERT": ca}},
		{"VAULT_CAPATH", map[string]string{"VAULT_CAPATH": filepath.Dir(ca)}},
		{"VAULT_CACERT_BYTES", map[string]string{"VAULT_CACERT_BYTES": string(caPEM)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			v, err := NewVault(t.Context(), f.config(t), nil)
			if err == nil {
				v.Close(t.Context())
			}
			if !errors.Is(err, ErrUntrustedServer) {
				t.Fatalf("NewVault = %v, want ErrUntrustedServer", err)
			}
			if n := len(f.requests()); n != 0 {
				t.Errorf("%d requests reached a server the configuration does not trust", n)
			}
		})
	}
}

// TestVaultConfigWinsOverVaultEnv: with VAULT_* variables set that the
// Vault client library reads by default, Clearance still sends every
// request to vault.address only (not to VAULT_AGENT_ADDR, nor through
// VAULT_PROXY_ADDR), checks the certificate for the name it dials, and
// sends its own token, vault.namespace and vault.tls's client certificate,
// no header of VAULT_HEADERS, at no rate VAULT_RATE_LIMIT sets, and does
// not look the address up as VAULT_SRV_LOOKUP asks.
func TestVaultConfigWinsOverVaultEnv(t *testing.T) {
	f := newFakeTransit(t, true)
	decoy := newFakeTransit(t, false)
	ca := f.caFile(t)
	envCert, envKey := clientCertFiles(t, "from-env")
	cfgCert, cfgKey := clientCertFiles(t, "from-config")
	tests := []struct {
		name      string
		env       map[string]string
		namespace string // vault.namespace
		tls       VaultTLS
		wantCert  string // the common name of the client certificate sent; empty for none
	}{
		{"VAULT_AGENT_ADDR", map[string]string{"VAULT_AGENT_ADDR": decoy.URL}, "", VaultTLS{CAFile: ca}, ""},
		{"VAULT_PROXY_ADDR", map[string]string{"VAULT_PROXY_ADDR": decoy.URL}, "", VaultTLS{CAFile: ca}, ""},
		{"VAULT_HTTP_PROXY", map[string]string{"VAULT_HTTP_PROXY": decoy.URL}, "", VaultTLS{CAFile: ca}, ""},
		{"VAULT_TLS_SERVER_NAME", map[string]string{"VAULT_TLS_SERVER_NAME": "vault.example.invalid"}, "", VaultTLS{CAFile: ca}, ""},
		{"VAULT_TOKEN", map[string]string{"VAULT_TOKEN": "decoy-token"}, "", VaultTLS{CAFile: ca}, ""},
		{"VAULT_NAMESPACE", map[string]string{"VAULT_NAMESPACE": "decoy"}, "", VaultTLS{CAFile: ca}, ""},
		{"VAULT_NAMESPACE and vault.namespace", map[string]string{"VAULT_NAMESPACE": "decoy"}, "team-a", VaultTLS{CAFile: ca}, ""},
		{"VAULT_HEADERS", map[string]string{"VAULT_HEADERS": `{"X-Decoy":"1"}`}, "", VaultTLS{CAFile: ca}, ""},
		{"VAULT_CLIENT_CERT", map[string]string{"VAULT_CLIENT_CERT": envCert, "VAULT_CLIENT_KEY": envKey}, "", VaultTLS{CAFile: ca}, ""},
		{"VAULT_CLIENT_CERT and vault.tls.client_cert_file", map[string]string{"VAULT_CLIENT_CERT": envCert, "VAULT_CLIENT_KEY": envKey}, "",
			VaultTLS{CAFile: ca, ClientCertFile: cfgCert, ClientKeyFile: cfgKey}, "from-config"},
		{"VAULT_RATE_LIMIT", map[string]string{"VAULT_RATE_LIMIT": "0.5:1"}, "", VaultTLS{CAFile: ca}, ""},
		{"VAULT_SRV_LOOKUP", map[string]string{"VAULT_SRV_LOOKUP": "true"}, "", VaultTLS{CAFile: ca}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			before, decoyBefore := len(f.requests()), len(decoy.requests())
			cfg := f.config(t)
			cfg.Namespace, cfg.TLS = tt.namespace, tt.tls
			v := newVault(t, cfg)
			mustSeal(t, v, "to the configured vault")
			if v.client.Limiter() != nil || v.client.SRVLookup() {
				t.Error("the client is rate-limited or looks Vault up by SRV record")
			}
			if n := len(decoy.requests()) - decoyBefore; n != 0 {
				t.Fatalf("%d requests went to the address in the environment", n)
			}
			reqs := f.requests()[before:]
			if len(reqs) == 0 {
				t.Fatal("no request reached vault.address")
			}
			for _, r := range reqs {
				if got := r.header.Get("X-Vault-Namespace"); got != tt.namespace {
					t.Errorf("%s %s: namespace %q, want %q", r.method, r.path, got, tt.namespace)
				}
				if got := r.header.Get("X-Vault-Token"); got != "fake-token" {
					t.Errorf("%s %s: token %q, want the configured one", r.method, r.path, got)
				}
				if r.header.Get("X-Decoy") != "" {
					t.Errorf("%s %s: carries a header from VAULT_HEADERS", r.method, r.path)
				}
				if r.clientCert != tt.wantCert {
					t.Errorf("%s %s: client certificate %q, want %q", r.method, r.path, r.clientCert, tt.wantCert)
				}
			}
		})
	}
}
