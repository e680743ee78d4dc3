package shred_test

import (
	"context"
	"errors"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/broker/brokertest"
	"github.com/clearance-broker/clearance/shred"
)

// gatedKeys is a key service whose next unwrapping, once held, stops after
// saying so on entered until the test closes release (or the unwrapping's
// context ends): a slow Vault, at a moment the test chooses.
type gatedKeys struct {
	shred.KeyService
	held    atomic.Bool
	entered chan struct{}
	release chan struct{}
}

// hold makes the next Open wait for release.
func (g *gatedKeys) hold() {
	g.entered, g.release = make(chan struct{}), make(chan struct{})
	g.held.Store(true)
}

// Open unwraps sealed, first waiting for release when held.
func (g *gatedKeys) Open(ctx context.Context, sealed []byte) ([]byte, error) {
	if g.held.CompareAndSwap(true, false) {
		close(g.entered)
		select {
		case <-g.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return g.KeyService.Open(ctx, sealed)
}

// newGatedKeyring opens a keyring on dsn whose key service the test holds
// and releases.
func newGatedKeyring(t *testing.T, dsn, ringPath string) (*shred.Keyring, *gatedKeys) {
	t.Helper()
	ring := brokertest.DevKeys(t, ringPath)
	log, db := brokertest.OpenAudit(t, dsn, ring)
	g := &gatedKeys{KeyService: ring}
	k, err := shred.Open(t.Context(), shred.Options{DB: db, Keys: g, Audit: log, SubjectKey: brokertest.SubjectKey})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	return k, g
}

// opened is what an Open returned.
type opened struct {
	plain []byte
	err   error
}

// TestDestroyDuringKeyLoad: an instance is loading a subject's key (it has
// read the live key and waits for the key service to unwrap it) when the
// subject is erased, on that instance or on another one whose broadcast
// arrives meanwhile. Once the erasure is done, neither the waiting request
// nor any later one opens the subject's records or seals new ones: the key
// read before the erasure is not used, and not cached.
func TestDestroyDuringKeyLoad(t *testing.T) {
	tests := []struct {
		name string
		// destroy erases cust-1 while b loads its key, other being
		// another instance on the same store.
		destroy func(t *testing.T, b, other *shred.Keyring)
	}{
		{"destroyed on the loading instance", func(t *testing.T, b, _ *shred.Keyring) {
			if _, err := b.Destroy(t.Context(), "cust-1", "dead letters"); err != nil {
				t.Fatal(err)
			}
		}},
		{"destroyed on another instance, broadcast heard during the load", func(t *testing.T, b, other *shred.Keyring) {
			if _, err := other.Destroy(t.Context(), "cust-1", "dead letters"); err != nil {
				t.Fatal(err)
			}
			shred.HearDestroyed(b, audit.SubjectHMAC(brokertest.SubjectKey, "cust-1"))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dsn, ringPath := brokertest.SQLiteDSN(t), filepath.Join(t.TempDir(), "ring.json")
			a, _ := newKeyring(t, dsn, ringPath, nil)
			b, keys := newGatedKeyring(t, dsn, ringPath) // another instance, nothing cached yet
			env, err := a.Seal(t.Context(), "cust-1", []byte("record of cust-1"))
			if err != nil {
				t.Fatal(err)
			}

			keys.hold()
			done := make(chan opened, 1)
			go func() {
				got, err := b.Open(t.Context(), env)
				done <- opened{got, err}
			}()
			<-keys.entered // b has read the live key and waits for it unwrapped
			tt.destroy(t, b, a)
			close(keys.release)

			if r := <-done; !errors.Is(r.err, shred.ErrShredded) || r.plain != nil {
				t.Errorf("the open waiting on the load: %q, %v; want ErrShredded", r.plain, r.err)
			}
			if got, err := b.Open(t.Context(), env); !errors.Is(err, shred.ErrShredded) || got != nil {
				t.Errorf("open after the erasure: %q, %v; want ErrShredded", got, err)
			}
			if _, err := b.Seal(t.Context(), "cust-1", []byte("new")); !errors.Is(err, shred.ErrShredded) {
				t.Errorf("seal after the erasure: %v, want ErrShredded", err)
			}
		})
	}
}

// TestKeyLoadOutlivesAGivenUpRequest: two requests wait for one load of a
// subject's key, and the one that started it gives up (its client went
// away). It gets its context's error; the other still gets the record.
func TestKeyLoadOutlivesAGivenUpRequest(t *testing.T) {
	dsn, ringPath := brokertest.SQLiteDSN(t), filepath.Join(t.TempDir(), "ring.json")
	a, _ := newKeyring(t, dsn, ringPath, nil)
	b, keys := newGatedKeyring(t, dsn, ringPath)
	env, err := a.Seal(t.Context(), "cust-1", []byte("record of cust-1"))
	if err != nil {
		t.Fatal(err)
	}

	keys.hold()
	first, giveUp := context.WithCancel(t.Context())
	defer giveUp()
	firstDone, secondDone := make(chan opened, 1), make(chan opened, 1)
	go func() {
		got, err := b.Open(first, env)
		firstDone <- opened{got, err}
	}()
	<-keys.entered
	go func() {
		got, err := b.Open(t.Context(), env)
		secondDone <- opened{got, err}
	}()
	for _, misses := b.CacheStats(); misses < 2; _, misses = b.CacheStats() {
		runtime.Gosched() // until the second request missed the cache and waits for the load too
	}
	giveUp()
	if r := <-firstDone; !errors.Is(r.err, context.Canceled) || r.plain != nil {
		t.Errorf("the request that gave up: %q, %v; want context.Canceled", r.plain, r.err)
	}
	close(keys.release)
	if r := <-secondDone; r.err != nil || string(r.plain) != "record of cust-1" {
		t.Errorf("the request still waiting: %q, %v", r.plain, r.err)
	}
}
