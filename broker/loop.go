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
	name   string
	iter   jetstream.MessagesContext
	handle func(ctx context.Context, msg jetstream.Msg)
	b      *Broker
	sem    chan struct{}
	// msgs hands a message to an idle worker. Workers are started as
	// messages need them, at most one per unit of concurrency, and live
	// until the loop stops: a goroutine per message would grow a fresh
	// stack through the decision's walk each time (about 4 µs a message).
	msgs     chan jetstream.Msg
	wg       sync.WaitGroup // the workers
	done     chan struct{}
	work     context.Context
	cancel   context.CancelFunc
	stopping atomic.Bool

	// inWork holds the messages being worked on with when each last told
	// JetStream so (see beat).
	beatMu sync.Mutex
	inWork map[*inWork]struct{}
	beats  chan struct{} // closed to stop beat
	beatWG sync.WaitGroup
}

// inWork is one message in work and when it was taken or last reported in
// progress.
type inWork struct {
	msg  jetstream.Msg
	last time.Time
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
		msgs: make(chan jetstream.Msg),
		done: make(chan struct{}),
		work: work, cancel: cancel,
		inWork: map[*inWork]struct{}{},
		beats:  make(chan struct{}),
	}
	l.beatWG.Add(1)
	go l.beat()
	go l.run()
	return l, nil
}

// run pulls one message per free worker slot (backpressure: nothing is taken
// from the consumer while every worker is busy).
func (l *loop) run() {
	defer close(l.done)
	defer close(l.msgs)
	workers := 0
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
		select {
		case l.msgs <- msg:
			continue
		default:
		}
		if workers < cap(l.sem) {
			workers++
			l.wg.Add(1)
			go l.worker(msg)
			continue
		}
		// Every worker exists and the semaphore let this message in, so one
		// of them has finished its message and is on its way back.
		l.msgs <- msg
	}
}

// worker works on msg, then on each message run hands it, until the loop
// stops.
func (l *loop) worker(msg jetstream.Msg) {
	defer l.wg.Done()
	for {
		l.work1(msg)
		var ok bool
		if msg, ok = <-l.msgs; !ok {
			return
		}
	}
}

// work1 handles one message, known to beat while it is in work, and frees
// its slot of the semaphore.
func (l *loop) work1(msg jetstream.Msg) {
	defer func() { <-l.sem }()
	l.b.metrics.inFlight.Inc()
	defer l.b.metrics.inFlight.Dec()
	w := &inWork{msg: msg, last: time.Now()}
	l.beatMu.Lock()
	l.inWork[w] = struct{}{}
	l.beatMu.Unlock()
	defer func() {
		l.beatMu.Lock()
		delete(l.inWork, w)
		l.beatMu.Unlock()
	}()
	l.handle(l.work, msg)
}

// beat keeps the ack deadline of the messages in work from passing, so that
// a slow delivery is not handed to another instance meanwhile: every
// AckWait/4 it tells JetStream that each message taken or last reported at
// least AckWait/4 ago is still in progress, so that no message goes longer
// than AckWait/2 without word. One goroutine and one ticker per loop serve
// every message in work.
func (l *loop) beat() {
	defer l.beatWG.Done()
	every := max(l.b.opts.Stream.AckWait/4, time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	var due []jetstream.Msg
	for {
		select {
		case <-l.beats:
			return
		case now := <-t.C:
			due = due[:0]
			l.beatMu.Lock()
			for w := range l.inWork {
				if now.Sub(w.last) >= every {
					w.last = now
					due = append(due, w.msg)
				}
			}
			l.beatMu.Unlock()
			plan := PlanFor(OutcomeSlow, 0, nil, l.b.opts.Retry)
			for _, msg := range due {
				l.b.ack(msg, plan, OutcomeSlow)
			}
		}
	}
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
	close(l.beats)
	l.beatWG.Wait()
}
