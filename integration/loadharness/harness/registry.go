package harness

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/clearance-broker/clearance/agreements"
)

// moduleRoot finds the directory holding the module's go.mod, upwards from
// the working directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("harness: working directory: %w", err)
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil &&
			bytes.Contains(b, []byte("module github.com/clearance-broker/clearance\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("harness: module root not found; run from the repository or give the registry directory")
		}
		dir = parent
	}
}

// loadRegistry loads dir (default examples/registry) and, when extra > 0,
// a copy of it with extra synthetic processor parties in the EEA, each with
// its own delivery DPA, written under tmp. It returns the directory it
// loaded, for instances in child processes to load the same.
func loadRegistry(dir string, extra int, tmp string) (*agreements.Registry, string, error) {
	if dir == "" {
		root, err := moduleRoot()
		if err != nil {
			return nil, "", err
		}
		dir = filepath.Join(root, "examples", "registry")
	}
	if extra > 0 {
		out := filepath.Join(tmp, "registry")
		if err := os.MkdirAll(out, 0o700); err != nil {
			return nil, "", fmt.Errorf("harness: registry copy: %w", err)
		}
		files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
		if err != nil {
			return nil, "", fmt.Errorf("harness: registry copy: %w", err)
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				return nil, "", fmt.Errorf("harness: registry copy: %w", err)
			}
			if err := os.WriteFile(filepath.Join(out, filepath.Base(f)), b, 0o600); err != nil {
				return nil, "", fmt.Errorf("harness: registry copy: %w", err)
			}
		}
		if err := os.WriteFile(filepath.Join(out, "90-synthetic.yaml"), syntheticRegistry(extra), 0o600); err != nil {
			return nil, "", fmt.Errorf("harness: synthetic registry: %w", err)
		}
		dir = out
	}
	reg, err := agreements.Load(dir)
	if err != nil {
		return nil, "", fmt.Errorf("harness: registry: %w", err)
	}
	return reg, dir, nil
}

// syntheticRegistry returns YAML with n parties and n agreements.
func syntheticRegistry(n int) []byte {
	countries := []string{"DE", "FR", "NL", "AT", "IT", "ES", "SE", "PL"}
	var b bytes.Buffer
	b.WriteString("parties:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - id: synth-party-%d\n    name: Synthetic Processor %d\n    role: processor\n    country: %s\n    connector: region-jp\n",
			i, i, countries[i%len(countries)])
	}
	b.WriteString("agreements:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - id: dpa-synth-%d\n    version: 1\n    kind: dpa\n    parties: [synth-party-%d]\n    purposes: [delivery, after_sales]\n"+
			"    categories: [order.reference, identity.name, contact.address]\n    valid_from: 2024-01-01\n    valid_until: 2029-12-31\n    status: active\n", i, i)
	}
	return b.Bytes()
}
