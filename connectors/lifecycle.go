package connectors

import (
	"context"
	"errors"
	"sync"
)

// ErrClosed is returned by Deliver on a connector that has been closed. It is
// transient for the broker: another instance, or this one after a restart,
// can still deliver the message.
var ErrClosed = errors.New("connector closed")

// Gate tracks the deliveries in flight on a connector so that Close can stop
// new ones and wait for the rest. The zero value is open. It is safe for
// concurrent use.
type Gate struct {
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// Enter admits one delivery, or returns ErrClosed. Every successful Enter
// must be matched by one Leave.
func (g *Gate) Enter() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return ErrClosed
	}
	g.wg.Add(1)
	return nil
}

// Leave ends one delivery admitted by Enter.
func (g *Gate) Leave() { g.wg.Done() }

// Close stops admitting deliveries and waits for those in flight, or for ctx
// to end (then it returns ctx's error). It reports whether this call was the
// first to close the gate, so that callers release resources once.
func (g *Gate) Close(ctx context.Context) (first bool, err error) {
	g.mu.Lock()
	first = !g.closed
	g.closed = true
	g.mu.Unlock()

	done := make(chan struct{})
	go func() {
		g.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return first, nil
	case <-ctx.Done():
		return first, ctx.Err()
	}
}
