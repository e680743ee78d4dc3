package shred

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestCacheKeepsDestructions: a live key read by a load is not cached, nor
// used, when its subject's destruction was heard of while the load ran,
// even if the destroyed key was evicted meanwhile; a destroyed key is
// never replaced by a live one; other subjects' destructions change
// nothing.
func TestCacheKeepsDestructions(t *testing.T) {
	live, _ := testKey(t)
	gone := &subjectKey{kid: live.kid, destroyed: true}
	now := time.Now()
	nothing := func(*cache) {}
	tests := []struct {
		name string
		// before runs before the load of "sh" that reads read, during
		// while it runs.
		before, during func(c *cache)
		read           *subjectKey
		// want is what finish returns, cached what get returns then.
		want, cached *subjectKey
	}{
		{"nothing happens", nothing, nothing, live, live, live},
		{"forgotten, destroyed elsewhere", nothing, func(c *cache) { c.forget("sh") }, live, nil, nil},
		{"destroyed here", nothing, func(c *cache) { c.destroyed("sh", gone, now) }, live, nil, gone},
		{"destroyed here, then evicted", nothing, func(c *cache) {
			c.destroyed("sh", gone, now)
			c.finish("other", c.begin("other"), live, now)
		}, live, nil, nil},
		{"destroyed before, read live from a store behind", func(c *cache) { c.destroyed("sh", gone, now) }, nothing,
			live, gone, gone},
		{"forgotten, read destroyed", nothing, func(c *cache) { c.forget("sh") }, gone, gone, gone},
		{"another subject forgotten", nothing, func(c *cache) { c.forget("other") }, live, live, live},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCache(1, time.Hour)
			tt.before(c)
			gen := c.begin("sh")
			tt.during(c)
			if got := c.finish("sh", gen, tt.read, now); got != tt.want {
				t.Errorf("finish = %+v, want %+v", got, tt.want)
			}
			if got := c.get("sh", now); got != tt.cached {
				t.Errorf("cached %+v, want %+v", got, tt.cached)
			}
			if len(c.loading) != 0 {
				t.Errorf("%d subjects still loading", len(c.loading))
			}
		})
	}
}

// TestFlightSealDoesNotWaitForOpen: a Seal of a subject without a key while
// an Open of it loads does not share the Open's load (which does not create
// the key and ends in ErrUnknownKey) but creates the key itself.
func TestFlightSealDoesNotWaitForOpen(t *testing.T) {
	var f flight
	started, release := make(chan struct{}), make(chan struct{})
	openDone := make(chan error, 1)
	go func() {
		_, err := f.do(t.Context(), flightKey{sh: "sh"}, func(context.Context) (*subjectKey, error) {
			close(started)
			<-release
			return nil, ErrUnknownKey
		})
		openDone <- err
	}()
	<-started
	created := &subjectKey{kid: "sk-1"}
	sealDone := make(chan error, 1)
	go func() {
		got, err := f.do(t.Context(), flightKey{sh: "sh", create: true}, func(context.Context) (*subjectKey, error) {
			return created, nil
		})
		if err == nil && got != created {
			err = fmt.Errorf("key %+v, want the created one", got)
		}
		sealDone <- err
	}()
	select {
	case err := <-sealDone:
		if err != nil {
			t.Errorf("seal: %v", err)
		}
	case <-time.After(10 * time.Second): // a guard against hanging, not a synchronisation
		t.Error("the seal waits for the open's load")
	}
	close(release)
	if err := <-openDone; !errors.Is(err, ErrUnknownKey) {
		t.Errorf("open: %v, want ErrUnknownKey", err)
	}
}

// TestFlightCancelsAbandonedLoad: a load every caller gave up on is
// cancelled, and the next caller starts a load of its own.
func TestFlightCancelsAbandonedLoad(t *testing.T) {
	var f flight
	ctx, giveUp := context.WithCancel(t.Context())
	started, cancelled := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := f.do(ctx, flightKey{sh: "sh"}, func(ctx context.Context) (*subjectKey, error) {
			close(started)
			<-ctx.Done()
			close(cancelled)
			return nil, ctx.Err()
		})
		done <- err
	}()
	<-started
	giveUp()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("the caller that gave up: %v", err)
	}
	<-cancelled
	want := &subjectKey{kid: "sk-1"}
	if got, err := f.do(t.Context(), flightKey{sh: "sh"}, func(context.Context) (*subjectKey, error) { return want, nil }); got != want || err != nil {
		t.Fatalf("the next caller: %+v, %v", got, err)
	}
}

// BenchmarkCacheHit measures the lookup every Seal and Open of a subject
// whose key is cached pays, alone and from all processors at once.
func BenchmarkCacheHit(b *testing.B) {
	key, _ := testKey(b)
	c := newCache(100000, time.Hour)
	now := time.Now()
	subjects := make([]string, 1000)
	for i := range subjects {
		subjects[i] = fmt.Sprintf("hmac-%d", i)
		c.finish(subjects[i], c.begin(subjects[i]), key, now)
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if c.get(subjects[i%len(subjects)], now) == nil {
				b.Fatal("miss")
			}
			i++
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if c.get(subjects[i%len(subjects)], now) == nil {
					b.Fatal("miss")
				}
				i++
			}
		})
	})
}
