package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/broker"
	"github.com/clearance-broker/clearance/broker/brokertest"
	"github.com/clearance-broker/clearance/config"
	"github.com/clearance-broker/clearance/integration/vaulttest"
	"github.com/clearance-broker/clearance/keys"
	"github.com/clearance-broker/clearance/shred"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
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
	ns := brokertest.StartNATS(t)
	keysDSN := brokertest.SQLiteDSN(t)
	cfgPath := filepath.Join(dir, "clearance.yaml")
	cfg := serveConfig(t, vs, ns.ClientURL(), dir, brokertest.SQLiteDSN(t), keysDSN, filepath.Join(root, "examples", "registry"), freeAddr(t))
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

	// Dead letters: one sealed under the broker's own key (a request
	// naming no subject), one under cust-1's key, one of an erased
	// subject (nothing kept).
	v, err := keys.NewVault(ctx, *parsed.Vault, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close(context.Background())
	shared, err := v.Seal(ctx, []byte(`{"id":"ord-9","note":"kept under the broker's key"}`))
	if err != nil {
		t.Fatal(err)
	}
	js := deadLetterStreamFor(t, ns)
	ownSeq := publishDeadLetter(t, js, shared, "ord-9")
	publishDeadLetter(t, js, sealed["cust-1"], "ord-10")
	publishDeadLetter(t, js, nil, "ord-11")
	firstTime := getDeadLetter(t, js, ownSeq).Time

	vs.Write("transit/keys/clearance-data/rotate", nil)
	cli := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := run(ctx, args, &out, &errb)
		return code, out.String(), errb.String()
	}
	code, out, errs := cli("keys", "rewrap", "--config", cfgPath, "--batch", "1", "--json")
	var stats struct {
		SubjectKeys shred.RewrapStats             `json:"subject_keys"`
		DeadLetters *broker.DeadLetterRewrapStats `json:"dead_letters"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &stats) != nil || !reflect.DeepEqual(stats.SubjectKeys, shred.RewrapStats{Live: 2, Rewrapped: 2}) ||
		stats.DeadLetters == nil || !reflect.DeepEqual(*stats.DeadLetters, broker.DeadLetterRewrapStats{Read: 3, Rewrapped: 1, SubjectKeyed: 1, Empty: 1}) {
		t.Fatalf("keys rewrap: exit %d %q %+v\n%s", code, out, stats, errs)
	}
	if strings.Contains(out+errs, "cust-") || strings.Contains(out+errs, "kept under") {
		t.Error("a subject id or a dead letter's content appears in the output")
	}
	// The dead letter was published again, as it was but for its seal,
	// and the old copy deleted.
	if m, err := getDeadLetterErr(js, ownSeq); err == nil {
		t.Fatalf("the old copy of the dead letter is still there: %v", m.Header)
	}
	moved := lastDeadLetter(t, js)
	if moved.Header.Get("Clearance-Request-Id") != "ord-9" || moved.Header.Get(broker.RewrappedFromHeader) != fmt.Sprint(ownSeq) ||
		!broker.DeadLetteredAt(moved).Equal(firstTime) || bytes.Equal(moved.Data, shared) {
		t.Fatalf("the rewrapped dead letter: %v (first dead-lettered %v)", moved.Header, firstTime)
	}
	// Again: nothing left to do.
	if code, out, errs := cli("keys", "rewrap", "--config", cfgPath); code != 0 || !strings.Contains(out, "already current:     2") ||
		!strings.Contains(out, "already current:     1") {
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
	// So is a dead letter altered, and the one that is not is
	// rewrapped all the same.
	alteredSeq := publishDeadLetter(t, js, []byte("eyJhbGciOiJkaXIifQ.a.b.c.d"), "ord-12")
	vs.Write("transit/keys/clearance-data/rotate", nil)
	code, out, errs = cli("keys", "rewrap", "--config", cfgPath)
	if code != 1 || !strings.Contains(out, "rewrapped:           2") || !strings.Contains(out, "refused by Vault:    1, left as they were: "+alteredID) ||
		!strings.Contains(errs, "1 subject keys left as they were") ||
		!strings.Contains(out, "rewrapped:           1 (published again") || !strings.Contains(out, fmt.Sprintf("left as they were: %d\n", alteredSeq)) ||
		!strings.Contains(errs, "dead letters: 1 left as they were") {
		t.Fatalf("keys rewrap with an altered key: exit %d\n%s%s", code, out, errs)
	}

	vs.Write("transit/keys/clearance-data/config", map[string]any{"min_decryption_version": 3})
	// The dead letter opens under the latest version; its first copy
	// would not.
	v3, err := keys.NewVault(ctx, *parsed.Vault, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer v3.Close(context.Background())
	if got, err := v3.Open(ctx, lastDeadLetter(t, js).Data); err != nil || !strings.Contains(string(got), "kept under the broker's key") {
		t.Errorf("the rewrapped dead letter after the old versions were retired: %v", err)
	}
	if _, err := v3.Open(ctx, shared); err == nil {
		t.Error("the dead letter as first sealed still opens: the test proves nothing")
	}
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

// deadLetterStreamFor creates the dead-letter stream on ns, as a broker
// does, and returns its JetStream.
func deadLetterStreamFor(t *testing.T, ns *server.Server) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(brokertest.Connect(t, ns))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: broker.DeadLetterStream,
		Subjects: []string{broker.DeadLetterSubject + ".>"}}); err != nil {
		t.Fatal(err)
	}
	return js
}

// publishDeadLetter keeps data as a dead letter of request id, as the
// broker does, and returns its sequence.
func publishDeadLetter(t *testing.T, js jetstream.JetStream, data []byte, id string) uint64 {
	t.Helper()
	m := nats.NewMsg(broker.DeadLetterSubject + ".orders")
	m.Data = data
	m.Header.Set("Clearance-Request-Id", id)
	m.Header.Set("Clearance-Outcome", "invalid")
	ack, err := js.PublishMsg(t.Context(), m)
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

func getDeadLetterErr(js jetstream.JetStream, seq uint64) (*jetstream.RawStreamMsg, error) {
	s, err := js.Stream(context.Background(), broker.DeadLetterStream)
	if err != nil {
		return nil, err
	}
	return s.GetMsg(context.Background(), seq)
}

func getDeadLetter(t *testing.T, js jetstream.JetStream, seq uint64) *jetstream.RawStreamMsg {
	t.Helper()
	m, err := getDeadLetterErr(js, seq)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// lastDeadLetter is the dead letter published last.
func lastDeadLetter(t *testing.T, js jetstream.JetStream) *jetstream.RawStreamMsg {
	t.Helper()
	s, err := js.Stream(t.Context(), broker.DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetLastMsgForSubject(t.Context(), broker.DeadLetterSubject+".orders")
	if err != nil {
		t.Fatal(err)
	}
	return m
}
