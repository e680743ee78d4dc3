package keys

import (
	"cmp"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"
)

// Defaults for VaultConfig fields left empty.
const (
	DefaultMount          = "transit"
	DefaultEncryptionKey  = "clearance-data"
	DefaultSigningKey     = "clearance-signing"
	DefaultAppRoleMount   = "approle"
	DefaultDataKeyMaxUses = 1 << 20
	DefaultDataKeyMaxAge  = 5 * time.Minute
	DefaultOpenCacheSize  = 4096
	DefaultOpenCacheTTL   = 10 * time.Minute
	DefaultKeyInfoTTL     = time.Minute
	DefaultSignBatchSize  = 256
	DefaultTimeout        = 10 * time.Second
	DefaultMaxRetries     = 2
)

// VaultConfig configures the Vault transit key service. Secrets are given
// only by reference (an environment variable name or a file path), never
// literally. The YAML keys are the broker config's `keys.vault` section.
// It is the only source of the Vault client's settings: VAULT_*
// environment variables (VAULT_ADDR, VAULT_AGENT_ADDR, VAULT_SKIP_VERIFY,
// VAULT_CACERT, VAULT_TOKEN, VAULT_NAMESPACE, ...) change nothing, though
// one the Vault client library cannot parse still fails NewVault.
type VaultConfig struct {
	// Address is Vault's URL, e.g. "https://vault.internal:8200".
	Address string `yaml:"address"`
	// Namespace is the Vault Enterprise namespace; empty for none.
	Namespace string `yaml:"namespace"`
	// Auth chooses how Clearance logs in: a token or AppRole.
	Auth VaultAuth `yaml:"auth"`
	// TLS configures the connection to Vault.
	TLS VaultTLS `yaml:"tls"`
	// Mount is the transit engine's mount path (default "transit").
	Mount string `yaml:"mount"`
	// EncryptionKey is the transit key (type aes256-gcm96) that wraps data
	// keys (default "clearance-data").
	EncryptionKey string `yaml:"encryption_key"`
	// SigningKey is the transit key (type ecdsa-p256 or ed25519) that signs
	// messages to partners and audit checkpoints (default "clearance-signing").
	SigningKey string `yaml:"signing_key"`
	// DataKeyMaxUses bounds the messages sealed under one data key (default
	// 2^20, at most 2^32).
	DataKeyMaxUses uint64 `yaml:"data_key_max_uses"`
	// DataKeyMaxAge bounds how long one data key seals messages (default 5m).
	// A rotated encryption key is used for new messages within this time.
	DataKeyMaxAge time.Duration `yaml:"data_key_max_age"`
	// OpenCacheSize bounds the unwrapped data keys kept for opening (default 4096).
	OpenCacheSize int `yaml:"open_cache_size"`
	// OpenCacheTTL bounds how long an unwrapped data key is kept (default
	// 10m); a key version retired with min_decryption_version stops opening
	// within this time.
	OpenCacheTTL time.Duration `yaml:"open_cache_ttl"`
	// KeyInfoTTL is how often the signing key's versions and public keys are
	// re-read from Vault (default 1m); a rotation is picked up within it.
	KeyInfoTTL time.Duration `yaml:"key_info_ttl"`
	// SignBatchSize is the number of payloads per transit sign request (default 256).
	SignBatchSize int `yaml:"sign_batch_size"`
	// Timeout bounds each Vault request (default 10s).
	Timeout time.Duration `yaml:"timeout"`
	// MaxRetries is the Vault client's retry count for 5xx and connection
	// errors (default 2; -1 disables retries).
	MaxRetries int `yaml:"max_retries"`
}

// VaultAuth selects exactly one login method.
type VaultAuth struct {
	// TokenEnv names an environment variable holding a Vault token.
	TokenEnv string `yaml:"token_env"`
	// TokenFile is a file holding a Vault token (e.g. written by Vault Agent).
	TokenFile string `yaml:"token_file"`
	// AppRole logs in with a role id and a secret id.
	AppRole *AppRoleAuth `yaml:"approle"`
}

// AppRoleAuth configures AppRole login.
type AppRoleAuth struct {
	// Mount is the AppRole auth mount path (default "approle").
	Mount string `yaml:"mount"`
	// RoleID is the role id (not a secret); or give RoleIDFile.
	RoleID string `yaml:"role_id"`
	// RoleIDFile is a file holding the role id.
	RoleIDFile string `yaml:"role_id_file"`
	// SecretIDFile is a file holding the secret id.
	SecretIDFile string `yaml:"secret_id_file"`
}

// VaultTLS configures TLS to Vault.
type VaultTLS struct {
	// CAFile is a PEM bundle of CAs that sign Vault's certificate.
	CAFile string `yaml:"ca_file"`
	// ClientCertFile and ClientKeyFile are a PEM client certificate and key
	// for mutual TLS; give both or neither.
	ClientCertFile string `yaml:"client_cert_file"`
	// ClientKeyFile is the client certificate's PEM private key.
	ClientKeyFile string `yaml:"client_key_file"`
	// ServerName overrides the name checked in Vault's certificate.
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify disables certificate checks; for tests only.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// WithDefaults returns a copy of c with empty fields set to their defaults.
func (c VaultConfig) WithDefaults() VaultConfig {
	set := func(s *string, d string) {
		if *s == "" {
			*s = d
		}
	}
	set(&c.Mount, DefaultMount)
	set(&c.EncryptionKey, DefaultEncryptionKey)
	set(&c.SigningKey, DefaultSigningKey)
	if c.DataKeyMaxUses == 0 {
		c.DataKeyMaxUses = DefaultDataKeyMaxUses
	}
	if c.DataKeyMaxAge == 0 {
		c.DataKeyMaxAge = DefaultDataKeyMaxAge
	}
	if c.OpenCacheSize == 0 {
		c.OpenCacheSize = DefaultOpenCacheSize
	}
	if c.OpenCacheTTL == 0 {
		c.OpenCacheTTL = DefaultOpenCacheTTL
	}
	if c.KeyInfoTTL == 0 {
		c.KeyInfoTTL = DefaultKeyInfoTTL
	}
	if c.SignBatchSize == 0 {
		c.SignBatchSize = DefaultSignBatchSize
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxRetries == 0 {
		c.MaxRetries = DefaultMaxRetries
	}
	if c.Auth.AppRole != nil {
		ar := *c.Auth.AppRole
		set(&ar.Mount, DefaultAppRoleMount)
		c.Auth.AppRole = &ar
	}
	return c
}

// Validate reports every problem in c at once, each with its YAML path.
// It checks the configuration as written; defaults fill empty fields.
func (c VaultConfig) Validate() error {
	var errs []error
	bad := func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf("keys: vault.%s: %s", path, fmt.Sprintf(format, args...)))
	}
	if c.Address == "" {
		bad("address", "required")
	} else if u, err := url.Parse(c.Address); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("address", "must be an http or https URL")
	} else if u.User != nil {
		bad("address", "must not carry credentials")
	}
	methods := 0
	if c.Auth.TokenEnv != "" {
		methods++
		if !ValidEnvName(c.Auth.TokenEnv) {
			bad("auth.token_env", "must be an environment variable name (letters, digits, underscore), not the secret itself")
		}
	}
	if c.Auth.TokenFile != "" {
		methods++
	}
	if ar := c.Auth.AppRole; ar != nil {
		methods++
		if (ar.RoleID == "") == (ar.RoleIDFile == "") {
			bad("auth.approle", "give exactly one of role_id and role_id_file")
		}
		if ar.SecretIDFile == "" {
			bad("auth.approle.secret_id_file", "required")
		}
		if strings.Contains(ar.Mount, " ") {
			bad("auth.approle.mount", "must be a mount path")
		}
	}
	if methods != 1 {
		bad("auth", "give exactly one of token_env, token_file and approle")
	}
	if (c.TLS.ClientCertFile == "") != (c.TLS.ClientKeyFile == "") {
		bad("tls", "give both client_cert_file and client_key_file, or neither")
	}
	for path, name := range map[string]string{"mount": c.Mount, "encryption_key": c.EncryptionKey, "signing_key": c.SigningKey} {
		if strings.ContainsAny(name, "/ ?#") {
			bad(path, "must be a plain name")
		}
	}
	if c.EncryptionKey != "" && c.EncryptionKey == c.SigningKey {
		bad("signing_key", "must differ from encryption_key")
	}
	if c.DataKeyMaxUses > MaxDataKeyUses {
		bad("data_key_max_uses", "at most 2^32 (AES-GCM with random nonces)")
	}
	for path, d := range map[string]time.Duration{"data_key_max_age": c.DataKeyMaxAge, "open_cache_ttl": c.OpenCacheTTL, "key_info_ttl": c.KeyInfoTTL, "timeout": c.Timeout} {
		if d < 0 {
			bad(path, "must not be negative")
		}
	}
	if c.OpenCacheSize < 0 {
		bad("open_cache_size", "must not be negative")
	}
	if c.SignBatchSize < 0 || c.SignBatchSize > 10000 {
		bad("sign_batch_size", "must be between 1 and 10000")
	}
	if c.MaxRetries < -1 {
		bad("max_retries", "must be -1 (no retries) or more")
	}
	if c.TLS.InsecureSkipVerify && strings.HasPrefix(c.Address, "http://") {
		bad("tls.insecure_skip_verify", "has no effect on an http address")
	}
	sortErrors(errs)
	return errors.Join(errs...)
}

// ValidEnvName reports whether s can name an environment variable: letters,
// digits and underscores, not starting with a digit. A field that names
// one (auth.token_env, a secret reference's env) takes nothing else, so
// that a token pasted there in place of its variable's name is refused,
// and refused without being repeated in the error.
func ValidEnvName(s string) bool {
	if s == "" || (s[0] >= '0' && s[0] <= '9') {
		return false
	}
	for _, r := range s {
		if !(r == '_' || (r >= 'A' && r <= 'Z') || (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9')) {
			return false
		}
	}
	return true
}

// sortErrors orders problems by message so that reports are stable.
func sortErrors(errs []error) {
	slices.SortFunc(errs, func(a, b error) int { return cmp.Compare(a.Error(), b.Error()) })
}

// CheckCredentials reads what the login method of c names, as the login at
// start reads it (the token's environment variable or file, AppRole's
// files), and reports each that cannot be read or is empty, with its YAML
// path and never its value. A file that cannot be read under a name that
// does not look like a path may be the secret itself pasted in its place:
// the error does not repeat it (UnreadableFile). It does not log in:
// whether Vault takes the credentials shows at start and on /readyz.
func (c VaultConfig) CheckCredentials() error {
	var errs []error
	bad := func(path string, err error) {
		errs = append(errs, fmt.Errorf("keys: vault.auth.%s: %w", path, err))
	}
	file := func(path, name string) {
		if name == "" {
			return
		}
		if _, err := readSecretFile(name); err != nil {
			bad(path, err)
		}
	}
	// A name that is no variable's is Validate's to report; it is not read.
	if c.Auth.TokenEnv != "" && ValidEnvName(c.Auth.TokenEnv) && strings.TrimSpace(os.Getenv(c.Auth.TokenEnv)) == "" {
		bad("token_env", fmt.Errorf("environment variable %s is unset or empty", c.Auth.TokenEnv))
	}
	file("token_file", c.Auth.TokenFile)
	if ar := c.Auth.AppRole; ar != nil {
		file("approle.role_id_file", ar.RoleIDFile)
		file("approle.secret_id_file", ar.SecretIDFile)
	}
	return errors.Join(errs...)
}

// UnreadableFile says that the file name cannot be read and, when err is
// not nil, why; what is what it holds ("secret file", "credential file"),
// empty for a file of any kind. It names the file only when the name looks
// like a path (holds a "/"): a value that does not may be the secret
// itself, pasted where its file's path belongs, and the message is printed
// and logged. The caller names the configuration key. Every file setting
// that may hold a secret's path, here and in package config, words its
// error with it.
func UnreadableFile(what, name string, err error) string {
	why := ""
	if err != nil {
		why = errText(err)
	}
	if strings.Contains(name, "/") {
		if why != "" {
			why = ": " + why
		}
		return "cannot read " + strings.TrimSpace(what+" "+name) + why
	}
	if why != "" {
		why = " (" + why + ")"
	}
	return "cannot read the " + cmp.Or(what, "file") + why + ": the value does not look like a file path" +
		" (give the file's path, ./NAME for one in the working directory)"
}

// errText is err's cause without the path an *os.PathError repeats.
func errText(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}
