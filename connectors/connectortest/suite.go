package connectortest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/connectors"
)

// prompt bounds how long a cancelled delivery may take to return. It is a
// correctness bound (the delivery must not hang), not a speed target.
const prompt = 5 * time.Second

// Run runs the conformance suite against the connector the harnesses of
// newHarness build. Each sub-test gets its own Harness.
func Run(t *testing.T, f Features, newHarness func(t *testing.T) Harness) {
	t.Helper()
	s := &suite{f: f, newHarness: newHarness, sealer: NewSealer(t)}
	tests := []struct {
		name string
		run  func(t *testing.T)
		skip bool
	}{
		{name: "Delivery", run: s.testDelivery},
		{name: "Idempotency", run: s.testIdempotency},
		{name: "Ordering", run: s.testOrdering, skip: !f.Ordered},
		{name: "TransientThenRecovery", run: s.testTransient},
		{name: "Permanent", run: s.testPermanent},
		{name: "InvalidDelivery", run: s.testInvalid},
		{name: "RetryAfter", run: s.testRetryAfter, skip: f.RetryAfter == 0},
		{name: "Cancellation", run: s.testCancellation},
		{name: "Deadline", run: s.testDeadline},
		{name: "Close", run: s.testClose},
		{name: "CloseWithDeliveryInFlight", run: s.testCloseInFlight},
		{name: "Concurrent", run: s.testConcurrent},
		{name: "NoPlaintextOnWire", run: s.testNoPlaintext},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.skip {
				t.Skip("not promised by this connector's Features")
			}
			tt.run(t)
		})
	}
}

type suite struct {
	f          Features
	newHarness func(t *testing.T) Harness
	sealer     *Sealer
	seq        atomic.Int64
}

// setup returns a harness and its connector, closed at cleanup.
func (s *suite) setup(t *testing.T) (Harness, connectors.Connector) {
	t.Helper()
	h := s.newHarness(t)
	c := h.Connector()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), prompt)
		defer cancel()
		if err := c.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return h, c
}

// delivery returns a new sealed delivery with a unique request id.
func (s *suite) delivery(t *testing.T, recipient string) *connectors.Delivery {
	t.Helper()
	id := fmt.Sprintf("req-%d-%d", time.Now().UnixNano(), s.seq.Add(1))
	return &connectors.Delivery{
		RequestID:   id,
		Recipient:   recipient,
		Kind:        "transfer",
		ContentType: "application/jose",
		Body:        s.sealer.Seal(t, map[string]any{"order_id": id, "note": "conformance"}),
		Headers:     map[string]string{"Clearance-Agreement": "dpa-test@1"},
	}
}

func deliver(t *testing.T, c connectors.Connector, d *connectors.Delivery) {
	t.Helper()
	if err := c.Deliver(t.Context(), d); err != nil {
		t.Fatalf("Deliver(%s): %v", d.RequestID, err)
	}
}

// copies returns the received deliveries with key id.
func copies(h Harness, id string) []Received {
	var out []Received
	for _, r := range h.Received() {
		if r.IdempotencyKey == id {
			out = append(out, r)
		}
	}
	return out
}

func header(hs map[string]string, key string) (string, bool) {
	for k, v := range hs {
		if strings.EqualFold(k, key) {
			return v, true
		}
	}
	return "", false
}

func (s *suite) testDelivery(t *testing.T) {
	h, c := s.setup(t)
	for _, recipient := range []string{RecipientA, RecipientB} {
		d := s.delivery(t, recipient)
		deliver(t, c, d)
		got := copies(h, d.RequestID)
		if len(got) != 1 {
			t.Fatalf("%s: received %d copies of %s, want 1", recipient, len(got), d.RequestID)
		}
		r := got[0]
		if r.Recipient != d.Recipient || r.Kind != d.Kind || r.ContentType != d.ContentType {
			t.Errorf("received recipient %q kind %q content type %q, want %q %q %q",
				r.Recipient, r.Kind, r.ContentType, d.Recipient, d.Kind, d.ContentType)
		}
		if !bytes.Equal(r.Body, d.Body) {
			t.Errorf("body changed on the way (%d bytes sent, %d received)", len(d.Body), len(r.Body))
		}
		if _, err := s.sealer.Open(r.Body); err != nil {
			t.Errorf("received body does not open: %v", err)
		}
		for k, v := range d.Headers {
			if got, ok := header(r.Headers, k); !ok || got != v {
				t.Errorf("header %s = %q (present %v), want %q", k, got, ok, v)
			}
		}
	}
}

func (s *suite) testIdempotency(t *testing.T) {
	h, c := s.setup(t)
	d := s.delivery(t, RecipientA)
	deliver(t, c, d)
	deliver(t, c, d)
	got := copies(h, d.RequestID)
	switch {
	case s.f.Deduplicates && len(got) != 1:
		t.Errorf("target deduplicates but holds %d copies of %s", len(got), d.RequestID)
	case !s.f.Deduplicates && len(got) != 2:
		t.Errorf("target holds %d copies of %s, want 2, each with the key", len(got), d.RequestID)
	}
}

func (s *suite) testOrdering(t *testing.T) {
	h, c := s.setup(t)
	var want []string
	for i := range 20 {
		d := s.delivery(t, []string{RecipientA, RecipientB}[i%2])
		deliver(t, c, d)
		want = append(want, d.RequestID)
	}
	var got []string
	for _, r := range h.Received() {
		got = append(got, r.IdempotencyKey)
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("arrival order\n got %v\nwant %v", got, want)
	}
}

func (s *suite) testTransient(t *testing.T) {
	h, c := s.setup(t)
	d := s.delivery(t, RecipientA)
	h.Fail(FailTransient)
	err := c.Deliver(t.Context(), d)
	if err == nil {
		t.Fatal("Deliver to a failing target: nil error")
	}
	if connectors.IsPermanent(err) {
		t.Fatalf("transient failure classified permanent: %v", err)
	}
	h.Fail(FailNone)
	deliver(t, c, d)
	if n := len(copies(h, d.RequestID)); n != 1 {
		t.Errorf("after recovery the target holds %d copies, want 1", n)
	}
}

func (s *suite) testPermanent(t *testing.T) {
	h, c := s.setup(t)
	d := s.delivery(t, RecipientA)
	h.Fail(FailPermanent)
	err := c.Deliver(t.Context(), d)
	if !connectors.IsPermanent(err) {
		t.Fatalf("Deliver to a rejecting target = %v, want ErrPermanent", err)
	}
	var ra *connectors.RetryAfterError
	if errors.As(err, &ra) {
		t.Errorf("permanent failure carries a RetryAfterError: %v", err)
	}
	if n := len(copies(h, d.RequestID)); n != 0 {
		t.Errorf("rejected delivery accepted %d times", n)
	}
	h.Fail(FailNone)
	deliver(t, c, s.delivery(t, RecipientA))
}

func (s *suite) testInvalid(t *testing.T) {
	_, c := s.setup(t)
	tests := []struct {
		name string
		give *connectors.Delivery
	}{
		{name: "nil", give: nil},
		{name: "no request id", give: &connectors.Delivery{Recipient: RecipientA, Kind: "transfer", Body: []byte("x.y.z.w.v")}},
		{name: "no recipient", give: &connectors.Delivery{RequestID: "req-invalid", Kind: "transfer", Body: []byte("x.y.z.w.v")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := c.Deliver(t.Context(), tt.give); !connectors.IsPermanent(err) {
				t.Errorf("Deliver = %v, want ErrPermanent", err)
			}
		})
	}
}

func (s *suite) testRetryAfter(t *testing.T) {
	h, c := s.setup(t)
	h.Fail(FailRetryAfter)
	err := c.Deliver(t.Context(), s.delivery(t, RecipientA))
	var ra *connectors.RetryAfterError
	if !errors.As(err, &ra) {
		t.Fatalf("Deliver = %v, want *RetryAfterError", err)
	}
	if ra.After != s.f.RetryAfter {
		t.Errorf("After = %s, want %s", ra.After, s.f.RetryAfter)
	}
	if connectors.IsPermanent(err) {
		t.Errorf("retry-after classified permanent: %v", err)
	}
}
