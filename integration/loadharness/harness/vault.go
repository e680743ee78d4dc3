package harness

import (
	"context"
	"fmt"
	"time"

	"github.com/clearance-broker/clearance/integration/vaulttest"
)

// startVault starts a Vault dev server child process (vaulttest.Launch) with
// transit enabled and creates the two keys Clearance uses: clearance-data
// (aes256-gcm96) and clearance-signing (ecdsa-p256). The server dies with
// the harness.
func startVault(ctx context.Context) (*vaulttest.Process, error) {
	p, err := vaulttest.Launch(ctx, vaulttest.Config{Ready: time.Minute, DieWithParent: true})
	if err != nil {
		return nil, fmt.Errorf("harness: %w", err)
	}
	c, err := p.Client()
	if err != nil {
		p.Stop()
		return nil, fmt.Errorf("harness: %w", err)
	}
	for name, typ := range map[string]string{"clearance-data": "aes256-gcm96", "clearance-signing": "ecdsa-p256"} {
		if _, err := c.Logical().WriteWithContext(ctx, "transit/keys/"+name, map[string]any{"type": typ}); err != nil {
			p.Stop()
			return nil, fmt.Errorf("harness: vault: create key %s: %w", name, err)
		}
	}
	return p, nil
}
