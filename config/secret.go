package config

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
)

// ErrSecretUnset is returned by SecretRef.Resolve when the referenced
// environment variable is unset or empty, or the referenced file is empty.
var ErrSecretUnset = errors.New("config: secret is unset")

// SecretRef points at a secret without holding it: exactly one of Env (the
// name of an environment variable) or File (a path) is set. A configuration
// never carries a secret literally.
type SecretRef struct {
	// Env is the name of an environment variable holding the secret.
	Env string `yaml:"env"`
	// File is the path of a file holding the secret; surrounding whitespace
	// is trimmed.
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

// Resolve reads the secret. It returns an error that matches
// ErrSecretUnset when the variable or file is empty, or when nothing is
// named; no error holds the secret's value.
func (s SecretRef) Resolve() ([]byte, error) {
	switch {
	case s.Env != "":
		v, ok := os.LookupEnv(s.Env)
		if !ok || v == "" {
			return nil, unsetError("environment variable " + s.Env + " is unset or empty")
		}
		return []byte(v), nil
	case s.File != "":
		b, err := os.ReadFile(s.File)
		if err != nil {
			return nil, fmt.Errorf("cannot read secret file %s: %s", s.File, errText(err))
		}
		v := strings.TrimSpace(string(b))
		if v == "" {
			return nil, unsetError("secret file " + s.File + " is empty")
		}
		return []byte(v), nil
	default:
		return nil, unsetError("no env or file given")
	}
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
	if s.Env != "" && !validEnvName(s.Env) {
		errs = append(errs, fieldErr(path+".env", "must be an environment variable name (letters, digits, underscore), not the secret itself"))
	}
	return errs
}

func validEnvName(s string) bool {
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
// a secret's value. It connects to nothing: whether NATS, Postgres and
// Vault take the credentials shows at start and on /readyz.
func (c *Config) CheckSecrets() error {
	var errs []error
	if _, err := c.Audit.SubjectKey(); err != nil {
		errs = append(errs, fieldErr("audit.hmac_key", strings.TrimPrefix(err.Error(), "audit.hmac_key: ")))
	}
	password := func(p string, s *Store) {
		if s == nil || s.Password.IsZero() {
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
			errs = append(errs, fieldErr(p, "cannot read "+name+": "+errText(err)))
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

// errText is err's cause without the path an *os.PathError repeats.
func errText(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}
