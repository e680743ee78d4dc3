package natsregion_test

import (
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/clearance-broker/clearance/connectors"
	"github.com/clearance-broker/clearance/connectors/connectortest"
	"github.com/clearance-broker/clearance/connectors/natsregion"
)

// BenchmarkDeliver measures Deliver against a bare js.PublishMsg of the same
// sealed body with the same headers to the same embedded JetStream, in the
// same run: the ratio is the connector's overhead.
func BenchmarkDeliver(b *testing.B) {
	s := startServer(b, b.TempDir(), -1)
	body := connectortest.NewSealer(b).Seal(b, connectortest.NewCanaries().Record("o-1"))

	cfg := natsregion.DefaultConfig()
	cfg.URLs = []string{s.ClientURL()}
	cfg.Stream, cfg.EnsureStream = "REGION", true
	r, err := natsregion.New(b.Context(), "bench", cfg, connectors.Deps{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = r.Close(b.Context()) })

	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	publish := func(id string) {
		m := nats.NewMsg("clearance.region.dc-sg")
		m.Data = body
		m.Header.Set(jetstream.MsgIDHeader, id)
		m.Header.Set(natsregion.HeaderKind, "transfer")
		m.Header.Set(natsregion.HeaderContentType, "application/jose")
		if _, err := js.PublishMsg(b.Context(), m); err != nil {
			b.Fatal(err)
		}
	}
	deliver := func(id string) {
		d := &connectors.Delivery{RequestID: id, Recipient: "dc-sg", Kind: "transfer",
			ContentType: "application/jose", Body: body}
		if err := r.Deliver(b.Context(), d); err != nil {
			b.Fatal(err)
		}
	}

	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	var seq atomic.Int64
	next := func() string { return run + "-" + strconv.FormatInt(seq.Add(1), 10) }
	for _, bm := range []struct {
		name string
		do   func(string)
	}{
		{name: "baseline_js_publish", do: publish},
		{name: "natsregion_deliver", do: deliver},
	} {
		b.Run(bm.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				bm.do(next())
			}
		})
		b.Run(bm.name+"_parallel", func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					bm.do(next())
				}
			})
		})
	}
}
