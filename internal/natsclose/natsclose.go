// Package natsclose closes a NATS connection at shutdown without losing
// what it still holds: it drains the connection and waits until it has
// closed. nats.Conn.Drain alone returns at once and drains in the
// background, so a process that exits after it can lose its last
// publishes and acknowledgements.
package natsclose

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
)

// Handler returns the option that closes closed when the connection has
// closed, for Wait.
func Handler(closed chan struct{}) nats.Option {
	return nats.ClosedHandler(func(*nats.Conn) { close(closed) })
}

// Start begins draining nc. A connection that is closed already needs
// nothing; one that is reconnecting, or whose drain fails, is closed at
// once, since nothing can be flushed to a server it is not connected to.
// The error is the failed drain's.
func Start(nc *nats.Conn) error {
	err := nc.Drain()
	switch {
	case err == nil, errors.Is(err, nats.ErrConnectionClosed):
		return nil
	case errors.Is(err, nats.ErrConnectionReconnecting):
		nc.Close()
		return nil
	default:
		nc.Close()
		return fmt.Errorf("drain: %w", err)
	}
}

// Wait waits until closed (given to Handler) is closed, or until ctx ends;
// then it closes nc and returns ctx's error.
func Wait(ctx context.Context, nc *nats.Conn, closed <-chan struct{}) error {
	select {
	case <-closed:
		return nil
	case <-ctx.Done():
		nc.Close()
		return ctx.Err()
	}
}
