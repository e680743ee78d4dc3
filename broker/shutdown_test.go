package broker_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/broker"
	"github.com/clearance-broker/clearance/broker/brokertest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// publish puts an example request into the stream directly.
func publish(t *testing.T, e *env, name, id string) {
	t.Helper()
	publishData(t, e, brokertest.ExampleRequest(t, name), id)
}

// publishData publishes request data under id from order-service.
func publishData(t *testing.T, e *env, data []byte, id string) {
	t.Helper()
	msg := nats.NewMsg("clearance.transfers.order-service")
	msg.Data = data
	msg.Header.Set(jetstream.MsgIDHeader, id)
	if _, err := e.js.PublishMsg(t.Context(), msg); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func pending(t *testing.T, e *env) uint64 {
	t.Helper()
	s, err := e.js.Stream(t.Context(), "CLEARANCE_TRANSFERS")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func TestStopFinishesInFlightDelivery(t *testing.T) {
	e := newEnv(t, 5)
	e.partner.SetDelay(500 * time.Millisecond)
	publish(t, e, "01-delivery-eea-allow.json", "ord-10023-delivery")
	waitFor(t, "the delivery to start", func() bool { return len(e.partner.Wire()) == 1 })
	if err := e.broker.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ev := events(e.entries(t, "ord-10023-delivery")); ev != "decided,delivered" {
		t.Errorf("audit after stop = %s, want decided,delivered", ev)
	}
	if n := pending(t, e); n != 0 {
		t.Errorf("%d messages left in the stream after a finished delivery", n)
	}
}

func TestStopHandsBackWhatCannotFinish(t *testing.T) {
	srv := brokertest.StartNATS(t)
	first := newEnvWith(t, srv, 5, func(o *broker.Options) { o.ShutdownGrace = 200 * time.Millisecond })
	first.partner.SetDelay(5 * time.Second)
	publish(t, first, "01-delivery-eea-allow.json", "ord-10023-delivery")
	waitFor(t, "the delivery to start", func() bool { return len(first.partner.Wire()) == 1 })
	start := time.Now()
	if err := first.broker.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Stop took %s with a grace of 200ms", d)
	}
	if ev := events(first.entries(t, "ord-10023-delivery")); ev != "decided,delivery_failed" {
		t.Errorf("first instance audit = %s, want decided,delivery_failed", ev)
	}
	// Another instance takes the handed-back message over.
	second := newEnvWith(t, srv, 5, nil)
	waitFor(t, "the second instance to deliver", func() bool { return len(second.partner.Received()) == 1 })
	waitFor(t, "the delivery to be audited", func() bool {
		return strings.HasSuffix(events(second.entries(t, "ord-10023-delivery")), "delivered")
	})
	if n := len(first.partner.Received()); n != 0 {
		t.Errorf("the stopped instance's partner accepted %d deliveries", n)
	}
}

func TestReadyzReportsFailingChecks(t *testing.T) {
	e := newEnvWith(t, brokertest.StartNATS(t), 5, func(o *broker.Options) {
		o.ReadyChecks = map[string]func(context.Context) error{"store": func(context.Context) error { return context.DeadlineExceeded }}
	})
	resp, err := http.Get(e.api.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/readyz = %d with a failing store, want 503", resp.StatusCode)
	}
}
