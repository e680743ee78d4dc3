package keys

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwe"
)

// memSource is an in-memory keySource for testing the envelope's caching
// and format; Vault itself is tested against a real dev server.
type memSource struct {
	mu        sync.Mutex
	version   int
	keys      map[string][]byte
	made      int
	unwrapped int
	err       error
}

func newMemSource() *memSource { return &memSource{version: 1, keys: map[string][]byte{}} }

func (s *memSource) keyRef() string { return "transit:test-data" }

func (s *memSource) newDataKey(context.Context) ([]byte, string, int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, "", 0, s.err
	}
	s.made++
	k := make([]byte, dataKeySize)
	rand.Read(k)
	wrapped := fmt.Sprintf("vault:v%d:key-%d", s.version, s.made)
	s.keys[wrapped] = bytes.Clone(k)
	return k, wrapped, s.version, nil
}

func (s *memSource) unwrap(_ context.Context, wrapped string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, s.err
	}
	s.unwrapped++
	k, ok := s.keys[wrapped]
	if !ok {
		return nil, newError("open", nil, errors.New("unknown wrapped key"))
	}
	return bytes.Clone(k), nil
}

func (s *memSource) counts() (made, unwrapped int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.made, s.unwrapped
}

// fakeClock is a settable clock whose timers fire when it is advanced.
type fakeClock struct {
	mu     sync.Mutex
	t      time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	at      time.Time
	f       func()
	stopped bool
	fired   bool
}

// afterFunc is the fake clock's afterFunc.
func (c *fakeClock) afterFunc(d time.Duration, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	tm := &fakeTimer{at: c.t.Add(d), f: f}
	c.timers = append(c.timers, tm)
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		pending := !tm.stopped && !tm.fired
		tm.stopped = true
		return pending
	}
}

// advance moves the clock on and runs the timers that are due.
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	var due []func()
	pending := c.timers[:0]
	for _, tm := range c.timers {
		switch {
		case tm.stopped:
		case !c.t.Before(tm.at):
			tm.fired = true
			due = append(due, tm.f)
		default:
			pending = append(pending, tm)
		}
	}
	c.timers = pending
	c.mu.Unlock()
	for _, f := range due {
		f()
	}
}

func TestDataKeyBoundedByCount(t *testing.T) {
	tests := []struct {
		name     string
		maxUses  uint64
		messages int
		wantKeys int
	}{
		{name: "one use per key", maxUses: 1, messages: 5, wantKeys: 5},
		{name: "three uses per key", maxUses: 3, messages: 10, wantKeys: 4},
		{name: "exactly full", maxUses: 5, messages: 10, wantKeys: 2},
		{name: "large bound", maxUses: 1 << 20, messages: 1000, wantKeys: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := newMemSource()
			e := newEnvelope(src, tt.maxUses, time.Hour, 16, time.Hour)
			for range tt.messages {
				if _, err := e.seal(t.Context(), []byte("payload")); err != nil {
					t.Fatal(err)
				}
			}
			if made, _ := src.counts(); made != tt.wantKeys {
				t.Errorf("data keys made = %d, want %d", made, tt.wantKeys)
			}
		})
	}
}

// TestDataKeyBoundedByCountConcurrently: with many sealers at once, no data
// key seals more than its bound.
func TestDataKeyBoundedByCountConcurrently(t *testing.T) {
	const maxUses, workers, each = 7, 8, 250
	e := newEnvelope(newMemSource(), maxUses, time.Hour, 16, time.Hour)
	var mu sync.Mutex
	perKey := map[string]int{}
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				m, err := e.seal(context.Background(), []byte("x"))
				if err != nil {
					t.Error(err)
					return
				}
				p, err := parseCompact(m)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				perKey[string(p.header)]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	total := 0
	for _, n := range perKey {
		if n > maxUses {
			t.Errorf("a data key sealed %d messages, bound is %d", n, maxUses)
		}
		total += n
	}
	if total != workers*each || len(perKey) < workers*each/maxUses {
		t.Errorf("%d messages under %d keys", total, len(perKey))
	}
}

func TestDataKeyUsesCappedAt2To32(t *testing.T) {
	e := newEnvelope(newMemSource(), 1<<40, time.Hour, 16, time.Hour)
	if e.maxUses != MaxDataKeyUses {
		t.Errorf("maxUses = %d, want %d", e.maxUses, MaxDataKeyUses)
	}
	if err := (VaultConfig{DataKeyMaxUses: 1<<32 + 1}).Validate(); err == nil || !strings.Contains(err.Error(), "data_key_max_uses") {
		t.Errorf("Validate accepted more than 2^32 uses: %v", err)
	}
}

func TestDataKeyBoundedByAge(t *testing.T) {
	src := newMemSource()
	clock := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	e := newEnvelope(src, 1<<20, time.Minute, 16, time.Hour)
	e.after = clock.afterFunc
	steps := []struct {
		advance  time.Duration
		wantKeys int
	}{
		{0, 1}, {30 * time.Second, 1}, {29 * time.Second, 1}, {time.Second, 2}, {59 * time.Second, 2}, {2 * time.Minute, 3},
	}
	for i, s := range steps {
		clock.advance(s.advance)
		if _, err := e.seal(t.Context(), []byte("x")); err != nil {
			t.Fatal(err)
		}
		if made, _ := src.counts(); made != s.wantKeys {
			t.Fatalf("step %d: data keys made = %d, want %d", i, made, s.wantKeys)
		}
	}
}

// TestAgeBoundsWithRealTimers runs the age bounds on time.AfterFunc rather
// than the fake clock: a sealing key and a cached opening key both expire.
func TestAgeBoundsWithRealTimers(t *testing.T) {
	src := newMemSource()
	e := newEnvelope(src, 1<<20, 20*time.Millisecond, 16, 20*time.Millisecond)
	m, err := e.seal(t.Context(), []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for e.opened.len() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("cached key did not expire")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := e.open(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	if _, unwrapped := src.counts(); unwrapped != 1 {
		t.Fatalf("unwraps = %d, want 1 after the cached key expired", unwrapped)
	}
	for made, _ := src.counts(); made != 2; made, _ = src.counts() {
		if made > 2 || time.Now().After(deadline) {
			t.Fatalf("data keys made = %d, want 2 once the first expired", made)
		}
		if _, err := e.seal(t.Context(), []byte("y")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestOpenCacheBounds(t *testing.T) {
	src := newMemSource()
	sealer := newEnvelope(src, 1, time.Hour, 16, time.Hour) // a new data key per message
	var msgs [][]byte
	for i := range 3 {
		m, err := sealer.seal(t.Context(), []byte{byte(i)})
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, m)
	}
	clock := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	opener := newEnvelope(src, 1, time.Hour, 2, time.Minute)
	opener.opened.after = clock.afterFunc
	open := func(i int) {
		t.Helper()
		pt, err := opener.open(t.Context(), msgs[i])
		if err != nil || !bytes.Equal(pt, []byte{byte(i)}) {
			t.Fatalf("open %d: %v", i, err)
		}
	}
	steps := []struct {
		name          string
		open          int
		advance       time.Duration
		wantUnwrapped int
	}{
		{"first open unwraps", 0, 0, 1},
		{"second open is cached", 0, 0, 1},
		{"another key", 1, 0, 2},
		{"third key evicts the least recently used", 2, 0, 3},
		{"evicted key unwraps again", 0, 0, 4},
		{"recent key still cached", 2, 0, 4},
		{"expired key unwraps again", 2, time.Minute, 5},
	}
	for _, s := range steps {
		clock.advance(s.advance)
		open(s.open)
		if _, got := src.counts(); got != s.wantUnwrapped {
			t.Fatalf("%s: unwraps = %d, want %d", s.name, got, s.wantUnwrapped)
		}
		if n := opener.opened.len(); n > 2 {
			t.Fatalf("%s: cache holds %d keys, bound is 2", s.name, n)
		}
	}
}

func TestNonceUniqueness(t *testing.T) {
	e := newEnvelope(newMemSource(), 1<<20, time.Hour, 16, time.Hour)
	const n = 20000
	seen := make(map[string]bool, n)
	plaintext := []byte("the same plaintext every time")
	var wg sync.WaitGroup
	var mu sync.Mutex
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range n / 4 {
				m, err := e.seal(context.Background(), plaintext)
				if err != nil {
					t.Error(err)
					return
				}
				p, err := parseCompact(m)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if seen[string(p.nonce[:])] {
					t.Errorf("worker %d: nonce reused", w)
				}
				seen[string(p.nonce[:])] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(seen) != n {
		t.Errorf("distinct nonces = %d, want %d", len(seen), n)
	}
}

func TestSealFailsClosed(t *testing.T) {
	src := newMemSource()
	clock := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	e := newEnvelope(src, 2, time.Minute, 16, time.Hour)
	e.after = clock.afterFunc
	if _, err := e.seal(t.Context(), []byte("a")); err != nil {
		t.Fatal(err)
	}
	src.err = newError("transit datakey", ErrUnavailable, errors.New("connection refused"))
	if _, err := e.seal(t.Context(), []byte("b")); err != nil {
		t.Fatalf("second use of a fresh key must not need the source: %v", err)
	}
	tests := []struct {
		name    string
		advance time.Duration
	}{
		{"key spent", 0},
		{"key spent and expired", 2 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock.advance(tt.advance)
			out, err := e.seal(t.Context(), []byte("personal data"))
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("err = %v, want ErrUnavailable", err)
			}
			if out != nil {
				t.Fatal("output returned on failure")
			}
		})
	}
}

func TestSealedFormatIsStandardJWE(t *testing.T) {
	src := newMemSource()
	e := newEnvelope(src, 100, time.Hour, 16, time.Hour)
	plaintext := []byte(`{"order_id":"10023"}`)
	sealed, err := e.seal(t.Context(), plaintext)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := jwe.Parse(sealed)
	if err != nil {
		t.Fatal(err)
	}
	h := msg.ProtectedHeaders()
	kref, _ := h.Get(headerKeyRef)
	wk, _ := h.Get(headerWrapped)
	if h.Algorithm() != jwa.DIRECT || h.ContentEncryption() != jwa.A256GCM || kref != "transit:test-data:v1" || wk != "vault:v1:key-1" {
		t.Fatalf("headers: alg=%s enc=%s kref=%v wk=%v", h.Algorithm(), h.ContentEncryption(), kref, wk)
	}
	got, err := jwe.Decrypt(sealed, jwe.WithKey(jwa.DIRECT, src.keys["vault:v1:key-1"]))
	if err != nil || !bytes.Equal(got, plaintext) {
		t.Fatalf("jwx decrypt: %q, %v", got, err)
	}
	// Each path of the ciphertext segment's encoder, through jwx (which
	// does not decrypt an empty ciphertext).
	for _, n := range []int{1, 2, 3, 23, 24, 25, 26, 27, 1023, 1024, 1025, 4099} {
		p := bytes.Repeat([]byte{0xfb}, n)
		sealed, err := e.seal(t.Context(), p)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := jwe.Decrypt(sealed, jwe.WithKey(jwa.DIRECT, src.keys["vault:v1:key-1"])); err != nil || !bytes.Equal(got, p) {
			t.Fatalf("jwx decrypt of %d bytes: %v", n, err)
		}
	}

	// And the other way: a message sealed by another JOSE library opens.
	hdr := jwe.NewHeaders()
	hdr.Set(headerKeyRef, "transit:test-data:v1")
	hdr.Set(headerWrapped, "vault:v1:key-1")
	foreign, err := jwe.Encrypt(plaintext, jwe.WithKey(jwa.DIRECT, src.keys["vault:v1:key-1"]), jwe.WithContentEncryption(jwa.A256GCM), jwe.WithProtectedHeaders(hdr))
	if err != nil {
		t.Fatal(err)
	}
	opener := newEnvelope(src, 10, time.Hour, 16, time.Hour)
	if got, err := opener.open(t.Context(), foreign); err != nil || !bytes.Equal(got, plaintext) {
		t.Fatalf("open jwx message: %q, %v", got, err)
	}
}
