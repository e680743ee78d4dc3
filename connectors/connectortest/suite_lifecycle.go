package connectortest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/connectors"
)

// deliverAsync runs Deliver in a goroutine and returns its result channel.
func deliverAsync(ctx context.Context, c connectors.Connector, d *connectors.Delivery) <-chan error {
	done := make(chan error, 1)
	go func() { done <- c.Deliver(ctx, d) }()
	return done
}

func (s *suite) testCancellation(t *testing.T) {
	h, c := s.setup(t)

	t.Run("before", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		d := s.delivery(t, RecipientA)
		if err := c.Deliver(ctx, d); !errors.Is(err, context.Canceled) {
			t.Errorf("Deliver with a cancelled context = %v, want context.Canceled", err)
		}
		if n := len(copies(h, d.RequestID)); n != 0 {
			t.Errorf("delivery with a cancelled context accepted %d times", n)
		}
	})

	t.Run("during", func(t *testing.T) {
		h.Fail(FailStall)
		ctx, cancel := context.WithCancel(t.Context())
		done := deliverAsync(ctx, c, s.delivery(t, RecipientA))
		time.Sleep(100 * time.Millisecond)
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("cancelled Deliver = %v, want context.Canceled", err)
			}
			if connectors.IsPermanent(err) {
				t.Errorf("cancellation classified permanent: %v", err)
			}
		case <-time.After(prompt):
			t.Fatalf("Deliver did not return within %s of cancellation", prompt)
		}
	})
}

func (s *suite) testDeadline(t *testing.T) {
	h, c := s.setup(t)
	h.Fail(FailStall)
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	done := deliverAsync(ctx, c, s.delivery(t, RecipientA))
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Deliver past its deadline = %v, want context.DeadlineExceeded", err)
		}
		if connectors.IsPermanent(err) {
			t.Errorf("deadline classified permanent: %v", err)
		}
	case <-time.After(prompt):
		t.Fatalf("Deliver did not return within %s of its deadline", prompt)
	}
}

func (s *suite) testClose(t *testing.T) {
	h := s.newHarness(t)
	c := h.Connector()
	d := s.delivery(t, RecipientA)
	deliver(t, c, d)
	for i := range 3 {
		if err := c.Close(t.Context()); err != nil {
			t.Fatalf("Close #%d: %v", i+1, err)
		}
	}
	err := c.Deliver(t.Context(), s.delivery(t, RecipientA))
	if !errors.Is(err, connectors.ErrClosed) {
		t.Errorf("Deliver after Close = %v, want connectors.ErrClosed", err)
	}
	if connectors.IsPermanent(err) {
		t.Errorf("Deliver after Close classified permanent: %v", err)
	}

	t.Run("concurrent", func(t *testing.T) {
		c := h.Connector()
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				if err := c.Close(t.Context()); err != nil {
					t.Errorf("concurrent Close: %v", err)
				}
			})
		}
		wg.Wait()
	})
}

func (s *suite) testCloseInFlight(t *testing.T) {
	h := s.newHarness(t)
	c := h.Connector()
	h.Fail(FailStall)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := deliverAsync(ctx, c, s.delivery(t, RecipientA))
	time.Sleep(100 * time.Millisecond)

	closeCtx, closeCancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer closeCancel()
	closed := make(chan error, 1)
	go func() { closed <- c.Close(closeCtx) }()
	select {
	case err := <-closed:
		if err == nil {
			t.Error("Close reported a clean close while a delivery was in flight")
		}
	case <-time.After(prompt):
		t.Fatalf("Close did not return within %s of its deadline", prompt)
	}
	cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Error("stalled delivery reported success")
		}
	case <-time.After(prompt):
		t.Fatalf("in-flight Deliver did not return within %s of cancellation", prompt)
	}
	if err := c.Close(t.Context()); err != nil {
		t.Errorf("Close after the delivery ended: %v", err)
	}
}

func (s *suite) testConcurrent(t *testing.T) {
	h, c := s.setup(t)
	const workers, each = 16, 8
	ids := make(chan string, workers*each)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for range each {
				d := s.delivery(t, []string{RecipientA, RecipientB}[w%2])
				if err := c.Deliver(t.Context(), d); err != nil {
					t.Errorf("concurrent Deliver: %v", err)
					return
				}
				ids <- d.RequestID
			}
		})
	}
	wg.Wait()
	close(ids)
	seen := make(map[string]int)
	for _, r := range h.Received() {
		seen[r.IdempotencyKey]++
	}
	n := 0
	for id := range ids {
		n++
		if seen[id] != 1 {
			t.Errorf("%s received %d times, want 1", id, seen[id])
		}
	}
	if n != workers*each {
		t.Errorf("%d deliveries succeeded, want %d", n, workers*each)
	}
}

func (s *suite) testNoPlaintext(t *testing.T) {
	h, c := s.setup(t)
	canaries := NewCanaries()
	id := fmt.Sprintf("req-canary-%d", s.seq.Add(1))
	d := &connectors.Delivery{
		RequestID:   id,
		Recipient:   RecipientA,
		Kind:        "transfer",
		ContentType: "application/jose",
		Body:        s.sealer.Seal(t, canaries.Record(id)),
		Headers:     map[string]string{"Clearance-Key-Ref": "test:conformance"},
	}
	deliver(t, c, d)
	// A failed attempt crosses the wire too.
	h.Fail(FailTransient)
	_ = c.Deliver(t.Context(), s.withID(d, id+"-retry"))
	h.Fail(FailNone)

	wire := string(h.Wire())
	// The capture must be real: the request id travels in clear, and the
	// sealed body holds the canaries.
	if !strings.Contains(wire, id) {
		t.Fatal("the harness captured nothing of the delivery; cannot check the wire")
	}
	got := copies(h, id)
	if len(got) != 1 {
		t.Fatalf("received %d copies of the canary delivery, want 1", len(got))
	}
	plain, err := s.sealer.Open(got[0].Body)
	if err != nil {
		t.Fatalf("received body: %v", err)
	}
	for _, v := range canaries.Values() {
		if !strings.Contains(string(plain), v) {
			t.Fatalf("sealed record lacks a canary; the check would prove nothing")
		}
		for _, form := range Forms(v) {
			if strings.Contains(wire, form) {
				t.Errorf("a planted personal value crossed the wire in plaintext (form %q)", form)
			}
		}
	}
}

func (s *suite) withID(d *connectors.Delivery, id string) *connectors.Delivery {
	c := *d
	c.RequestID = id
	return &c
}
