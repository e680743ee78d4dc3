package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/broker"
	"github.com/clearance-broker/clearance/broker/brokertest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestShutdownStopsPullingAtOnce stops runBroker while a client holds a
// request open, sending its body slowly, and another waits for the receipt
// of a delivery that outlasts the shutdown grace. The broker must stop
// pulling at once (a transfer published after the stop began stays in the
// stream, untouched), the waiting request must be answered 202 pending, and
// the whole stop must end within the grace and the API's wind-down, not
// after the API has drained whatever the slow client does.
func TestShutdownStopsPullingAtOnce(t *testing.T) {
	const grace = time.Second
	// The grace, the API's 3 s wind-down (apiWindDown) and room for a slow
	// machine: well short of a stop that waits for the slow client for 10 s
	// before the broker even starts to stop.
	const limit = grace + 3*time.Second + 2*time.Second

	srv := brokertest.StartNATS(t)
	nc := brokertest.Connect(t, srv)
	ring := brokertest.DevKeys(t, filepath.Join(t.TempDir(), "keyring.json"))
	auditLog, _ := brokertest.OpenAudit(t, brokertest.SQLiteDSN(t), ring)
	partner := brokertest.NewPartner(t, ring.JWKS)
	partner.SetDelay(3 * time.Second) // longer than the grace
	engine := agreements.NewEngine(brokertest.ExampleRegistry(t, partner.Key.PublicJWK))
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b, err := broker.New(broker.Options{
		NATS: nc, Stream: broker.StreamOptions{AckWait: 5 * time.Second},
		Concurrency: 8, ShutdownGrace: grace, RequestTimeout: 30 * time.Second,
		Decider: engine, Parties: broker.PartiesOf(engine), Keys: ring, Audit: auditLog,
		Connectors: broker.ConnectorMap{
			"partner-webhook":   brokertest.Webhook(t, partner.URL),
			"authority-webhook": brokertest.Webhook(t, partner.URL),
		},
		Logger: logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	api := "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stopped := make(chan error, 1)
	go func() { stopped <- runBroker(ctx, b, "", ln, logger) }()
	waitOutput(t, &logs, `msg="api listening"`)

	// A client that sends the head of a request and part of its body.
	slow, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	if _, err := fmt.Fprintf(slow, "POST /v1/transfers HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"+
		"Content-Length: 4096\r\n\r\n{\"id\": \"ord-slow-client\",", ln.Addr()); err != nil {
		t.Fatal(err)
	}

	// A request waiting for the receipt of a delivery the partner is slow
	// to take.
	type answer struct {
		status int
		body   string
		err    error
	}
	answered := make(chan answer, 1)
	go func() {
		resp, err := http.Post(api+"/v1/transfers", "application/json",
			bytes.NewReader(brokertest.ExampleRequest(t, "01-delivery-eea-allow.json")))
		if err != nil {
			answered <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		answered <- answer{status: resp.StatusCode, body: string(body), err: err}
	}()
	for deadline := time.Now().Add(10 * time.Second); len(partner.Wire()) == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the delivery never started")
		}
	}

	start := time.Now()
	cancel()
	waitOutput(t, &logs, `msg="shutting down"`)
	// The broker stops pulling right after it logs so; a moment later a
	// producer publishes one more transfer.
	time.Sleep(100 * time.Millisecond)
	js, err := jetstream.New(brokertest.Connect(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	const lateID = "ord-late-delivery"
	msg := nats.NewMsg("clearance.transfers.order-service")
	msg.Data = bytes.Replace(brokertest.ExampleRequest(t, "01-delivery-eea-allow.json"),
		[]byte(`"ord-10023-delivery"`), []byte(`"`+lateID+`"`), 1)
	msg.Header.Set(jetstream.MsgIDHeader, lateID)
	if _, err := js.PublishMsg(t.Context(), msg); err != nil {
		t.Fatal(err)
	}

	select {
	case err := <-stopped:
		if err != nil {
			t.Errorf("runBroker: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("runBroker did not return")
	}
	if d := time.Since(start); d > limit {
		t.Errorf("the stop took %s with a grace of %s, want at most %s", d.Round(time.Millisecond), grace, limit)
	}

	select {
	case a := <-answered:
		if a.err != nil {
			t.Errorf("the request waiting for its receipt: %v", a.err)
		} else if a.status != http.StatusAccepted || !strings.Contains(a.body, `"status": "pending"`) {
			t.Errorf("the request waiting for its receipt was answered %d %s, want 202 pending", a.status, a.body)
		}
	case <-time.After(5 * time.Second):
		t.Error("the request waiting for its receipt was not answered")
	}

	// The late transfer was never pulled: no instance took it, nothing of
	// it was audited or sent, and it waits in the stream for the next one.
	if got, err := auditLog.Query(context.Background(), audit.Filter{RequestID: lateID}); err != nil {
		t.Fatal(err)
	} else if len(got) != 0 {
		t.Errorf("the transfer published after the stop began has %d audit entries", len(got))
	}
	if n := len(partner.Wire()); n != 1 {
		t.Errorf("the partner was sent %d deliveries, want only the one under way at the stop", n)
	}
	cons, err := js.Consumer(t.Context(), "CLEARANCE_TRANSFERS", "clearance")
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.NumPending != 1 {
		t.Errorf("the consumer has %d messages never pulled, want 1 (the late transfer)", info.NumPending)
	}

	// The slow client's connection is closed, not left open.
	_ = slow.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.ReadAll(slow); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Error("the connection of the client still sending its body was left open")
		}
	}
}
