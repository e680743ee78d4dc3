package keys

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"time"
)

// signBatcher coalesces concurrent Sign calls into shared transit/sign
// requests, the way a group commit does: one worker takes the first waiting
// call, adds every call already queued (up to the batch size), and signs
// them all in one request. It adds no waiting time: a call that finds the
// worker idle is sent at once. Calls with a full batch or more go straight
// to Vault.
type signBatcher struct {
	max     int
	timeout time.Duration
	do      signFunc

	reqs chan *signRequest
	quit chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

type signRequest struct {
	ctx      context.Context
	payloads [][]byte
	done     chan signResult // buffered
}

type signResult struct {
	tokens [][]byte
	err    error
}

var errClosed = errors.New("key service closed")

func startSignBatcher(max int, timeout time.Duration, do signFunc) *signBatcher {
	b := &signBatcher{max: max, timeout: timeout, do: do, reqs: make(chan *signRequest), quit: make(chan struct{})}
	b.wg.Add(1)
	go b.run()
	return b
}

// stop ends the worker and waits for it; queued calls get ErrUnavailable.
func (b *signBatcher) stop() {
	b.once.Do(func() { close(b.quit) })
	b.wg.Wait()
}

func (b *signBatcher) sign(ctx context.Context, payloads [][]byte) ([][]byte, error) {
	if len(payloads) >= b.max {
		return b.do(ctx, payloads)
	}
	r := &signRequest{ctx: ctx, payloads: payloads, done: make(chan signResult, 1)}
	select {
	case b.reqs <- r:
	case <-ctx.Done():
		return nil, newError("transit sign", ErrUnavailable, ctx.Err())
	case <-b.quit:
		return nil, newError("transit sign", ErrUnavailable, errClosed)
	}
	select {
	case res := <-r.done:
		return res.tokens, res.err
	case <-ctx.Done():
		return nil, newError("transit sign", ErrUnavailable, ctx.Err())
	}
}

func (b *signBatcher) run() {
	defer b.wg.Done()
	for {
		var batch []*signRequest
		select {
		case r := <-b.reqs:
			batch = append(batch, r)
		case <-b.quit:
			return
		}
		n := len(batch[0].payloads)
		// Drain what is queued; while that finds callers, let the ones
		// woken by the previous batch queue again (a turn of the
		// scheduler, no timer) and drain once more.
		for grew := true; grew && n < b.max; {
			runtime.Gosched()
			grew = false
		drain:
			for n < b.max {
				select {
				case r := <-b.reqs:
					batch = append(batch, r)
					n += len(r.payloads)
					grew = true
				default:
					break drain
				}
			}
		}
		b.signAll(batch, n)
	}
}

// signAll signs the payloads of every live request in one call and hands
// each request its share.
func (b *signBatcher) signAll(batch []*signRequest, n int) {
	all := make([][]byte, 0, n)
	live := batch[:0]
	for _, r := range batch {
		if r.ctx.Err() != nil {
			continue // the caller has gone
		}
		live = append(live, r)
		all = append(all, r.payloads...)
	}
	if len(live) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
	go func() {
		select {
		case <-b.quit:
			cancel()
		case <-ctx.Done():
		}
	}()
	tokens, err := b.do(ctx, all)
	cancel()
	for _, r := range live {
		if err != nil {
			r.done <- signResult{err: err}
			continue
		}
		r.done <- signResult{tokens: tokens[:len(r.payloads):len(r.payloads)]}
		tokens = tokens[len(r.payloads):]
	}
}
