package config

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// validWith returns testdata/valid.yaml, parsed, with edit applied.
func validWith(t *testing.T, edit func(*Config)) *Config {
	t.Helper()
	cfg, err := Parse(readValid(t), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	edit(cfg)
	return cfg
}

// wantProblems checks err against want: nil for a valid configuration,
// else substrings every one of which the error holds; and that the error
// holds none of secrets.
func wantProblems(t *testing.T, err error, want []string, secrets ...string) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Errorf("Validate: %v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("Validate accepted it, want %q", want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error does not contain %q:\n%v", w, err)
		}
	}
	for _, s := range secrets {
		if strings.Contains(err.Error(), s) {
			t.Errorf("error holds %q:\n%v", s, err)
		}
	}
}

// TestStoreDSN: a store DSN is a postgres:// URL without a password or a
// SQLite file. A Postgres DSN in libpq's keyword form has no scheme and was
// taken for a SQLite file path, --check-config passing it; it is refused,
// as is any DSN holding password=, and no error repeats the DSN.
func TestStoreDSN(t *testing.T) {
	const (
		keyword  = "store.dsn: reads as a libpq keyword DSN"
		password = "store.dsn: holds a literal password; give it by reference in store.password"
	)
	tests := []struct {
		name     string
		dsn      string
		password bool // store.password set, as valid.yaml has it
		want     []string
	}{
		{"postgres URL", "postgres://clearance@db.internal:5432/clearance?sslmode=require", true, nil},
		{"postgresql URL", "postgresql://clearance@db.internal/clearance", true, nil},
		{"sqlite URL", "sqlite:///var/lib/clearance/audit.db", false, nil},
		{"sqlite relative", "sqlite:audit.db", false, nil},
		{"plain path", "/var/lib/clearance/audit.db", false, nil},
		{"relative path", "audit.db", false, nil},
		{"path with = inside a name", "/var/lib/clearance/run=2/audit.db", false, nil},
		{"sqlite name holding =", "sqlite:run=2.db", false, nil},
		{"keyword DSN", "host=pg.internal user=clearance dbname=clearance", true, []string{keyword}},
		{"keyword DSN with a password", "host=pg.internal user=clearance password=hunter2 dbname=clearance", false,
			[]string{keyword, password}},
		{"one keyword", "dbname=clearance", false, []string{keyword}},
		{"keywords with spaces around =", "host = pg.internal dbname = clearance", false, []string{keyword}},
		{"URL password", "postgres://clearance:hunter2@db.internal/clearance", true, []string{password}},
		{"URL password parameter", "postgres://clearance@db.internal/clearance?password=hunter2", true, []string{password}},
		{"password parameter in upper case", "postgres://clearance@db.internal/clearance?sslmode=require&PASSWORD=hunter2", true, []string{password}},
		{"sqlite path holding password=", "sqlite:/tmp/password=hunter2", false, []string{password}},
		{"unknown scheme", "mysql://clearance@db.internal/clearance", false, []string{"store.dsn: unknown scheme"}},
		{"sqlite without a path", "sqlite://", false, []string{"store.dsn: a SQLite store needs a file path"}},
		{"sqlite in memory", "sqlite::memory:", false, []string{"store.dsn: a SQLite store needs a file path"}},
		{"password for sqlite", "/var/lib/clearance/audit.db", true, []string{"store.password: only a postgres:// store takes a password"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := validWith(t, func(c *Config) {
				c.Store.DSN = tt.dsn
				if !tt.password {
					c.Store.Password = SecretRef{}
				}
			})
			wantProblems(t, cfg.Validate(), tt.want, "hunter2", "pg.internal")
		})
	}
	// subject_keys.store is checked as store is.
	cfg := validWith(t, func(c *Config) { c.SubjectKeys.Store = &Store{DSN: "host=keys.internal password=hunter2 dbname=keys"} })
	wantProblems(t, cfg.Validate(), []string{"subject_keys.store.dsn: reads as a libpq keyword DSN",
		"subject_keys.store.dsn: holds a literal password; give it by reference in subject_keys.store.password"}, "hunter2", "keys.internal")
}

// TestDurationMinimums: the durations whose tiny values turn into load (a
// checkpoint tick, a retry, a shutdown, a request's wait) have a floor;
// the defaults (testdata/valid.yaml sets none of them) are above it.
func TestDurationMinimums(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Config)
		want []string
	}{
		{"defaults", func(*Config) {}, nil},
		{"checkpoint interval 1ms", func(c *Config) { c.Audit.CheckpointInterval = time.Millisecond },
			[]string{"audit.checkpoint_interval: must be at least 1s"}},
		{"checkpoint interval 999ms", func(c *Config) { c.Audit.CheckpointInterval = 999 * time.Millisecond },
			[]string{"audit.checkpoint_interval: must be at least 1s"}},
		{"checkpoint interval 1s", func(c *Config) { c.Audit.CheckpointInterval = time.Second }, nil},
		{"checkpoint interval 0", func(c *Config) { c.Audit.CheckpointInterval = 0 }, []string{"audit.checkpoint_interval"}},
		{"request timeout 1ms", func(c *Config) { c.HTTP.RequestTimeout = time.Millisecond },
			[]string{"http.request_timeout: must be at least 100ms"}},
		{"request timeout 100ms", func(c *Config) { c.HTTP.RequestTimeout = 100 * time.Millisecond }, nil},
		{"shutdown grace 1ms", func(c *Config) { c.Pipeline.ShutdownGrace = time.Millisecond },
			[]string{"pipeline.shutdown_grace: must be at least 100ms"}},
		{"shutdown grace 100ms", func(c *Config) { c.Pipeline.ShutdownGrace = 100 * time.Millisecond }, nil},
		{"backoff base 1ns", func(c *Config) { c.Pipeline.BackoffBase, c.Pipeline.BackoffMax = 1, time.Second },
			[]string{"pipeline.backoff_base: must be at least 100ms"}},
		{"backoff base 99ms", func(c *Config) { c.Pipeline.BackoffBase = 99 * time.Millisecond },
			[]string{"pipeline.backoff_base: must be at least 100ms"}},
		{"backoff base 100ms", func(c *Config) { c.Pipeline.BackoffBase = 100 * time.Millisecond }, nil},
		{"all at once", func(c *Config) {
			c.Audit.CheckpointInterval, c.HTTP.RequestTimeout, c.Pipeline.ShutdownGrace = -time.Second, 50*time.Millisecond, 10*time.Millisecond
		}, []string{"audit.checkpoint_interval", "http.request_timeout", "pipeline.shutdown_grace"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantProblems(t, validWith(t, tt.edit).Validate(), tt.want)
		})
	}
}

// TestParseOneDocument: the keys of a second YAML document were ignored
// without a word; a file holding one is refused, naming its line. A
// leading "---", or an empty document after the first, hides nothing.
func TestParseOneDocument(t *testing.T) {
	base := readValid(t)
	second := fmt.Sprintf("(root) (line %d): a second YAML document (after ---)", bytes.Count(base, []byte("\n"))+1)
	for _, tt := range []struct {
		name string
		give []byte
		want string
	}{
		{"second document", append(append(bytes.Clone(base), "---\n"...), "pipeline:\n  concurrency: 8\n"...),
			second},
		{"third document", append(bytes.Clone(base), "---\n---\nhttp: {listen: ':9090'}\n"...), "a second YAML document"},
		{"leading marker", append([]byte("---\n"), base...), ""},
		{"trailing marker", append(bytes.Clone(base), "---\n"...), ""},
		{"trailing comment", append(bytes.Clone(base), "---\n# nothing more\n"...), ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.give, noEnv)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Parse: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Parse = %v, want %q", err, tt.want)
			}
		})
	}
}

// TestSecretValueNotEchoed: a secret pasted where the name of its variable
// or the path of its file belongs is not repeated by the error that
// refuses it, which still names the configuration key.
func TestSecretValueNotEchoed(t *testing.T) {
	const pasted = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	dir := t.TempDir()

	_, err := SecretRef{File: pasted}.Resolve()
	if err == nil || strings.Contains(err.Error(), pasted) || !strings.Contains(err.Error(), "the value does not look like a file path") {
		t.Errorf("Resolve of a file that is not a path = %v", err)
	}
	missing := filepath.Join(dir, "hmac.key")
	if _, err := (SecretRef{File: missing}).Resolve(); err == nil || !strings.Contains(err.Error(), "cannot read secret file "+missing+": no such file or directory") {
		t.Errorf("Resolve of a missing path = %v, want it named", err)
	}
	if _, err := (SecretRef{Env: "hvs." + pasted}).Resolve(); err == nil || strings.Contains(err.Error(), pasted) {
		t.Errorf("Resolve of an env that is not a name = %v", err)
	}

	cfg := &Config{}
	cfg.Audit.HMACKey = SecretRef{File: pasted}
	cfg.Store.Password = SecretRef{Env: "hvs." + pasted}
	cfg.NATS.NKeyFile = "SUAM" + pasted
	err = cfg.CheckSecrets()
	wantProblems(t, err, []string{"audit.hmac_key: cannot read the secret file (no such file or directory): the value does not look like a file path",
		"nats.nkey_file: cannot read the file (no such file or directory): the value does not look like a file path"}, pasted)
	if strings.Contains(err.Error(), "store.password") {
		t.Errorf("CheckSecrets reports the env Validate refuses:\n%v", err)
	}

	cfg = validWith(t, func(c *Config) {
		c.Audit.HMACKey = SecretRef{Env: "hvs." + pasted}
		c.NATS.CredsFile = pasted
	})
	wantProblems(t, cfg.Validate(), []string{"audit.hmac_key.env: must be an environment variable name",
		"nats.creds_file: cannot read the file: the value does not look like a file path"}, pasted)

	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Errorf("CheckSecrets' errors are not *FieldError")
	}
}
