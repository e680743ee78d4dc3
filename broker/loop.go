package broker

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// loop consumes one durable consumer with bounded concurrency. Its owner is
// the Broker, which stops it and waits for it.
type loop struct {
	name     string
	iter     jetstream.MessagesContext
	handle   func(ctx context.Context, msg jetstream.Msg)
	b        *Broker
	sem      chan struct{}
	wg       sync.WaitGroup
	done     chan struct{}
	work     context.Context
	cancel   context.CancelFunc
	stopping atomic.Bool
}

func (b *Broker) startLoop(name string, cons jetstream.Consumer, h func(ctx context.Context, msg jetstream.Msg)) (*loop, error) {
	// Pull ahead no more than the workers can start soon: a message waiting
	// in the buffer longer than AckWait would be given to another instance.
	// Pull ahead at least one message per worker, so that a fetch batch
	// smaller than the concurrency does not leave workers waiting on pulls.
	ahead := min(max(b.opts.Stream.FetchBatch, b.opts.Concurrency), 4*b.opts.Concurrency)
	iter, err := cons.Messages(jetstream.PullMaxMessages(ahead))
	if err != nil {
		return nil, err
	}
	work, cancel := context.WithCancel(context.Background())
	l := &loop{
		name: name, iter: iter, handle: h, b: b,
		sem:  make(chan struct{}, b.opts.Concurrency),
		done: make(chan struct{}),
		work: work, cancel: cancel,
	}
	go l.run()
	return l, nil
}

// run pulls one message per free worker slot (backpressure: nothing is taken
// from the consumer while every worker is busy).
func (l *loop) run() {
	defer close(l.done)
	for {
		l.sem <- struct{}{}
		msg, err := l.iter.Next()
		if err != nil {
			<-l.sem
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return
			}
			l.b.log.Warn("pull", "loop", l.name, "err", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if l.stopping.Load() {
			// Buffered but not started: hand it back at once.
			_ = msg.Nak()
			<-l.sem
			continue
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer func() { <-l.sem }()
			l.b.metrics.inFlight.Inc()
			defer l.b.metrics.inFlight.Dec()
			stopBeat := l.heartbeat(msg)
			defer stopBeat()
			l.handle(l.work, msg)
		}()
	}
}

// heartbeat keeps the ack deadline of a message in work from passing, so
// that a slow delivery is not handed to another instance meanwhile.
func (l *loop) heartbeat(msg jetstream.Msg) func() {
	every := l.b.opts.Stream.AckWait / 2
	t := time.NewTicker(every)
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				plan := PlanFor(OutcomeSlow, 0, nil, l.b.opts.Retry)
				l.b.ack(msg, plan, OutcomeSlow)
			}
		}
	}()
	return func() { close(quit); wg.Wait() }
}

// stop drains the iterator, waits for the workers until ctx ends, then
// cancels the rest (which hand their messages back) and waits for them.
func (l *loop) stop(ctx context.Context) {
	l.stopping.Store(true)
	l.iter.Drain()
	finished := make(chan struct{})
	go func() {
		<-l.done
		l.wg.Wait()
		close(finished)
	}()
	select {
	case <-finished:
	case <-ctx.Done():
		l.cancel()
		<-finished
	}
	l.cancel()
}
