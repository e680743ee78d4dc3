package policy

import (
	"context"
	"encoding/json"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// watch applies the events the bucket delivers. When the watcher ends (its
// subscription closed) or the connection was re-established (the server
// may have restarted and lost the watch's consumer), it watches again and
// catches up from the store, without waiting for the watch's own heartbeat
// to notice.
func (l *Live) watch(w jetstream.KeyWatcher) {
	defer l.wg.Done()
	// A watcher lives as long as the context it was made with (the client
	// drops its subscription when that ends), so a new one is made with
	// one that lasts until Stop; only the catch-up is bounded in time.
	live, cancelLive := l.untilStop()
	defer cancelLive()
	for {
		if !l.drain(w) {
			_ = w.Stop()
			return
		}
		_ = w.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			nw, err := l.kv.Watch(live, eventKeys, jetstream.UpdatesOnly())
			if err == nil {
				ctx, cancel := context.WithTimeout(live, 5*time.Second)
				err = l.catchUp(ctx)
				cancel()
			}
			if nw != nil && err == nil {
				w = nw
				break
			}
			if nw != nil {
				_ = nw.Stop()
			}
			l.log.Warn("rewatch registry bucket", "err", err)
		}
	}
}

// drain applies updates until the watcher's channel closes or the
// connection reconnects (true) or Stop (false).
func (l *Live) drain(w jetstream.KeyWatcher) bool {
	reconnects := l.opts.NATS.Stats().Reconnects
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return false
		case <-t.C:
			if l.opts.NATS.Stats().Reconnects != reconnects {
				return true
			}
		case e, ok := <-w.Updates():
			if !ok {
				return true
			}
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue
			}
			var ev Event
			if err := json.Unmarshal(e.Value(), &ev); err != nil {
				l.log.Warn("registry event", "key", e.Key(), "err", ErrCorruptEvent)
				continue
			}
			l.receive(ev)
		}
	}
}

// receive puts the events up to a published one in force, reading them
// from the store (the bucket carries no change, only its number).
func (l *Live) receive(ev Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ev.Seq <= l.st.seq {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.catchUpLocked(ctx, l.opts.Store.db, 0); err != nil {
		l.log.Warn("catch up registry", "seq", ev.Seq, "err", err)
	}
}

// resync reads the store's head every Resync and catches up when this
// instance is behind (a publish that was lost, a watch that lagged); then
// it writes the audit entries (reconcile) and runs the erasure follow-ups
// (followUpLate) left over for longer than their writer had.
func (l *Live) resync() {
	defer l.wg.Done()
	live, cancelLive := l.untilStop()
	defer cancelLive()
	t := time.NewTicker(l.opts.Resync)
	defer t.Stop()
	for first := true; ; first = false {
		if !first {
			select {
			case <-l.stop:
				return
			case <-t.C:
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		seq, _, err := l.opts.Store.Head(ctx)
		if err == nil && seq > l.Seq() {
			err = l.catchUp(ctx)
		}
		if err != nil {
			l.log.Warn("resync registry", "err", err)
		}
		if err := l.reconcile(ctx); err != nil {
			l.log.Warn("audit pending registry events", "err", err)
		}
		cancel()
		// Erasures are followed up for up to a minute, or until Stop: one
		// cut short runs again after the grace.
		ctx, cancel = context.WithTimeout(live, time.Minute)
		if err := l.followUpLate(ctx); err != nil {
			l.log.Warn("follow up erasures", "err", err)
		}
		cancel()
	}
}

// untilStop returns a context that ends when the instance stops (or its
// cancel is called).
func (l *Live) untilStop() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-l.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}
