package config_test

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/clearance-broker/clearance/config"
	"github.com/clearance-broker/clearance/connectors"
	"github.com/clearance-broker/clearance/connectors/natsregion"
	"github.com/clearance-broker/clearance/connectors/webhook"
)

// noEnv is an environment without variables.
func noEnv(string) (string, bool) { return "", false }

// example returns the connector kinds serve has and the commented example
// configuration the docs point to.
func example(t *testing.T) (*connectors.Registry, []byte) {
	t.Helper()
	kinds, err := connectors.NewRegistry(webhook.Kind(), natsregion.Kind())
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("../examples/config/clearance.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return kinds, b
}

// The commented example that the docs point to must stay valid.
func TestExampleConfigIsValid(t *testing.T) {
	kinds, b := example(t)
	cfg, err := config.Parse(b, noEnv)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if err := cfg.ValidateWith(kinds); err != nil {
		t.Fatalf("ValidateWith:\n%v", err)
	}
	if cfg.Vault == nil || cfg.NATS.Replicas != 3 || len(cfg.Connectors) != 3 {
		t.Errorf("example not read as written: %+v", cfg.NATS)
	}
}

// The README's configuration snippets must be read as they are written: a
// connector's settings once sat beside its kind there, where the
// configuration has them under config, and a first serve refused them.
func TestReadmeConfigSnippets(t *testing.T) {
	kinds, base := example(t)
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	snippets := 0
	for _, block := range strings.Split(string(readme), "```yaml\n")[1:] {
		block = block[:strings.Index(block, "```")]
		if !strings.HasPrefix(block, "connectors:") {
			continue
		}
		snippets++
		snippet, err := config.Parse([]byte(block), noEnv)
		if err != nil {
			t.Fatalf("README snippet:\n%s\nParse: %v", block, err)
		}
		cfg, err := config.Parse(base, noEnv)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Connectors = snippet.Connectors
		if err := cfg.ValidateWith(kinds); err != nil {
			t.Errorf("README snippet:\n%s\nValidateWith:\n%v", block, err)
		}
	}
	if snippets == 0 {
		t.Fatal("no connectors snippet found in the README")
	}
}

// Every top-level key of the configuration is shown in the example, set or
// commented out: the README says the example documents every key.
func TestExampleConfigShowsEveryKey(t *testing.T) {
	_, b := example(t)
	typ := reflect.TypeFor[config.Config]()
	for i := range typ.NumField() {
		key, _, _ := strings.Cut(typ.Field(i).Tag.Get("yaml"), ",")
		if key == "" || key == "-" {
			continue
		}
		if !regexp.MustCompile(`(?m)^(# )?` + regexp.QuoteMeta(key) + `:`).Match(b) {
			t.Errorf("examples/config/clearance.yaml does not show %s", key)
		}
	}
}
