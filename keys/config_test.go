package keys

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestVaultConfigValidate(t *testing.T) {
	base := func() VaultConfig {
		return VaultConfig{Address: "https://vault.internal:8200", Auth: VaultAuth{TokenFile: "/run/secrets/vault-token"}}
	}
	with := func(f func(*VaultConfig)) VaultConfig { c := base(); f(&c); return c }
	tests := []struct {
		name string
		give VaultConfig
		want []string // substrings of the error; empty means valid
	}{
		{"token file", base(), nil},
		{"token env", with(func(c *VaultConfig) { c.Auth = VaultAuth{TokenEnv: "VAULT_TOKEN"} }), nil},
		{"approle", with(func(c *VaultConfig) {
			c.Auth = VaultAuth{AppRole: &AppRoleAuth{RoleID: "r", SecretIDFile: "/run/secrets/secret-id"}}
		}), nil},
		{"mutual tls", with(func(c *VaultConfig) {
			c.TLS = VaultTLS{CAFile: "ca.pem", ClientCertFile: "c.pem", ClientKeyFile: "k.pem", ServerName: "vault"}
		}), nil},
		{"missing address", with(func(c *VaultConfig) { c.Address = "" }), []string{"vault.address: required"}},
		{"address not a url", with(func(c *VaultConfig) { c.Address = "vault:8200" }), []string{"vault.address: must be an http or https URL"}},
		{"credentials in address", with(func(c *VaultConfig) { c.Address = "https://u:p@vault" }), []string{"vault.address: must not carry credentials"}},
		{"no auth", with(func(c *VaultConfig) { c.Auth = VaultAuth{} }), []string{"vault.auth: give exactly one"}},
		{"two auth methods", with(func(c *VaultConfig) { c.Auth.TokenEnv = "VAULT_TOKEN" }), []string{"vault.auth: give exactly one"}},
		{"token in token_env", with(func(c *VaultConfig) { c.Auth = VaultAuth{TokenEnv: "hvs.CAESIJ1234abcd"} }),
			[]string{"vault.auth.token_env: must be an environment variable name (letters, digits, underscore), not the secret itself"}},
		{"approle without secret id", with(func(c *VaultConfig) {
			c.Auth = VaultAuth{AppRole: &AppRoleAuth{RoleID: "r"}}
		}), []string{"vault.auth.approle.secret_id_file: required"}},
		{"approle with both role ids", with(func(c *VaultConfig) {
			c.Auth = VaultAuth{AppRole: &AppRoleAuth{RoleID: "r", RoleIDFile: "f", SecretIDFile: "s"}}
		}), []string{"vault.auth.approle: give exactly one of role_id and role_id_file"}},
		{"half a client cert", with(func(c *VaultConfig) { c.TLS.ClientCertFile = "c.pem" }), []string{"vault.tls: give both"}},
		{"too many uses", with(func(c *VaultConfig) { c.DataKeyMaxUses = 1<<32 + 1 }), []string{"vault.data_key_max_uses"}},
		{"negative age", with(func(c *VaultConfig) { c.DataKeyMaxAge = -time.Second }), []string{"vault.data_key_max_age: must not be negative"}},
		{"key name with slash", with(func(c *VaultConfig) { c.EncryptionKey = "a/b" }), []string{"vault.encryption_key: must be a plain name"}},
		{"same key twice", with(func(c *VaultConfig) { c.EncryptionKey, c.SigningKey = "k", "k" }), []string{"vault.signing_key: must differ"}},
		{"all problems at once", VaultConfig{DataKeyMaxAge: -1, SignBatchSize: -1}, []string{"vault.address", "vault.auth", "vault.data_key_max_age", "vault.sign_batch_size"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.give.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tt.want)
			}
			if strings.Contains(err.Error(), "CAESIJ") {
				t.Errorf("the error repeats a token: %v", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestVaultConfigDefaults(t *testing.T) {
	c := VaultConfig{Auth: VaultAuth{AppRole: &AppRoleAuth{}}}.WithDefaults()
	if c.Mount != "transit" || c.EncryptionKey != "clearance-data" || c.SigningKey != "clearance-signing" ||
		c.Auth.AppRole.Mount != "approle" || c.DataKeyMaxUses != DefaultDataKeyMaxUses || c.DataKeyMaxAge != DefaultDataKeyMaxAge {
		t.Errorf("defaults not applied: %+v", c)
	}
}

// TestCheckCredentialsNotEchoed: a token pasted where the name of its
// variable or the path of its file belongs is refused without being
// repeated, and the error names the key; a file named by a path is named.
func TestCheckCredentialsNotEchoed(t *testing.T) {
	const token = "hvs.CAESIJ1234abcdEFGH5678"
	missing := filepath.Join(t.TempDir(), "vault-token")
	tests := []struct {
		name string
		auth VaultAuth
		want string
	}{
		{"token in token_file", VaultAuth{TokenFile: token}, "keys: vault.auth.token_file: cannot read the credential file (no such file or directory): the value does not look like a file path"},
		{"secret id in secret_id_file", VaultAuth{AppRole: &AppRoleAuth{RoleID: "r", SecretIDFile: token}}, "keys: vault.auth.approle.secret_id_file: cannot read the credential file"},
		{"unset variable", VaultAuth{TokenEnv: "CLEARANCE_TEST_UNSET_TOKEN"}, "vault.auth.token_env: environment variable CLEARANCE_TEST_UNSET_TOKEN is unset or empty"},
		{"missing file", VaultAuth{TokenFile: missing}, "vault.auth.token_file: cannot read credential file " + missing + ": no such file or directory"},
	}
	// A token in token_env is Validate's to refuse (TestVaultConfigValidate);
	// it is not looked up as a variable, and not repeated.
	if err := (VaultConfig{Address: "https://vault.internal:8200", Auth: VaultAuth{TokenEnv: token}}).CheckCredentials(); err != nil {
		t.Errorf("CheckCredentials with a token in token_env = %v, want it left to Validate", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := VaultConfig{Address: "https://vault.internal:8200", Auth: tt.auth}.CheckCredentials()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("CheckCredentials = %v, want %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "CAESIJ") {
				t.Errorf("the error repeats the token: %v", err)
			}
		})
	}
}
