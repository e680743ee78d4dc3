package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/broker/brokertest"
	"github.com/clearance-broker/clearance/config"
	"github.com/clearance-broker/clearance/integration/vaulttest"
	"github.com/clearance-broker/clearance/keys"
	"github.com/clearance-broker/clearance/shred"
)

// TestKeysRewrap follows the key rotation the README gives: rotate the
// encryption key, run clearance keys rewrap, retire the older version. What
// was sealed for a subject before the rotation still opens; a destroyed key
// stays destroyed. Without the rewrap the subject's key no longer opens once
// the version is retired, which is what the command is for.
func TestKeysRewrap(t *testing.T) {
	ctx := t.Context()
	root, _ := filepath.Abs(filepath.Join("..", ".."))
	vs, dir := vaulttest.Start(t), t.TempDir()
	keysDSN := brokertest.SQLiteDSN(t)
	cfgPath := filepath.Join(dir, "clearance.yaml")
	cfg := serveConfig(t, vs, "nats://127.0.0.1:1", dir, brokertest.SQLiteDSN(t), keysDSN, filepath.Join(root, "examples", "registry"), freeAddr(t))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	parsed, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	kdb, err := audit.OpenDB(ctx, keysDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer kdb.Close()
	// keyring opens the subject key store with a Vault client of its own
	// and an empty cache, as a new instance would.
	keyring := func() *shred.Keyring {
		t.Helper()
		v, err := keys.NewVault(ctx, *parsed.Vault, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { v.Close(context.Background()) })
		k, err := shred.Open(ctx, shred.Options{DB: kdb, Keys: v, Audit: acceptAudit{}, SubjectKey: []byte("rewrap test hmac key")})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(k.Close)
		return k
	}
	k := keyring()
	sealed := map[string][]byte{}
	for _, s := range []string{"cust-1", "cust-2", "cust-3"} {
		if sealed[s], err = k.Seal(ctx, s, []byte("record of "+s)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := k.Destroy(ctx, "cust-3", "test"); err != nil {
		t.Fatal(err)
	}
	// A copy of cust-2's key row as it was before the rewrap, put back
	// afterwards to show what retiring the version does to a key left
	// unrewrapped.
	var before string
	if err := kdb.QueryRowContext(ctx, "SELECT wrapped FROM shred_subject_keys WHERE subject_hmac = ?",
		audit.SubjectHMAC([]byte("rewrap test hmac key"), "cust-2")).Scan(&before); err != nil {
		t.Fatal(err)
	}

	vs.Write("transit/keys/clearance-data/rotate", nil)
	cli := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := run(ctx, args, &out, &errb)
		return code, out.String(), errb.String()
	}
	code, out, errs := cli("keys", "rewrap", "--config", cfgPath, "--batch", "1", "--json")
	var stats shred.RewrapStats
	if code != 0 || json.Unmarshal([]byte(out), &stats) != nil || !reflect.DeepEqual(stats, shred.RewrapStats{Live: 2, Rewrapped: 2}) {
		t.Fatalf("keys rewrap: exit %d %q %+v\n%s", code, out, stats, errs)
	}
	if strings.Contains(out+errs, "cust-") {
		t.Error("a subject id appears in the output")
	}
	// Again: nothing left to do.
	if code, out, errs := cli("keys", "rewrap", "--config", cfgPath); code != 0 || !strings.Contains(out, "already current:     2") {
		t.Fatalf("keys rewrap again: exit %d\n%s%s", code, out, errs)
	}
	// A key row altered in the store is named (by its key id) and left;
	// the others are rewrapped all the same (a batch of all three).
	if _, err := k.Seal(ctx, "cust-4", []byte("record of cust-4")); err != nil {
		t.Fatal(err)
	}
	var alteredID string
	if err := kdb.QueryRowContext(ctx, "UPDATE shred_subject_keys SET wrapped = 'altered' WHERE subject_hmac = ? RETURNING key_id",
		audit.SubjectHMAC([]byte("rewrap test hmac key"), "cust-4")).Scan(&alteredID); err != nil {
		t.Fatal(err)
	}
	vs.Write("transit/keys/clearance-data/rotate", nil)
	code, out, errs = cli("keys", "rewrap", "--config", cfgPath)
	if code != 1 || !strings.Contains(out, "rewrapped:           2") || !strings.Contains(out, "refused by Vault:    1, left as they were: "+alteredID) ||
		!strings.Contains(errs, "1 subject keys left as they were") {
		t.Fatalf("keys rewrap with an altered key: exit %d\n%s%s", code, out, errs)
	}

	vs.Write("transit/keys/clearance-data/config", map[string]any{"min_decryption_version": 3})
	k = keyring()
	for _, s := range []string{"cust-1", "cust-2"} {
		if got, err := k.Open(ctx, sealed[s]); err != nil || string(got) != "record of "+s {
			t.Errorf("%s after the old version was retired: %q, %v", s, got, err)
		}
	}
	if _, err := k.Open(ctx, sealed["cust-3"]); !errors.Is(err, shred.ErrShredded) {
		t.Errorf("the destroyed key: %v, want ErrShredded", err)
	}

	// The key as it was before the rewrap no longer opens.
	if _, err := kdb.ExecContext(ctx, "UPDATE shred_subject_keys SET wrapped = ? WHERE subject_hmac = ?",
		before, audit.SubjectHMAC([]byte("rewrap test hmac key"), "cust-2")); err != nil {
		t.Fatal(err)
	}
	if _, err := keyring().Open(ctx, sealed["cust-2"]); err == nil {
		t.Error("a subject key wrapped under the retired version still opens: the test proves nothing")
	}
}

// acceptAudit takes every entry and keeps none.
type acceptAudit struct{}

func (acceptAudit) Append(context.Context, *audit.Entry) (int64, error) { return 1, nil }
