package shred_test

import (
	"bytes"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/broker/brokertest"
	"github.com/clearance-broker/clearance/shred"
	"github.com/nats-io/nats.go"
)

// newKeyring opens a keyring on dsn (one per instance when called twice).
func newKeyring(t testing.TB, dsn string, ringPath string, nc *nats.Conn) (*shred.Keyring, *audit.Log) {
	t.Helper()
	ring := brokertest.DevKeys(t, ringPath)
	log, db := brokertest.OpenAudit(t, dsn, ring)
	k, err := shred.Open(t.Context(), shred.Options{DB: db, Keys: ring, Audit: log, SubjectKey: brokertest.SubjectKey, NATS: nc})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	return k, log
}

func TestShredding(t *testing.T) {
	nc := brokertest.Connect(t, brokertest.StartNATS(t))
	dsn, ringPath := brokertest.SQLiteDSN(t), filepath.Join(t.TempDir(), "ring.json")
	a, log := newKeyring(t, dsn, ringPath, nc)
	b, _ := newKeyring(t, dsn, ringPath, nc) // another instance

	sealed := map[string][]byte{}
	for _, s := range []string{"cust-1", "cust-2"} {
		env, err := a.Seal(t.Context(), s, []byte("record of "+s))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(env, []byte(s)) {
			t.Fatal("the envelope names the subject")
		}
		sealed[s] = env
		if got, err := b.Open(t.Context(), env); err != nil || string(got) != "record of "+s {
			t.Fatalf("other instance opens %q, %v", got, err)
		}
	}
	proof, err := a.Destroy(t.Context(), "cust-1", "dead letters")
	if err != nil {
		t.Fatal(err)
	}
	// The broadcast reaches b asynchronously: wait for its effect.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := b.Open(t.Context(), sealed["cust-1"]); errors.Is(err, shred.ErrShredded) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the other instance still opens a shredded subject's record after 10 s")
		}
	}

	tests := []struct {
		name    string
		ring    *shred.Keyring
		subject string
		err     error
	}{
		{"shredded, here", a, "cust-1", shred.ErrShredded},
		{"shredded, other instance", b, "cust-1", shred.ErrShredded},
		{"kept, here", a, "cust-2", nil},
		{"kept, other instance", b, "cust-2", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.ring.Open(t.Context(), sealed[tt.subject])
			if !errors.Is(err, tt.err) {
				t.Fatalf("open: %v, want %v", err, tt.err)
			}
			if _, err := tt.ring.Seal(t.Context(), tt.subject, []byte("new")); !errors.Is(err, tt.err) {
				t.Fatalf("seal: %v, want %v", err, tt.err)
			}
		})
	}

	es, err := log.Query(t.Context(), audit.Filter{Event: shred.EventKeyDestroyed})
	if err != nil || len(es) != 1 {
		t.Fatalf("proof entries %d, %v", len(es), err)
	}
	if e := es[0]; e.Sequence != proof.AuditSequence || e.SubjectHMAC != audit.SubjectHMAC(brokertest.SubjectKey, "cust-1") ||
		e.Reasons[0] != "key_id:"+proof.KeyID || e.Reasons[2] != "scope:dead letters" {
		t.Fatalf("proof entry %+v for %+v", e, proof)
	}
}

func TestOpenRejectsTampering(t *testing.T) {
	k, _ := newKeyring(t, brokertest.SQLiteDSN(t), filepath.Join(t.TempDir(), "ring.json"), nil)
	one, err := k.Seal(t.Context(), "cust-1", []byte("one"))
	if err != nil {
		t.Fatal(err)
	}
	two, err := k.Seal(t.Context(), "cust-2", []byte("two"))
	if err != nil {
		t.Fatal(err)
	}
	swapped := append(append([]byte(nil), bytes.Join(bytes.Split(one, []byte("."))[:2], []byte("."))...), '.')
	swapped = append(swapped, bytes.Join(bytes.Split(two, []byte("."))[2:], []byte("."))...)
	tests := []struct {
		name string
		give []byte
	}{
		{"not an envelope", []byte("hello")},
		{"another subject's ciphertext", swapped},
		{"flipped byte", append(one[:len(one)-2:len(one)-2], 'A', 'A')},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := k.Open(t.Context(), tt.give); !errors.Is(err, shred.ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
		})
	}
}

// TestOpenInAnotherStore: an envelope reaches a keyring whose store is not
// the sealing one's (each region with its own store). It does not open, and
// the error says the key is unknown there rather than that the subject was
// erased: with no key for the subject, and with a key the store made for
// the subject itself. A destruction recorded there still reads as one.
func TestOpenInAnotherStore(t *testing.T) {
	ringPath := filepath.Join(t.TempDir(), "ring.json") // one key service: only the store differs
	eu, _ := newKeyring(t, brokertest.SQLiteDSN(t), ringPath, nil)
	jp, _ := newKeyring(t, brokertest.SQLiteDSN(t), ringPath, nil)
	sealed := map[string][]byte{}
	for _, s := range []string{"cust-1", "cust-2", "cust-3"} {
		env, err := eu.Seal(t.Context(), s, []byte("record of "+s))
		if err != nil {
			t.Fatal(err)
		}
		sealed[s] = env
	}
	if _, err := jp.Seal(t.Context(), "cust-2", []byte("jp's own")); err != nil {
		t.Fatal(err)
	}
	if _, err := jp.Destroy(t.Context(), "cust-3", "dead letters"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, subject string
		want, notWant error
	}{
		{"no key for the subject", "cust-1", shred.ErrUnknownKey, shred.ErrShredded},
		{"the store's own key for the subject", "cust-2", shred.ErrUnknownKey, shred.ErrShredded},
		{"erased in the store", "cust-3", shred.ErrShredded, shred.ErrUnknownKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 2 { // from the store, then from the cache
				got, err := jp.Open(t.Context(), sealed[tt.subject])
				if !errors.Is(err, tt.want) || errors.Is(err, tt.notWant) || got != nil {
					t.Fatalf("open = %q, %v; want %v", got, err, tt.want)
				}
			}
		})
	}
	if got, err := eu.Open(t.Context(), sealed["cust-2"]); err != nil || string(got) != "record of cust-2" {
		t.Fatalf("the sealing store's keyring: %q, %v", got, err)
	}
}
