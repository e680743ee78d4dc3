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
// concurrent use and starts no goroutines.
type Gate struct {
	mu       sync.Mutex
	closed   bool
	inFlight int
	idle     chan struct{} // closed when inFlight drops to zero after Close
}

// Enter admits one delivery, or returns ErrClosed. Every successful Enter
// must be matched by one Leave.
func (g *Gate) Enter() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return ErrClosed
	}
	g.inFlight++
	return nil
}

// Leave ends one delivery admitted by Enter.
func (g *Gate) Leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.inFlight--
	if g.inFlight == 0 && g.idle != nil {
		close(g.idle)
		g.idle = nil
	}
}

// Close stops admitting deliveries and waits for those in flight, or for ctx
// to end (then it returns ctx's error). It reports whether this call was the
// first to close the gate, so that callers release resources once.
func (g *Gate) Close(ctx context.Context) (first bool, err error) {
	g.mu.Lock()
	first = !g.closed
	g.closed = true
	if g.inFlight == 0 {
		g.mu.Unlock()
		return first, nil
	}
	if g.idle == nil {
		g.idle = make(chan struct{})
	}
	idle := g.idle
	g.mu.Unlock()

	select {
	case <-idle:
		return first, nil
	case <-ctx.Done():
		return first, ctx.Err()
	}
}
