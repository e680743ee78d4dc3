package keys

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestSignBatcherCoalescesConcurrentCalls(t *testing.T) {
	var calls atomic.Int32
	release := make(chan struct{})
	do := func(ctx context.Context, payloads [][]byte) ([][]byte, error) {
		if calls.Add(1) == 1 {
			<-release // hold the first request so the others queue up
		}
		out := make([][]byte, len(payloads))
		for i, p := range payloads {
			out[i] = append([]byte("signed:"), p...)
		}
		return out, nil
	}
	b := startSignBatcher(256, time.Second, do)
	defer b.stop()
	const callers = 50
	var wg, started sync.WaitGroup
	errs := make(chan error, callers)
	started.Add(callers)
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			started.Done()
			p := [][]byte{fmt.Appendf(nil, "a%d", i), fmt.Appendf(nil, "b%d", i)}
			got, err := b.sign(context.Background(), p)
			if err != nil || len(got) != 2 || !bytes.Equal(got[0], append([]byte("signed:"), p[0]...)) || !bytes.Equal(got[1], append([]byte("signed:"), p[1]...)) {
				errs <- fmt.Errorf("caller %d: %q %v", i, got, err)
			}
		}()
	}
	// Every caller is running; the sleep lets each reach its send to the
	// held worker (a loaded machine must not leave one behind).
	started.Wait()
	time.Sleep(100 * time.Millisecond)
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := calls.Load(); n > 3 {
		t.Errorf("%d sign requests for %d concurrent callers, want at most 3", n, callers)
	}
}

func TestSignBatcherErrorsAndStop(t *testing.T) {
	boom := newError("transit sign", ErrUnavailable, errors.New("connection refused"))
	b := startSignBatcher(4, time.Second, func(context.Context, [][]byte) ([][]byte, error) { return nil, boom })
	if _, err := b.sign(t.Context(), [][]byte{[]byte("x")}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := b.sign(ctx, [][]byte{[]byte("x")}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("cancelled caller: %v", err)
	}
	b.stop()
	b.stop()
	if _, err := b.sign(t.Context(), [][]byte{[]byte("x")}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("after stop: %v", err)
	}
}
