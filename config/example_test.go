package config_test

import (
	"os"
	"testing"

	"github.com/clearance-broker/clearance/config"
	"github.com/clearance-broker/clearance/connectors"
	"github.com/clearance-broker/clearance/connectors/natsregion"
	"github.com/clearance-broker/clearance/connectors/webhook"
)

// The commented example that the docs point to must stay valid.
func TestExampleConfigIsValid(t *testing.T) {
	kinds, err := connectors.NewRegistry(webhook.Kind(), natsregion.Kind())
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("../examples/config/clearance.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(b, func(string) (string, bool) { return "", false })
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
