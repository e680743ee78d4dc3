package keys

import (
	"container/list"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// MaxDataKeyUses is the hard cap on messages sealed under one data key: with
// random 96-bit nonces, AES-GCM stays within its safety bound (NIST SP
// 800-38D) only up to 2^32 messages per key.
const MaxDataKeyUses uint64 = 1 << 32

// keySource makes and unwraps data keys: Vault transit, or the local
// development key ring.
type keySource interface {
	// newDataKey returns a fresh data key, its wrapped form and the version
	// of the key that wrapped it.
	newDataKey(ctx context.Context) (plain []byte, wrapped string, version int, err error)
	// unwrap returns the plaintext of a wrapped data key.
	unwrap(ctx context.Context, wrapped string) ([]byte, error)
	// keyRef names the wrapping key, e.g. "transit:clearance-data".
	keyRef() string
}

// afterFunc calls f in its own goroutine once d has passed, and returns a
// function that cancels the call (time.AfterFunc; tests use a fake clock).
// The age bounds of data keys are timers rather than a clock read per
// message: reading the clock costs about as much as opening a small message.
type afterFunc func(d time.Duration, f func()) (stop func() bool)

func timeAfterFunc(d time.Duration, f func()) func() bool { return time.AfterFunc(d, f).Stop }

// dataKey is one unwrapped data key ready for use.
type dataKey struct {
	aead    cipher.AEAD
	wrapped string
	header  []byte        // encoded protected header for sealing under this key
	uses    atomic.Uint64 // uses reserved so far, including refused ones past the bound
	expired atomic.Bool   // set by a timer when the key is too old to seal
	stop    func() bool   // cancels that timer; nil for keys used only to open
}

func newDataKeyFrom(plain []byte, wrapped, kref string) (*dataKey, error) {
	if len(plain) != dataKeySize {
		clear(plain)
		return nil, fmt.Errorf("keys: data key has %d bytes, want %d", len(plain), dataKeySize)
	}
	block, err := aes.NewCipher(plain)
	clear(plain)
	if err != nil {
		return nil, fmt.Errorf("keys: data key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("keys: data key: %w", err)
	}
	header, err := encodeHeader(kref, wrapped)
	if err != nil {
		return nil, err
	}
	return &dataKey{aead: aead, wrapped: wrapped, header: []byte(header)}, nil
}

// envelope seals and opens messages with cached data keys from a keySource.
// It is safe for concurrent use.
type envelope struct {
	src     keySource
	maxUses uint64
	maxAge  time.Duration
	after   afterFunc

	cur atomic.Pointer[dataKey] // the key for sealing, if any

	fetchMu sync.Mutex // one data key request at a time
	opened  *keyCache
	flight  flightGroup
}

func newEnvelope(src keySource, maxUses uint64, maxAge time.Duration, cacheSize int, cacheTTL time.Duration) *envelope {
	if maxUses == 0 || maxUses > MaxDataKeyUses {
		maxUses = MaxDataKeyUses
	}
	return &envelope{
		src:     src,
		maxUses: maxUses,
		maxAge:  maxAge,
		after:   timeAfterFunc,
		opened:  newKeyCache(cacheSize, cacheTTL),
	}
}

// take returns the current data key with one use reserved, or nil when a new
// key is needed. A key seals at most maxUses messages: each use takes a
// distinct count, and counts past maxUses are refused.
func (e *envelope) take() *dataKey {
	k := e.cur.Load()
	if k == nil || k.expired.Load() || k.uses.Add(1) > e.maxUses {
		return nil
	}
	return k
}

// current returns a data key with one use reserved, asking the source for a
// new one when the cached key is spent or too old. It never falls back to an
// expired or spent key: if the source fails, sealing fails.
func (e *envelope) current(ctx context.Context) (*dataKey, error) {
	if k := e.take(); k != nil {
		return k, nil
	}
	e.fetchMu.Lock()
	defer e.fetchMu.Unlock()
	if k := e.take(); k != nil { // another caller fetched while we waited
		return k, nil
	}
	plain, wrapped, version, err := e.src.newDataKey(ctx)
	if err != nil {
		return nil, err
	}
	k, err := newDataKeyFrom(plain, wrapped, fmt.Sprintf("%s:v%d", e.src.keyRef(), version))
	if err != nil {
		return nil, err
	}
	k.stop = e.after(e.maxAge, func() { k.expired.Store(true) })
	k.uses.Store(1)
	if old := e.cur.Swap(k); old != nil {
		old.stop() // so that the timer does not keep the old key alive
	}
	e.opened.put(k.wrapped, string(k.header), k.aead)
	return k, nil
}

// seal encrypts plaintext into a compact JWE.
func (e *envelope) seal(ctx context.Context, plaintext []byte) ([]byte, error) {
	return e.sealAppend(ctx, nil, plaintext)
}

// sealAppend is seal appending the message to dst.
func (e *envelope) sealAppend(ctx context.Context, dst, plaintext []byte) ([]byte, error) {
	k, err := e.current(ctx)
	if err != nil {
		return nil, err
	}
	return sealWithKey(dst, k.aead, k.header, nil, plaintext)
}

// open decrypts a compact JWE sealed by any instance sharing the wrapping key.
func (e *envelope) open(ctx context.Context, sealed []byte) ([]byte, error) {
	p, err := parseCompact(sealed)
	if err != nil {
		return nil, newError("open", nil, err)
	}
	if aead := e.opened.byHeader(p.header); aead != nil {
		return openWith(aead, p)
	}
	h, err := parseHeader(p.header)
	if err != nil {
		return nil, newError("open", nil, err)
	}
	aead, err := e.unwrap(ctx, h, string(p.header))
	if err != nil {
		return nil, err
	}
	return openWith(aead, p)
}

// unwrap returns the AEAD for a wrapped data key, from the cache or the
// source; concurrent callers for the same key share one request.
func (e *envelope) unwrap(ctx context.Context, h envelopeHeader, header string) (cipher.AEAD, error) {
	if err := checkKeyRef(e.src.keyRef(), h.KRef, h.WK); err != nil {
		return nil, newError("open", nil, err)
	}
	if aead := e.opened.byWrapped(h.WK); aead != nil {
		return aead, nil
	}
	return e.flight.do(h.WK, func() (cipher.AEAD, error) {
		if aead := e.opened.byWrapped(h.WK); aead != nil {
			return aead, nil
		}
		plain, err := e.src.unwrap(ctx, h.WK)
		if err != nil {
			return nil, err
		}
		k, err := newDataKeyFrom(plain, h.WK, h.KRef)
		if err != nil {
			return nil, err
		}
		e.opened.put(h.WK, header, k.aead)
		return k.aead, nil
	})
}

// checkKeyRef verifies that a message's kref names our wrapping key and that
// its version agrees with the wrapped key's "vault:vN:" prefix.
func checkKeyRef(ref, kref, wrapped string) error {
	name, version, ok := splitVersioned(kref)
	if !ok || name != ref {
		return fmt.Errorf("%w: kref does not name this key ring's key", ErrMalformed)
	}
	if wv, ok := wrappedVersion(wrapped); !ok || wv != version {
		return fmt.Errorf("%w: kref version does not match the wrapped key", ErrMalformed)
	}
	return nil
}

// flightGroup lets concurrent callers share one unwrap per wrapped key.
type flightGroup struct {
	mu    sync.Mutex
	calls map[string]*flightCall
}

type flightCall struct {
	done chan struct{}
	aead cipher.AEAD
	err  error
}

func (g *flightGroup) do(key string, fn func() (cipher.AEAD, error)) (cipher.AEAD, error) {
	g.mu.Lock()
	if c, ok := g.calls[key]; ok {
		g.mu.Unlock()
		<-c.done
		return c.aead, c.err
	}
	if g.calls == nil {
		g.calls = make(map[string]*flightCall)
	}
	c := &flightCall{done: make(chan struct{})}
	g.calls[key] = c
	g.mu.Unlock()
	c.aead, c.err = fn()
	g.mu.Lock()
	delete(g.calls, key)
	g.mu.Unlock()
	close(c.done)
	return c.aead, c.err
}

// keyCache holds unwrapped data keys for opening, bounded in count and age,
// evicting the least recently used; a timer per entry removes it when it is
// too old. It is safe for concurrent use.
type keyCache struct {
	size  int
	ttl   time.Duration
	after afterFunc

	mu    sync.Mutex
	order *list.List // of *cacheEntry, most recently used first
	byWK  map[string]*list.Element
	byHdr map[string]*list.Element
}

type cacheEntry struct {
	wrapped string
	header  string
	aead    cipher.AEAD
	stop    func() bool // cancels the expiry timer
	removed bool
}

func newKeyCache(size int, ttl time.Duration) *keyCache {
	return &keyCache{
		size: max(size, 1), ttl: ttl, after: timeAfterFunc,
		order: list.New(), byWK: make(map[string]*list.Element), byHdr: make(map[string]*list.Element),
	}
}

func (c *keyCache) put(wrapped, header string, aead cipher.AEAD) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byWK[wrapped]; ok {
		c.remove(el)
	}
	e := &cacheEntry{wrapped: wrapped, header: header, aead: aead}
	el := c.order.PushFront(e)
	// The timer takes c.mu, so it cannot run before e.stop is set.
	e.stop = c.after(c.ttl, func() { c.expire(el) })
	c.byWK[wrapped] = el
	if _, taken := c.byHdr[header]; !taken {
		c.byHdr[header] = el
	}
	for c.order.Len() > c.size {
		c.remove(c.order.Back())
	}
}

func (c *keyCache) byHeader(header []byte) cipher.AEAD {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hit(c.byHdr[string(header)])
}

func (c *keyCache) byWrapped(wrapped string) cipher.AEAD {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hit(c.byWK[wrapped])
}

// hit returns the entry's AEAD; c.mu must be held. Entries leave the cache
// when they expire, so any entry found is fresh.
func (c *keyCache) hit(el *list.Element) cipher.AEAD {
	if el == nil {
		return nil
	}
	c.order.MoveToFront(el)
	return el.Value.(*cacheEntry).aead
}

// expire removes an entry whose time is up, unless it has already gone.
func (c *keyCache) expire(el *list.Element) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !el.Value.(*cacheEntry).removed {
		c.remove(el)
	}
}

// remove takes an entry out of the cache; c.mu must be held.
func (c *keyCache) remove(el *list.Element) {
	e := c.order.Remove(el).(*cacheEntry)
	e.removed = true
	e.stop()
	if c.byWK[e.wrapped] == el {
		delete(c.byWK, e.wrapped)
	}
	if c.byHdr[e.header] == el {
		delete(c.byHdr, e.header)
	}
}

func (c *keyCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
