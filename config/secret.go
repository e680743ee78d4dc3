package config

import (
	"cmp"
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
// named; no error holds the secret's value, nor a value given where the
// variable's name or the file's path belongs (see unreadable).
func (s SecretRef) Resolve() ([]byte, error) {
	switch {
	case s.Env != "" && !keys.ValidEnvName(s.Env):
		return nil, errors.New("env: not an environment variable name (letters, digits, underscore); the secret itself goes in the variable it names")
	case s.Env != "":
		v, ok := os.LookupEnv(s.Env)
		if !ok || v == "" {
			return nil, unsetError("environment variable " + s.Env + " is unset or empty")
		}
		return []byte(v), nil
	case s.File != "":
		b, err := os.ReadFile(s.File)
		if err != nil {
			return nil, errors.New(unreadable("secret file", s.File, err))
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
	if s.Env != "" && !keys.ValidEnvName(s.Env) {
		errs = append(errs, fieldErr(path+".env", "must be an environment variable name (letters, digits, underscore), not the secret itself"))
	}
	return errs
}

// unreadable says that the file name cannot be read and, when err is not
// nil, why; what is what it holds ("secret file"), empty for a file of any
// kind. It names the file only when the name looks like a path (holds a
// "/"): a value that does not may be the secret itself, pasted where its
// file's path belongs, and the message is printed and logged. The caller
// names the configuration key.
func unreadable(what, name string, err error) string {
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
			errs = append(errs, fieldErr(p, unreadable("", name, err)))
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
