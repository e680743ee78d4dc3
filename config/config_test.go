package config

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/connectors"
	"github.com/clearance-broker/clearance/keys"
)

func noEnv(string) (string, bool) { return "", false }

func envMap(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// readValid returns testdata/valid.yaml.
func readValid(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/valid.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseValidFile(t *testing.T) {
	cfg, err := Parse(readValid(t), noEnv)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if got := cfg.NATS.MaxDeliver; got != 7 {
		t.Errorf("max_deliver = %d, want 7", got)
	}
	if got := cfg.NATS.Stream; got != "CLEARANCE_TRANSFERS" {
		t.Errorf("stream default = %q", got)
	}
	if got := cfg.InboundRegion.Consumer; got != "clearance-inbound" {
		t.Errorf("inbound consumer default = %q", got)
	}
	if got := cfg.Connectors["partner-webhook"].Kind; got != "webhook" {
		t.Errorf("connector kind = %q", got)
	}
}

func TestParseUnknownKeys(t *testing.T) {
	tests := []struct {
		name string
		give string
		want []string
	}{
		{"top level", "natz: {}\n", []string{"natz (line 1): unknown key"}},
		{"nested", "nats:\n  urls: [nats://a:1]\n  max_delivery: 3\n", []string{"nats.max_delivery (line 3): unknown key"}},
		{"several at once", "http:\n  port: 1\nstore:\n  path: x\n", []string{"http.port (line 2)", "store.path (line 4)"}},
		{"secret literal", "audit:\n  hmac_key: {value: s3cret}\n", []string{"audit.hmac_key.value (line 2): unknown key"}},
		{"connector outer key", "connectors:\n  p:\n    kind: webhook\n    url: x\n", []string{"connectors.p.url (line 4)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.give), noEnv)
			if err == nil {
				t.Fatal("Parse accepted unknown keys")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error leaks the literal: %q", err)
			}
		})
	}
}

func TestValidateListsEveryProblem(t *testing.T) {
	give := `
nats:
  urls: [http://user:pw@x:1]
  stream: "bad name"
  max_deliver: 0
  creds_file: /nonexistent/creds
store:
  dsn: postgres://u:hunter2@db/x
audit:
  hmac_key: {env: "not a name", file: /x}
  gather_window: 200ms
  checkpoint_stream: audit.checkpoints
http:
  listen: nope
connectors:
  "bad name": {}
inbound_region:
  subject: clearance.transfers.>
  recipients: [dc-tokyo, "dc.*"]
pipeline:
  concurrency: 0
  gc_percent: 10
  memory_limit_bytes: 1000000
  backoff_base: 2s
  backoff_max: 1s
logging:
  level: loud
live_policy:
  sync_timeout: 0s
  snapshot_every: -2
erasure:
  escalate_after: 10s
subject_keys:
  cache_size: -1
  cache_ttl: 48h
  store:
    dsn: postgres://keys:hunter3@keys.example/k
`
	cfg, err := Parse([]byte(give), noEnv)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	err = cfg.Validate()
	if err == nil {
		t.Fatal("Validate accepted a bad config")
	}
	want := []string{
		"nats.urls[0]: scheme \"http\"", "nats.urls[0]: credentials in the URL",
		"nats.stream", "nats.max_deliver", "nats.creds_file",
		"store.dsn: holds a literal password",
		"vault: required",
		"audit.hmac_key: set env or file, not both", "audit.hmac_key.env", "audit.gather_window: must be from 0 (never wait) to 10ms",
		"audit.checkpoint_stream: want a stream name",
		"registry.dir: required", "http.listen",
		"connectors.bad name: name", "connectors.bad name.kind: required",
		"inbound_region.stream", "inbound_region.subject: must not overlap", "inbound_region.local_subject",
		"inbound_region.recipients[1]: a party id",
		"pipeline.concurrency", "pipeline.backoff_max", "pipeline.gc_percent", "pipeline.memory_limit_bytes: must be 0", "logging.level",
		"live_policy.sync_timeout", "live_policy.snapshot_every", "erasure.escalate_after", "subject_keys.cache_size", "subject_keys.cache_ttl",
		"subject_keys.store.dsn: holds a literal password; give it by reference in subject_keys.store.password",
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("missing %q in:\n%v", w, err)
		}
	}
	if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "hunter3") || strings.Contains(err.Error(), "pw@") {
		t.Errorf("error leaks a secret:\n%v", err)
	}
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Errorf("errors are not *FieldError")
	}
}

func TestEnvOverrides(t *testing.T) {
	b := readValid(t)
	env := envMap(map[string]string{
		"CLEARANCE_NATS_URLS":              "nats://a:1, nats://b:2",
		"CLEARANCE_NATS_ACK_WAIT":          "45s",
		"CLEARANCE_PIPELINE_CONCURRENCY":   "3",
		"CLEARANCE_DEV_KEYRING_PATH":       "/tmp/ring.json",
		"CLEARANCE_INBOUND_REGION_STREAM":  "R2",
		"CLEARANCE_ERASURE_ESCALATE_AFTER": "24h",
		"CLEARANCE_SUBJECT_KEYS_CACHE_TTL": "30s",
	})
	cfg, err := Parse(b, env)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cfg.NATS.URLs, " "); got != "nats://a:1 nats://b:2" {
		t.Errorf("urls = %q", got)
	}
	if cfg.NATS.AckWait != 45*time.Second || cfg.Pipeline.Concurrency != 3 || cfg.InboundRegion.Stream != "R2" {
		t.Errorf("overrides not applied: %+v %+v", cfg.NATS, cfg.Pipeline)
	}
	if cfg.Erasure.EscalateAfter != 24*time.Hour || cfg.SubjectKeys.CacheTTL != 30*time.Second ||
		cfg.SubjectKeys.CacheSize != 100000 || cfg.LivePolicy.SyncTimeout != time.Second {
		t.Errorf("live-policy keys: %+v %+v %+v", cfg.Erasure, cfg.SubjectKeys, cfg.LivePolicy)
	}
	if cfg.DevKeyring == nil || cfg.DevKeyring.Path != "/tmp/ring.json" {
		t.Errorf("dev_keyring not allocated from env: %+v", cfg.DevKeyring)
	}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "dev_keyring: set vault or dev_keyring, not both") {
		t.Errorf("Validate = %v, want vault/dev_keyring conflict", err)
	}

	_, err = Parse(b, envMap(map[string]string{"CLEARANCE_NATS_MAX_DELIVER": "many"}))
	if err == nil || !strings.Contains(err.Error(), "nats.max_deliver: from CLEARANCE_NATS_MAX_DELIVER") {
		t.Errorf("bad env value error = %v", err)
	}
}

func TestSecretRefResolve(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "key")
	if err := os.WriteFile(file, []byte("  k3y\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CLEARANCE_TEST_SECRET", "envk3y")
	tests := []struct {
		name    string
		give    SecretRef
		want    string
		wantErr error
	}{
		{"env", SecretRef{Env: "CLEARANCE_TEST_SECRET"}, "envk3y", nil},
		{"file trimmed", SecretRef{File: file}, "k3y", nil},
		{"unset env", SecretRef{Env: "CLEARANCE_TEST_SECRET_UNSET"}, "", ErrSecretUnset},
		{"nothing", SecretRef{}, "", ErrSecretUnset},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.give.Resolve()
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if string(got) != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// TestSecretRefEnvWholeFileTrimmed: a variable's value is the secret whole,
// white space included, as it was before files and variables were compared:
// trimmed, a key that already derived the audit log's subject HMACs would
// change under it with no error. A file's is trimmed of the newline an
// editor ends it with. White space alone is unset either way.
func TestSecretRefEnvWholeFileTrimmed(t *testing.T) {
	tests := []struct {
		name    string
		give    string
		env     string
		file    string
		wantErr error
	}{
		{"trailing newline", "k3y-0123456789abcdef\n", "k3y-0123456789abcdef\n", "k3y-0123456789abcdef", nil},
		{"crlf and spaces", "  k3y-0123456789abcdef \r\n", "  k3y-0123456789abcdef \r\n", "k3y-0123456789abcdef", nil},
		{"as is", "k3y-0123456789abcdef", "k3y-0123456789abcdef", "k3y-0123456789abcdef", nil},
		{"white space only", " \n", "", "", ErrSecretUnset},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "secret")
			if err := os.WriteFile(file, []byte(tt.give), 0o600); err != nil {
				t.Fatal(err)
			}
			t.Setenv("CLEARANCE_TEST_SECRET", tt.give)
			fromEnv, envErr := SecretRef{Env: "CLEARANCE_TEST_SECRET"}.Resolve()
			fromFile, fileErr := SecretRef{File: file}.Resolve()
			if !errors.Is(envErr, tt.wantErr) || !errors.Is(fileErr, tt.wantErr) {
				t.Fatalf("errors: env %v, file %v; want %v", envErr, fileErr, tt.wantErr)
			}
			if string(fromEnv) != tt.env || string(fromFile) != tt.file {
				t.Errorf("env %q, file %q; want %q and %q", fromEnv, fromFile, tt.env, tt.file)
			}
		})
	}
}

type testConnConfig struct {
	URL     string `yaml:"url"`
	Retries int    `yaml:"retries"`
}

func (c *testConnConfig) Validate() error {
	if c.URL == "" {
		return errors.New("url: required")
	}
	return nil
}

func TestValidateWithConnectors(t *testing.T) {
	kinds, err := connectors.NewRegistry(connectors.NewKind("hook",
		func() *testConnConfig { return &testConnConfig{} },
		func(context.Context, string, *testConnConfig, connectors.Deps) (connectors.Connector, error) {
			return nil, errors.New("not built in this test")
		}))
	if err != nil {
		t.Fatal(err)
	}
	base := readValid(t)
	tests := []struct {
		name string
		give string
		want []string
	}{
		{"valid", "connectors:\n  a: {kind: hook, config: {url: https://x}}\n", nil},
		{"unknown kind", "connectors:\n  a: {kind: ftp}\n", []string{`connectors.a.kind: unknown kind "ftp" (have hook)`}},
		{"unknown key in kind config", "connectors:\n  a:\n    kind: hook\n    config: {url: x, retry: 1}\n", []string{"connectors.a.config.retry (line 20): unknown key"}},
		{"kind config invalid", "connectors:\n  a: {kind: hook, config: {retries: 2}}\n  b: {kind: nope}\n", []string{"connectors.a.config: ", "url: required", "connectors.b.kind"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := strings.Replace(string(base), "connectors:\n  partner-webhook:\n    kind: webhook\n    config:\n      default_url: https://partner.example/clearance\n", tt.give, 1)
			cfg, err := Parse([]byte(doc), noEnv)
			if err != nil {
				t.Fatal(err)
			}
			err = cfg.ValidateWith(kinds)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("ValidateWith: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("ValidateWith accepted a bad connector")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, p := range []string{"testdata/valid.yaml"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("nats: [1, 2]\n"))
	f.Add([]byte("connectors: {a: {kind: x, config: [1]}}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data, noEnv)
		if err != nil {
			return
		}
		_ = cfg.Validate()
	})
}

// inboundRegion returns testdata/valid.yaml with the inbound region's
// subject and local_subject replaced.
func inboundRegion(t *testing.T, subject, local string) *Config {
	t.Helper()
	b := bytes.Replace(readValid(t), []byte("subject: clearance.region.eu.>"), []byte(fmt.Sprintf("subject: %q", subject)), 1)
	b = bytes.Replace(b, []byte("local_subject: regional.eu.transfers"), []byte(fmt.Sprintf("local_subject: %q", local)), 1)
	cfg, err := Parse(b, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.InboundRegion.Subject != subject || cfg.InboundRegion.LocalSubject != local {
		t.Fatalf("inbound region not replaced: %+v", cfg.InboundRegion)
	}
	return cfg
}

// TestInboundSubjectMustNotOverlapClearance: the inbound region's subject
// may not take any of the subjects Clearance itself uses, matched as NATS
// matches a filter, wildcards included.
func TestInboundSubjectMustNotOverlapClearance(t *testing.T) {
	const overlap = "inbound_region.subject: must not overlap"
	tests := []struct {
		subject string
		want    string
	}{
		{"clearance.transfers.>", overlap + " clearance.transfers.>"},
		{"clearance.receipts.>", overlap + " clearance.receipts.>"},
		{"clearance.replies.>", overlap + " clearance.replies.>"},
		{"clearance.deadletter.eu", overlap + " clearance.deadletter.>"},
		{"clearance.>", overlap + " clearance.transfers.>"},
		{">", overlap + " clearance.transfers.>"},
		{"clearance.*.eu", overlap + " clearance.transfers.>"},
		{"*.deadletter.>", overlap + " clearance.deadletter.>"},
		{"clearance.consents.>", overlap + " clearance.consents.>"},
		{"clearance.erasures.crm", overlap + " clearance.erasures.>"},
		{"clearance.erasure.acks.*", overlap + " clearance.erasure.acks.>"},
		{"clearance.shred.destroyed", overlap + " clearance.shred.destroyed"},
		{"clearance.registry.*", overlap + " clearance.registry.applied"},
		{"clearance.audit.>", overlap + " clearance.audit.checkpoints.>"},
		{"clearance.region.eu.>", ""},
		{"clearance.region.>", ""},
		{"clearance.transfers", ""},
		{"region.eu.*", ""},
	}
	for _, tt := range tests {
		t.Run(tt.subject, func(t *testing.T) {
			err := inboundRegion(t, tt.subject, "regional.eu.transfers").Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Validate = %v, want %q", err, tt.want)
			}
		})
	}
}

// TestInboundLocalSubject: the opened record is republished in plaintext on
// local_subject, so it may not be a subject the inbound stream captures (the
// record would come back in and be dead-lettered as it is), nor one of
// Clearance's own, nor a wildcard, which no message can be published on.
func TestInboundLocalSubject(t *testing.T) {
	const (
		matched  = "inbound_region.local_subject: must not match inbound_region.subject"
		own      = "inbound_region.local_subject: must be outside clearance.>"
		wildcard = "inbound_region.local_subject: required: a NATS subject without wildcards"
	)
	tests := []struct {
		name    string
		subject string
		local   string
		want    string
	}{
		{"outside the filter", "clearance.region.eu.>", "regional.eu.transfers", ""},
		{"matched by >", "inbound.zz.>", "inbound.zz.local", matched + " inbound.zz.>"},
		{"matched by > deeper", "inbound.zz.>", "inbound.zz.local.records", matched},
		{"matched by *", "inbound.*.in", "inbound.zz.in", matched},
		{"the filter itself", "inbound.zz.in", "inbound.zz.in", matched},
		{"> needs a token", "inbound.zz.>", "inbound.zz", ""},
		{"* is one token", "inbound.*", "inbound.zz.local", ""},
		{"under clearance.region", "clearance.region.eu.>", "clearance.region.eu.local", own},
		{"dead letters", "clearance.region.eu.>", "clearance.deadletter.x", own},
		{"transfers", "clearance.region.eu.>", "clearance.transfers.crm", own},
		{"another clearance subject", "inbound.zz.>", "clearance.local.records", own},
		{"the bare token", "inbound.zz.>", "clearance", ""},
		{"full wildcard", "inbound.zz.>", "regional.>", wildcard},
		{"token wildcard", "inbound.zz.>", "regional.*.transfers", wildcard},
		{"empty", "inbound.zz.>", "", wildcard},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := inboundRegion(t, tt.subject, tt.local).Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Validate = %v, want %q", err, tt.want)
			}
		})
	}
}

// TestAuditGatherWindow: the default is the audit log's own; 0 in the file
// means never wait, which the audit log spells as a negative window.
func TestAuditGatherWindow(t *testing.T) {
	b := readValid(t)
	cfg, err := Parse(b, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Audit.GatherWindowOption(); got != audit.DefaultGatherWindow {
		t.Errorf("default window %v, want %v", got, audit.DefaultGatherWindow)
	}
	cfg, err = Parse(bytes.Replace(b, []byte("audit:\n"), []byte("audit:\n  gather_window: 0s\n"), 1), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if got := cfg.Audit.GatherWindowOption(); got >= 0 {
		t.Errorf("window 0s as %v, want negative (never wait)", got)
	}
}

func TestCheckSecrets(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	longKey := strings.Repeat("k", MinSubjectKeyBytes)
	goodKey, shortKey := write("hmac", longKey+"\n"), write("short", "hunter2-secret\n")
	emptyCreds := write("creds", " \n")
	t.Setenv("CLEARANCE_TEST_PG_PASSWORD", "")

	cfg := &Config{}
	cfg.Audit.HMACKey = SecretRef{File: goodKey}
	if err := cfg.CheckSecrets(); err != nil {
		t.Fatalf("good secrets: %v", err)
	}
	if k, err := cfg.Audit.SubjectKey(); err != nil || string(k) != longKey {
		t.Fatalf("SubjectKey = %q, %v", k, err)
	}

	cfg.Audit.HMACKey = SecretRef{File: shortKey}
	cfg.Store.Password = SecretRef{Env: "CLEARANCE_TEST_PG_PASSWORD"}
	cfg.NATS.CredsFile = emptyCreds
	cfg.NATS.NKeyFile = filepath.Join(dir, "missing.nk")
	cfg.Vault = &keys.VaultConfig{Auth: keys.VaultAuth{TokenFile: filepath.Join(dir, "missing.token")}}
	err := cfg.CheckSecrets()
	if err == nil {
		t.Fatal("bad secrets passed")
	}
	msg := err.Error()
	for _, want := range []string{
		"audit.hmac_key: 14 bytes, at least 32 needed",
		"store.password: environment variable CLEARANCE_TEST_PG_PASSWORD is unset or empty",
		"nats.creds_file: " + emptyCreds + " is empty",
		"nats.nkey_file: cannot read " + filepath.Join(dir, "missing.nk") + ": no such file or directory",
		"vault.auth.token_file",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("missing %q in:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "hunter2") {
		t.Errorf("a secret's value is in the error:\n%s", msg)
	}
	if _, err := cfg.Audit.SubjectKey(); err == nil || !strings.Contains(err.Error(), "openssl rand -hex 32") {
		t.Errorf("short key: SubjectKey err = %v", err)
	}
}
