package shred_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/broker/brokertest"
	"github.com/clearance-broker/clearance/shred"
	"github.com/uptrace/bun"
)

// markRewrap stands in for Vault's transit/rewrap: a key not yet marked
// comes back marked, as one under an older version comes back under the
// latest. before, when set, runs at its first call.
type markRewrap struct {
	calls  int
	before func()
}

func (m *markRewrap) Rewrap(_ context.Context, sealed [][]byte) ([][]byte, error) {
	if m.calls++; m.calls == 1 && m.before != nil {
		m.before()
	}
	out := make([][]byte, len(sealed))
	for i, s := range sealed {
		out[i] = s
		if !strings.HasPrefix(string(s), "v2:") {
			out[i] = append([]byte("v2:"), s...)
		}
	}
	return out, nil
}

// TestRewrapKeys: every live key is rewrapped, in batches; a key destroyed
// while its batch is at Vault stays destroyed; a second run finds all
// current.
func TestRewrapKeys(t *testing.T) {
	ctx := t.Context()
	dsn := brokertest.SQLiteDSN(t)
	k, _ := newKeyring(t, dsn, filepath.Join(t.TempDir(), "ring.json"), nil)
	for _, s := range []string{"cust-1", "cust-2", "cust-3", "cust-4", "cust-5", "cust-6"} {
		if _, err := k.Seal(ctx, s, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := k.Destroy(ctx, "cust-6", "test"); err != nil {
		t.Fatal(err)
	}
	db, err := audit.OpenDB(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rw := &markRewrap{before: func() {
		if _, err := k.Destroy(ctx, "cust-1", "test"); err != nil {
			t.Error(err)
		}
	}}
	var batches int
	st, err := shred.RewrapKeys(ctx, db, rw, 10, func(shred.RewrapStats) { batches++ })
	if err != nil || st != (shred.RewrapStats{Live: 5, Rewrapped: 4, Skipped: 1}) || batches != 1 {
		t.Fatalf("first run: %+v in %d batches, %v", st, batches, err)
	}
	if n := count(t, db, "destroyed_at IS NOT NULL AND wrapped = ''"); n != 2 {
		t.Errorf("%d destroyed keys, want 2 with nothing wrapped", n)
	}
	if n := count(t, db, "wrapped LIKE 'v2:%'"); n != 4 {
		t.Errorf("%d rewrapped keys, want 4", n)
	}
	batches = 0
	st, err = shred.RewrapKeys(ctx, db, &markRewrap{}, 3, func(shred.RewrapStats) { batches++ })
	if err != nil || st != (shred.RewrapStats{Live: 4, Current: 4}) || batches != 2 {
		t.Fatalf("second run: %+v in %d batches, %v", st, batches, err)
	}
}

func count(t *testing.T, db *bun.DB, where string) int64 {
	t.Helper()
	n, err := db.NewSelect().Table("shred_subject_keys").Where(where).Count(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return n
}
