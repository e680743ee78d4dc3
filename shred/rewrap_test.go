package shred_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/broker/brokertest"
	"github.com/clearance-broker/clearance/keys"
	"github.com/clearance-broker/clearance/shred"
	"github.com/uptrace/bun"
)

// markRewrap stands in for Vault's transit/rewrap: a key not yet marked
// comes back marked, as one under an older version comes back under the
// latest. before, when set, runs at its first call.
type markRewrap struct {
	calls  int
	before func()
	// err, when set, is the answer to every request.
	err error
}

func (m *markRewrap) Rewrap(_ context.Context, sealed [][]byte) ([][]byte, error) {
	if m.calls++; m.calls == 1 && m.before != nil {
		m.before()
	}
	if m.err != nil {
		return nil, m.err
	}
	for _, s := range sealed {
		if string(s) == "altered" {
			return nil, fmt.Errorf("transit rewrap: %w", keys.ErrNotAuthentic)
		}
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
// while its batch is at Vault stays destroyed; one Vault refuses for its
// own sake is named and left, and the others of its batch rewrapped; a
// second run finds all current; Vault down stops the walk, changing
// nothing.
func TestRewrapKeys(t *testing.T) {
	ctx := t.Context()
	dsn := brokertest.SQLiteDSN(t)
	k, _ := newKeyring(t, dsn, filepath.Join(t.TempDir(), "ring.json"), nil)
	for _, s := range []string{"cust-1", "cust-2", "cust-3", "cust-4", "cust-5", "cust-6", "cust-7"} {
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
	var altered string
	if err := db.QueryRowContext(ctx, "UPDATE shred_subject_keys SET wrapped = 'altered' WHERE subject_hmac = ? RETURNING key_id",
		audit.SubjectHMAC(brokertest.SubjectKey, "cust-7")).Scan(&altered); err != nil {
		t.Fatal(err)
	}
	rw := &markRewrap{before: func() {
		if _, err := k.Destroy(ctx, "cust-1", "test"); err != nil {
			t.Error(err)
		}
	}}
	var batches int
	st, err := shred.RewrapKeys(ctx, db, rw, 10, func(shred.RewrapStats) { batches++ })
	if !errors.Is(err, keys.ErrNotAuthentic) || !reflect.DeepEqual(st, shred.RewrapStats{Live: 6, Rewrapped: 4, Skipped: 1, Failed: []string{altered}}) ||
		batches != 1 {
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
	if err == nil || !reflect.DeepEqual(st, shred.RewrapStats{Live: 5, Current: 4, Failed: []string{altered}}) || batches != 2 {
		t.Fatalf("second run: %+v in %d batches, %v", st, batches, err)
	}
	st, err = shred.RewrapKeys(ctx, db, &markRewrap{err: fmt.Errorf("transit rewrap: %w", keys.ErrUnavailable)}, 3, nil)
	if !errors.Is(err, keys.ErrUnavailable) || st.Live != 0 {
		t.Fatalf("Vault down: %+v, %v", st, err)
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
