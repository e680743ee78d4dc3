package config

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/clearance-broker/clearance/keys"
)

// ErrSecretUnset is returned by SecretRef.Resolve when the referenced
// environment variable is unset or empty, or the referenced file is empty.
var ErrSecretUnset = errors.New("config: secret is unset")

// SecretRef points at a secret without holding it: exactly one of Env (the
// name of an environment variable) or File (a path) is set. A configuration
// never carries a secret literally.
type SecretRef struct {
	// Env is the name of an environment variable holding the secret,
	// taken whole, white space included: a key that already derived the
	// audit log's subject HMACs must not change under it (a trimmed
	// variable would silently give every subject another HMAC, and an
	// erasure would then miss the subject's key and recipients).
	Env string `yaml:"env"`
	// File is the path of a file holding the secret; surrounding white
	// space (a trailing newline) is trimmed.
	File string `yaml:"file"`
}

// IsZero reports whether the reference names nothing.
func (s SecretRef) IsZero() bool { return s.Env == "" && s.File == "" }

// String describes where the secret comes from, never the secret itself.
func (s SecretRef) String() string {
	switch {
	case s.Env != "":
		return "env:" + s.Env
	case s.File != "":
		return "file:" + s.File
	default:
		return "unset"
	}
}

// Resolve reads the secret: a variable's value whole, a file's trimmed of
// surrounding white space (the newline an editor ends it with). The same
// text with a trailing newline is so another secret in a variable than in
// a file (a Kubernetes secret made with --from-file and given as a
// variable keeps its newline): the README says to give a key the same way
// everywhere. It returns an error that matches ErrSecretUnset when the
// variable or file is empty (or white space only), or when nothing is
// named; no error holds the secret's value, nor a value given where the
// variable's name or the file's path belongs (see keys.UnreadableFile).
func (s SecretRef) Resolve() ([]byte, error) {
	switch {
	case s.Env != "" && !keys.ValidEnvName(s.Env):
		return nil, errors.New("env: not an environment variable name (letters, digits, underscore); the secret itself goes in the variable it names")
	case s.Env != "":
		v := os.Getenv(s.Env)
		if _, err := secretValue(v, ""); err != nil {
			return nil, unsetError("environment variable " + s.Env + " is unset or empty")
		}
		return []byte(v), nil
	case s.File != "":
		b, err := os.ReadFile(s.File)
		if err != nil {
			return nil, errors.New(keys.UnreadableFile("secret file", s.File, err))
		}
		return secretValue(string(b), "secret file "+s.File+" is empty")
	default:
		return nil, unsetError("no env or file given")
	}
}

// secretValue is a secret as read from its file, trimmed of surrounding
// white space; when nothing is left, an unsetError saying unset.
func secretValue(raw, unset string) ([]byte, error) {
	v := strings.TrimSpace(raw)
	if v == "" {
		return nil, unsetError(unset)
	}
	return []byte(v), nil
}

// unsetError says which secret is unset; it matches ErrSecretUnset.
type unsetError string

func (e unsetError) Error() string        { return string(e) }
func (e unsetError) Is(target error) bool { return target == ErrSecretUnset }

// validate checks that exactly one source is named (when required) and
// returns the problems found under path.
func (s SecretRef) validate(path string, required bool) []error {
	var errs []error
	if s.Env != "" && s.File != "" {
		errs = append(errs, fieldErr(path, "set env or file, not both"))
	}
	if required && s.IsZero() {
		errs = append(errs, fieldErr(path, "required: set env (a variable name) or file (a path)"))
	}
	if s.Env != "" && !keys.ValidEnvName(s.Env) {
		errs = append(errs, fieldErr(path+".env", "must be an environment variable name (letters, digits, underscore), not the secret itself"))
	}
	return errs
}

// MinSubjectKeyBytes is the shortest audit.hmac_key taken. Subject ids are
// few and guessable (customer numbers), so the HMAC that stands for them in
// the audit log is only as strong as its key: with a short one, whoever
// reads the log could hash every candidate id and find whose entries they
// are. 32 bytes is what `openssl rand -hex 16` writes; `openssl rand -hex
// 32` (64 characters) is what the example configuration suggests.
const MinSubjectKeyBytes = 32

// SubjectKey resolves audit.hmac_key and checks that it is at least
// MinSubjectKeyBytes long.
func (a Audit) SubjectKey() ([]byte, error) {
	k, err := a.HMACKey.Resolve()
	if err != nil {
		return nil, fmt.Errorf("audit.hmac_key: %w", err)
	}
	if len(k) < MinSubjectKeyBytes {
		return nil, fmt.Errorf("audit.hmac_key: %d bytes, at least %d needed (e.g. `openssl rand -hex 32`)", len(k), MinSubjectKeyBytes)
	}
	return k, nil
}

// CheckSecrets reads every secret and credential file the configuration
// refers to, as the parts that use them read them at start, and reports
// every one that cannot be read, is empty or (the audit HMAC key) is too
// short, each with its path (errors.Join of *FieldError). No message holds
// a secret's value. A reference to a variable whose name Validate refuses
// is left to Validate's report. It connects to nothing: whether NATS,
// Postgres and Vault take the credentials shows at start and on /readyz.
func (c *Config) CheckSecrets() error {
	var errs []error
	badName := func(s SecretRef) bool { return s.Env != "" && !keys.ValidEnvName(s.Env) }
	if _, err := c.Audit.SubjectKey(); err != nil && !badName(c.Audit.HMACKey) {
		errs = append(errs, fieldErr("audit.hmac_key", strings.TrimPrefix(err.Error(), "audit.hmac_key: ")))
	}
	password := func(p string, s *Store) {
		if s == nil || s.Password.IsZero() || badName(s.Password) {
			return
		}
		if _, err := s.Password.Resolve(); err != nil {
			errs = append(errs, fieldErr(p+".password", err.Error()))
		}
	}
	password("store", &c.Store)
	password("subject_keys.store", c.SubjectKeys.Store)
	for p, name := range map[string]string{"nats.creds_file": c.NATS.CredsFile, "nats.nkey_file": c.NATS.NKeyFile} {
		if name == "" {
			continue
		}
		if b, err := os.ReadFile(name); err != nil {
			errs = append(errs, fieldErr(p, keys.UnreadableFile("", name, err)))
		} else if len(strings.TrimSpace(string(b))) == 0 {
			errs = append(errs, fieldErr(p, name+" is empty"))
		}
	}
	if c.Vault != nil {
		if err := c.Vault.CheckCredentials(); err != nil {
			errs = append(errs, err)
		}
	}
	sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
	return errors.Join(errs...)
}
