package connectors_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/clearance-broker/clearance/connectors"
)

// testConfig is a minimal config for a test kind.
type testConfig struct {
	Target  string              `yaml:"target" json:"target"`
	Timeout connectors.Duration `yaml:"timeout" json:"timeout"`
	Nested  struct {
		Level int `yaml:"level" json:"level"`
	} `yaml:"nested" json:"nested"`
}

func (c *testConfig) Validate() error {
	var errs []error
	if c.Target == "" {
		errs = append(errs, errors.New("target: required"))
	}
	if c.Timeout <= 0 {
		errs = append(errs, errors.New("timeout: must be positive"))
	}
	return errors.Join(errs...)
}

type testConnector struct{ cfg *testConfig }

func (testConnector) Deliver(context.Context, *connectors.Delivery) error { return nil }
func (testConnector) Close(context.Context) error                         { return nil }

func testKind(name string) connectors.Kind {
	return connectors.NewKind(name,
		func() *testConfig { return &testConfig{Timeout: connectors.Duration(time.Second)} },
		func(_ context.Context, _ string, cfg *testConfig, _ connectors.Deps) (connectors.Connector, error) {
			return testConnector{cfg: cfg}, nil
		})
}

func TestNewRegistry(t *testing.T) {
	tests := []struct {
		name    string
		give    []connectors.Kind
		wantErr string
	}{
		{name: "two kinds", give: []connectors.Kind{testKind("a"), testKind("b")}},
		{name: "duplicate", give: []connectors.Kind{testKind("a"), testKind("a")}, wantErr: `kind "a" registered twice`},
		{name: "no name", give: []connectors.Kind{testKind("")}, wantErr: "kind without a name"},
		{name: "no constructor", give: []connectors.Kind{{Name: "x"}}, wantErr: `kind "x" lacks`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := connectors.NewRegistry(tt.give...)
			if tt.wantErr == "" && err != nil {
				t.Fatalf("NewRegistry: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("NewRegistry error = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestRegistryDecode(t *testing.T) {
	reg, err := connectors.NewRegistry(testKind("test"), testKind("other"))
	if err != nil {
		t.Fatal(err)
	}
	var node yaml.Node
	if err := yaml.Unmarshal([]byte("conn:\n  target: x\n  tiemout: 5s\n"), &node); err != nil {
		t.Fatal(err)
	}
	connNode := node.Content[0].Content[1]
	tests := []struct {
		name        string
		kind        string
		give        connectors.Raw
		wantTarget  string
		wantTimeout time.Duration
		wantErr     []string
	}{
		{name: "yaml", kind: "test", give: connectors.YAML([]byte("target: t\ntimeout: 5s\n")), wantTarget: "t", wantTimeout: 5 * time.Second},
		{name: "json", kind: "test", give: connectors.JSON([]byte(`{"target":"t","timeout":"2m"}`)), wantTarget: "t", wantTimeout: 2 * time.Minute},
		{name: "defaults kept", kind: "test", give: connectors.YAML([]byte("target: t\n")), wantTarget: "t", wantTimeout: time.Second},
		{name: "yaml unknown key", kind: "test", give: connectors.YAML([]byte("target: t\ntimout: 5s\n")), wantErr: []string{"timout"}},
		{name: "yaml nested unknown key", kind: "test", give: connectors.YAML([]byte("target: t\nnested: {levl: 2}\n")), wantErr: []string{"levl"}},
		{name: "json unknown key", kind: "test", give: connectors.JSON([]byte(`{"target":"t","timout":"5s"}`)), wantErr: []string{"timout"}},
		{name: "json trailing data", kind: "test", give: connectors.JSON([]byte(`{"target":"t"} {}`)), wantErr: []string{"after the config"}},
		{name: "node unknown key", kind: "test", give: connectors.YAMLNode(connNode), wantErr: []string{"tiemout", "line 2"}},
		{name: "bad duration", kind: "test", give: connectors.YAML([]byte("target: t\ntimeout: soon\n")), wantErr: []string{"duration"}},
		{name: "all problems at once", kind: "test", give: connectors.YAML([]byte("timeout: 0s\n")), wantErr: []string{"target: required", "timeout: must be positive"}},
		{name: "unknown kind", kind: "carrier-pigeon", give: connectors.YAML(nil), wantErr: []string{"carrier-pigeon", "[other test]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := reg.Decode(tt.kind, tt.give)
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatal("Decode: no error")
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("Decode error %q lacks %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			c := cfg.(*testConfig)
			if c.Target != tt.wantTarget || c.Timeout.D() != tt.wantTimeout {
				t.Errorf("decoded %+v, want target %q timeout %s", c, tt.wantTarget, tt.wantTimeout)
			}
		})
	}
}

func TestRegistryNew(t *testing.T) {
	reg, err := connectors.NewRegistry(testKind("test"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := reg.New(t.Context(), "partner-x", "test", connectors.YAML([]byte("target: t\n")), connectors.Deps{})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if got := c.(testConnector).cfg.Target; got != "t" {
		t.Errorf("constructor got target %q", got)
	}
	_, err = reg.New(t.Context(), "partner-x", "nope", nil, connectors.Deps{})
	if !errors.Is(err, connectors.ErrUnknownKind) || !strings.Contains(err.Error(), "partner-x") {
		t.Errorf("New with unknown kind = %v, want ErrUnknownKind naming the connector", err)
	}
	if got := reg.Kinds(); len(got) != 1 || got[0] != "test" {
		t.Errorf("Kinds = %v", got)
	}
}

func TestGate(t *testing.T) {
	var g connectors.Gate
	if err := g.Enter(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if first, err := g.Close(ctx); !first || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Close with one in flight = %v, %v; want first and a deadline error", first, err)
	}
	if err := g.Enter(); !errors.Is(err, connectors.ErrClosed) {
		t.Errorf("Enter after Close = %v, want ErrClosed", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := g.Close(t.Context())
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("Close returned %v with a delivery still in flight", err)
	case <-time.After(50 * time.Millisecond):
	}
	g.Leave()
	if err := <-done; err != nil {
		t.Errorf("Close waiting for the last delivery = %v", err)
	}
	if first, err := g.Close(t.Context()); first || err != nil {
		t.Errorf("third Close = %v, %v; want not first, nil", first, err)
	}
}
