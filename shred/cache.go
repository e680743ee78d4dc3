package shred

import (
	"container/list"
	"context"
	"crypto/cipher"
	"sync"
	"time"
)

// subjectKey is a subject's key as cached: the cipher, or destroyed.
type subjectKey struct {
	kid       string
	aead      cipher.AEAD
	destroyed bool
}

// cache is an LRU of subject keys by subject HMAC, bounded by size and age.
// It is safe for concurrent use.
//
// A key is cached by the load that read it only if no destruction of its
// subject was heard of while the load ran (see begin and finish): a load
// that read the live key just before an erasure would otherwise put it
// back after the erasure forgot it, to be used until it expires.
type cache struct {
	mu    sync.Mutex
	size  int
	ttl   time.Duration
	order *list.List
	items map[string]*list.Element
	// loading holds, for each subject whose key is being loaded, what
	// finish needs to tell a load that read the key before a destruction.
	// A subject is there only while loads of it run, so a destruction or
	// a broadcast costs nothing more for the others.
	loading map[string]*loading
}

type cacheItem struct {
	sh      string
	key     *subjectKey
	expires time.Time
}

// loading is what the cache keeps of a subject while its key is loaded:
// how many loads run, and a generation each destruction heard of bumps.
type loading struct {
	loads int
	gen   uint64
}

func newCache(size int, ttl time.Duration) *cache {
	return &cache{size: size, ttl: ttl, order: list.New(), items: map[string]*list.Element{}, loading: map[string]*loading{}}
}

// get returns sh's cached key, nil when there is none or it expired. It is
// the path of every Seal and Open of a subject whose key is cached, so it
// does no more than the lookup.
func (c *cache) get(sh string, now time.Time) *subjectKey {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[sh]
	if !ok {
		return nil
	}
	it := el.Value.(*cacheItem)
	if now.After(it.expires) {
		c.order.Remove(el)
		delete(c.items, sh)
		return nil
	}
	c.order.MoveToFront(el)
	return it.key
}

// begin records that a load of sh's key is about to read the store, and
// returns the generation to hand to finish.
func (c *cache) begin(sh string) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.loading[sh]
	if l == nil {
		l = &loading{}
		c.loading[sh] = l
	}
	l.loads++
	return l.gen
}

// finish ends a load of sh's key begun at generation gen, and returns the
// key the load's callers are to use, cached. key is what the load read, nil
// when it failed (finish then returns nil). A live key is stale when a
// destruction of the subject was heard of since the load began: it may
// have been read before the destruction, so finish returns nil and the
// caller reads again. A destroyed key is never stale, destruction being
// final, and is never replaced by a live one: finish then returns the
// destroyed key cached.
func (c *cache) finish(sh string, gen uint64, key *subjectKey, now time.Time) *subjectKey {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.loading[sh]
	if l.loads--; l.loads == 0 {
		delete(c.loading, sh)
	}
	if key == nil || (!key.destroyed && l.gen != gen) {
		return nil
	}
	return c.put(sh, key, now)
}

// destroyed caches sh's key as destroyed, in place of any live key, and
// makes the loads of sh's key running meanwhile stale.
func (c *cache) destroyed(sh string, key *subjectKey, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.put(sh, key, now)
	if l := c.loading[sh]; l != nil {
		l.gen++
	}
}

// forget drops sh's cached key, destroyed on another instance, and makes the
// loads of sh's key running meanwhile stale.
func (c *cache) forget(sh string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[sh]; ok {
		c.order.Remove(el)
		delete(c.items, sh)
	}
	if l := c.loading[sh]; l != nil {
		l.gen++
	}
}

// put caches k for sh unless it is live and sh's cached key is destroyed,
// and returns the key cached. c.mu is held.
func (c *cache) put(sh string, k *subjectKey, now time.Time) *subjectKey {
	if el, ok := c.items[sh]; ok {
		it := el.Value.(*cacheItem)
		if it.key.destroyed && !k.destroyed {
			return it.key
		}
		it.key, it.expires = k, now.Add(c.ttl)
		c.order.MoveToFront(el)
		return k
	}
	c.items[sh] = c.order.PushFront(&cacheItem{sh: sh, key: k, expires: now.Add(c.ttl)})
	for c.order.Len() > c.size {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.items, last.Value.(*cacheItem).sh)
	}
	return k
}

// flight makes concurrent loads of one subject's key share one load.
type flight struct {
	mu    sync.Mutex
	calls map[flightKey]*flightCall
}

// flightKey names a load: a load that may create the subject's key (for
// Seal) is not shared with one that may not (for Open), whose "no key"
// would fail a first Seal.
type flightKey struct {
	sh     string
	create bool
}

// flightCall is one load and the callers waiting for it.
type flightCall struct {
	done    chan struct{}
	key     *subjectKey
	err     error
	waiting int
	cancel  context.CancelFunc
}

// do returns what load returns for fk, run once for all the callers asking
// while it runs. The load runs on a context of its own, with the values of
// the caller that started it but not its cancellation: a caller whose ctx
// ends gets ctx's error and leaves the others waiting, and the load is
// cancelled only when no caller waits for it any more.
func (f *flight) do(ctx context.Context, fk flightKey, load func(context.Context) (*subjectKey, error)) (*subjectKey, error) {
	f.mu.Lock()
	if f.calls == nil {
		f.calls = map[flightKey]*flightCall{}
	}
	c, ok := f.calls[fk]
	if !ok {
		lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		c = &flightCall{done: make(chan struct{}), cancel: cancel}
		f.calls[fk] = c
		go func() {
			c.key, c.err = load(lctx)
			cancel()
			f.mu.Lock()
			f.drop(fk, c)
			f.mu.Unlock()
			close(c.done)
		}()
	}
	c.waiting++
	f.mu.Unlock()
	select {
	case <-c.done:
		return c.key, c.err
	case <-ctx.Done():
		f.mu.Lock()
		defer f.mu.Unlock()
		if c.waiting--; c.waiting == 0 {
			c.cancel()
			f.drop(fk, c)
		}
		return nil, ctx.Err()
	}
}

// drop removes c, done or given up by all its callers, so that the next
// caller starts a load of its own; a later load of fk is left in place.
// f.mu is held.
func (f *flight) drop(fk flightKey, c *flightCall) {
	if f.calls[fk] == c {
		delete(f.calls, fk)
	}
}
