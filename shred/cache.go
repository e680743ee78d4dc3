package shred

import (
	"container/list"
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
type cache struct {
	mu    sync.Mutex
	size  int
	ttl   time.Duration
	order *list.List
	items map[string]*list.Element
}

type cacheItem struct {
	sh      string
	key     *subjectKey
	expires time.Time
}

func newCache(size int, ttl time.Duration) *cache {
	return &cache{size: size, ttl: ttl, order: list.New(), items: map[string]*list.Element{}}
}

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

func (c *cache) put(sh string, k *subjectKey, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[sh]; ok {
		el.Value = &cacheItem{sh: sh, key: k, expires: now.Add(c.ttl)}
		c.order.MoveToFront(el)
		return
	}
	c.items[sh] = c.order.PushFront(&cacheItem{sh: sh, key: k, expires: now.Add(c.ttl)})
	for c.order.Len() > c.size {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.items, last.Value.(*cacheItem).sh)
	}
}

func (c *cache) forget(sh string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[sh]; ok {
		c.order.Remove(el)
		delete(c.items, sh)
	}
}

// flight makes concurrent loads of one subject's key share one load.
type flight struct {
	mu    sync.Mutex
	calls map[string]*flightCall
}

type flightCall struct {
	done chan struct{}
	key  *subjectKey
	err  error
}

func (f *flight) do(sh string, load func() (*subjectKey, error)) (*subjectKey, error) {
	f.mu.Lock()
	if f.calls == nil {
		f.calls = map[string]*flightCall{}
	}
	if c, ok := f.calls[sh]; ok {
		f.mu.Unlock()
		<-c.done
		return c.key, c.err
	}
	c := &flightCall{done: make(chan struct{})}
	f.calls[sh] = c
	f.mu.Unlock()
	c.key, c.err = load()
	close(c.done)
	f.mu.Lock()
	delete(f.calls, sh)
	f.mu.Unlock()
	return c.key, c.err
}
