package keys

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestVaultCredentialFileNotEchoed: a token or secret id pasted where the
// path of its file belongs fails NewVault with an error that names the
// configuration key and not the value; a missing file named by a path is
// named.
func TestVaultCredentialFileNotEchoed(t *testing.T) {
	const pasted = "hvs.CAESIPastedTokenValue"
	missing := filepath.Join(t.TempDir(), "vault-token")
	tests := []struct {
		name string
		auth VaultAuth
		want string
	}{
		{"token in token_file", VaultAuth{TokenFile: pasted}, "vault.auth.token_file: cannot read the credential file (no such file or directory): the value does not look like a file path"},
		{"secret id in secret_id_file", VaultAuth{AppRole: &AppRoleAuth{RoleID: "r", SecretIDFile: pasted}}, "vault.auth.approle.secret_id_file: cannot read the credential file"},
		{"role id in role_id_file", VaultAuth{AppRole: &AppRoleAuth{RoleIDFile: pasted, SecretIDFile: missing}}, "vault.auth.approle.role_id_file: cannot read the credential file"},
		{"missing file", VaultAuth{TokenFile: missing}, "vault.auth.token_file: cannot read credential file " + missing + ": no such file or directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// No request is sent: the file is read before any.
			v, err := NewVault(t.Context(), VaultConfig{Address: "https://vault.invalid:8200", Auth: tt.auth}, nil)
			if err == nil {
				v.Close(t.Context())
				t.Fatal("NewVault took a credential file that does not exist")
			}
			if strings.Contains(err.Error(), pasted) {
				t.Errorf("the error repeats the pasted value: %v", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("NewVault = %v, want %q", err, tt.want)
			}
		})
	}
}
