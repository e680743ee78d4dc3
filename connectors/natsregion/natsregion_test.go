package natsregion_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/clearance-broker/clearance/connectors"
	"github.com/clearance-broker/clearance/connectors/connectortest"
	"github.com/clearance-broker/clearance/connectors/natsregion"
)

const (
	testStream     = "REGION_INBOUND"
	fullRetryAfter = 3 * time.Second
)

func TestConformance(t *testing.T) {
	connectortest.Run(t, connectortest.Features{
		Ordered:      true,
		Deduplicates: true,
		RetryAfter:   fullRetryAfter,
	}, newHarness)
}

// harness is a remote region: an embedded JetStream server behind a tap that
// records the wire. Failures are simulated on the stream: moved off the
// delivery subjects (no responders), a tiny maximum message size (the
// payload can never fit), full with discard-new (retry later), or a plain
// subscriber that never answers (stall).
type harness struct {
	t      *testing.T
	tap    *tap
	js     jetstream.JetStream
	nc     *nats.Conn
	normal jetstream.StreamConfig

	mu    sync.Mutex
	stall *nats.Subscription
}

func newHarness(t *testing.T) connectortest.Harness {
	s := startServer(t, t.TempDir(), -1)
	h := &harness{t: t, tap: newTap(t, s.Addr().String())}
	var err error
	h.nc, err = nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.nc.Close)
	h.js, err = jetstream.New(h.nc)
	if err != nil {
		t.Fatal(err)
	}
	h.normal = jetstream.StreamConfig{
		Name:       testStream,
		Subjects:   []string{natsregion.SubjectFilter(natsregion.DefaultSubjectPrefix)},
		Storage:    jetstream.FileStorage,
		Duplicates: 2 * time.Minute,
		Discard:    jetstream.DiscardNew,
	}
	if _, err := h.js.CreateStream(t.Context(), h.normal); err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *harness) Connector() connectors.Connector {
	h.t.Helper()
	reg, err := connectors.NewRegistry(natsregion.Kind())
	if err != nil {
		h.t.Fatal(err)
	}
	raw := fmt.Sprintf(`{"urls": [%q], "stream": %q, "ack_timeout": "30s",
		"no_responder_retries": 1, "full_retry_after": %q}`, h.tap.URL(), testStream, fullRetryAfter)
	c, err := reg.New(h.t.Context(), "test-region", natsregion.KindName, connectors.JSON([]byte(raw)), connectors.Deps{})
	if err != nil {
		h.t.Fatalf("build natsregion connector: %v", err)
	}
	return c
}

func (h *harness) Received() []connectortest.Received {
	h.t.Helper()
	ctx := context.Background()
	st, err := h.js.Stream(ctx, testStream)
	if err != nil {
		h.t.Fatalf("stream: %v", err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		h.t.Fatalf("stream info: %v", err)
	}
	var out []connectortest.Received
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			h.t.Fatalf("get message %d: %v", seq, err)
		}
		recipient, _ := natsregion.Recipient(natsregion.DefaultSubjectPrefix, m.Subject)
		headers := make(map[string]string, len(m.Header))
		for k := range m.Header {
			headers[k] = m.Header.Get(k)
		}
		out = append(out, connectortest.Received{
			IdempotencyKey: m.Header.Get(jetstream.MsgIDHeader),
			Recipient:      recipient,
			Kind:           m.Header.Get(natsregion.HeaderKind),
			ContentType:    m.Header.Get(natsregion.HeaderContentType),
			Headers:        headers,
			Body:           m.Data,
		})
	}
	return out
}

func (h *harness) Wire() []byte { return h.tap.Bytes() }

func (h *harness) Fail(f connectortest.Failure) {
	h.t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stall != nil {
		_ = h.stall.Unsubscribe()
		h.stall = nil
	}
	cfg := h.normal
	switch f {
	case connectortest.FailTransient:
		cfg.Subjects = []string{"elsewhere.>"}
	case connectortest.FailPermanent:
		cfg.MaxMsgSize = 16
	case connectortest.FailRetryAfter:
		// Full with discard-new. MaxMsgs 0 means no limit, so an empty
		// stream gets one filler message first.
		n := h.count()
		if n == 0 {
			if _, err := h.js.Publish(context.Background(), "clearance.region.filler", []byte("x")); err != nil {
				h.t.Fatalf("fill stream: %v", err)
			}
			n = 1
		}
		cfg.MaxMsgs = n
	case connectortest.FailStall:
		cfg.Subjects = []string{"elsewhere.>"}
		sub, err := h.nc.SubscribeSync(natsregion.SubjectFilter(natsregion.DefaultSubjectPrefix))
		if err != nil {
			h.t.Fatalf("stall subscriber: %v", err)
		}
		h.stall = sub
	}
	if _, err := h.js.UpdateStream(context.Background(), cfg); err != nil {
		h.t.Fatalf("simulate %s: %v", f, err)
	}
	if err := h.nc.Flush(); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) count() int64 {
	st, err := h.js.Stream(context.Background(), testStream)
	if err != nil {
		h.t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	return int64(info.State.Msgs)
}
