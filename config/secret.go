package config

import (
	"errors"
	"fmt"
	"os"
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

// Resolve reads the secret. It returns ErrSecretUnset (wrapped) when the
// variable or file is empty; the error never holds the secret's value.
func (s SecretRef) Resolve() ([]byte, error) {
	switch {
	case s.Env != "":
		v, ok := os.LookupEnv(s.Env)
		if !ok || v == "" {
			return nil, fmt.Errorf("config: environment variable %s: %w", s.Env, ErrSecretUnset)
		}
		return []byte(v), nil
	case s.File != "":
		b, err := os.ReadFile(s.File)
		if err != nil {
			return nil, fmt.Errorf("config: read secret file %s: %w", s.File, err)
		}
		v := strings.TrimSpace(string(b))
		if v == "" {
			return nil, fmt.Errorf("config: secret file %s: %w", s.File, ErrSecretUnset)
		}
		return []byte(v), nil
	default:
		return nil, ErrSecretUnset
	}
}

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
