package broker_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/broker"
	"github.com/clearance-broker/clearance/broker/brokertest"
	"github.com/clearance-broker/clearance/connectors"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// acceptAll is a connector whose target accepts at once, so that the
// benchmark measures the broker rather than a partner.
type acceptAll struct{ n atomic.Int64 }

func (a *acceptAll) Deliver(context.Context, *connectors.Delivery) error { a.n.Add(1); return nil }
func (a *acceptAll) Close(context.Context) error                         { return nil }

var _ connectors.Connector = (*acceptAll)(nil)

// BenchmarkPipeline reports the cost of one transfer through the whole
// pipeline (parse, decide, minimise, seal for the party, two durable audit
// appends on SQLite, deliver, receipt, ack) as a ratio to a baseline
// measured in the same run: the same messages through bare JetStream
// (publish, pull, ack) with the same concurrency.
func BenchmarkPipeline(b *testing.B) {
	srv := brokertest.StartNATS(b)
	nc := brokertest.Connect(b, srv)
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	body := brokertest.ExampleRequest(b, "01-delivery-eea-allow.json")

	// Baseline: bare JetStream with the same shape of consumer.
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "BASELINE", Subjects: []string{"baseline.>"}, Retention: jetstream.WorkQueuePolicy}); err != nil {
		b.Fatal(err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, "BASELINE", jetstream.ConsumerConfig{Durable: "b", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		b.Fatal(err)
	}
	baseline := func(n int) time.Duration {
		start := time.Now()
		var acked atomic.Int64
		done := make(chan struct{})
		cc, err := cons.Consume(func(m jetstream.Msg) {
			_ = m.DoubleAck(ctx)
			if acked.Add(1) == int64(n) {
				close(done)
			}
		}, jetstream.PullMaxMessages(64))
		if err != nil {
			b.Fatal(err)
		}
		defer cc.Stop()
		for i := range n {
			if _, err := js.PublishAsync("baseline.x", body, jetstream.WithMsgID(fmt.Sprint("b-", i, "-", start.UnixNano()))); err != nil {
				b.Fatal(err)
			}
		}
		<-done
		return time.Since(start)
	}

	ring := brokertest.DevKeys(b, filepath.Join(b.TempDir(), "keyring.json"))
	log, _ := brokertest.OpenAudit(b, brokertest.SQLiteDSN(b), ring)
	partner, err := newBenchKey()
	if err != nil {
		b.Fatal(err)
	}
	engine := agreements.NewEngine(brokertest.ExampleRegistry(b, partner))
	sink := &acceptAll{}
	br, err := broker.New(broker.Options{
		NATS: nc, Decider: engine, Parties: broker.PartiesOf(engine), Keys: ring, Audit: log,
		Connectors: broker.ConnectorMap{"partner-webhook": sink}, Concurrency: 16,
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := br.Start(ctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = br.Stop(context.Background()) })
	receipts := make(chan *nats.Msg, 1<<16)
	sub, _ := nc.ChanSubscribe("clearance.receipts.order-service", receipts)
	_ = sub.SetPendingLimits(-1, -1)
	b.Cleanup(func() { _ = sub.Unsubscribe() })
	round := 0
	pipeline := func(n int) time.Duration {
		round++
		start := time.Now()
		for i := range n {
			id := fmt.Sprintf("bench-%d-%d", round, i)
			msg := nats.NewMsg("clearance.transfers.order-service")
			msg.Data = []byte(replaceID(body, id))
			msg.Header.Set(jetstream.MsgIDHeader, id)
			if _, err := js.PublishMsgAsync(msg); err != nil {
				b.Fatal(err)
			}
		}
		for range n {
			<-receipts
		}
		return time.Since(start)
	}

	b.ResetTimer()
	var base, pipe time.Duration
	for _, chunk := range chunks(b.N, 200) {
		base += baseline(chunk)
		pipe += pipeline(chunk)
	}
	b.StopTimer()
	b.ReportMetric(float64(pipe.Nanoseconds())/float64(b.N), "ns/transfer")
	b.ReportMetric(float64(base.Nanoseconds())/float64(b.N), "ns/baseline-msg")
	b.ReportMetric(float64(pipe)/float64(base), "x-baseline")
	if got := sink.n.Load(); got < int64(b.N) {
		b.Fatalf("delivered %d of %d", got, b.N)
	}
}

// chunks splits n into interleaved rounds of at most size.
func chunks(n, size int) []int {
	var out []int
	for n > 0 {
		c := min(n, size)
		out = append(out, c)
		n -= c
	}
	return out
}
