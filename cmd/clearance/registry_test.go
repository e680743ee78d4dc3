package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/policy"
)

// TestRegistryApplyReportsUnconfirmed: registry apply says how many
// instances confirmed the registry in force, and exits 1 naming those that
// did not, rather than saying applied and exiting 0.
func TestRegistryApplyReportsUnconfirmed(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := reportSync(policy.Sync{Confirmed: 3}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "in force on 3 instance(s)") {
		t.Errorf("all confirmed: exit %d, %q %q", code, out.String(), errOut.String())
	}
	out.Reset()
	errOut.Reset()
	code := reportSync(policy.Sync{Confirmed: 1, Unconfirmed: []string{"stuck-instance"}, Took: 2 * time.Second}, &out, &errOut)
	if code != 1 || !strings.Contains(errOut.String(), "stuck-instance") || !strings.Contains(errOut.String(), "did not confirm") {
		t.Errorf("one unconfirmed: exit %d, %q", code, errOut.String())
	}
}
