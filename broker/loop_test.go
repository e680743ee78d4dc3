package broker

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// goroutineID is the id runtime.Stack prints for the calling goroutine.
func goroutineID() uint64 {
	var buf [64]byte
	b := bytes.TrimPrefix(buf[:runtime.Stack(buf[:], false)], []byte("goroutine "))
	id, _ := strconv.ParseUint(string(b[:bytes.IndexByte(b, ' ')]), 10, 64)
	return id
}

// TestLoopReusesWorkers: a loop works on at most Concurrency messages at a
// time, on at most Concurrency goroutines over its life (workers are kept,
// not started per message), and every message is handled once.
func TestLoopReusesWorkers(t *testing.T) {
	const concurrency, n = 3, 60
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	ctx := t.Context()
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "LOOP", Subjects: []string{"loop.>"}})
	if err != nil {
		t.Fatal(err)
	}
	cons, err := st.CreateConsumer(ctx, jetstream.ConsumerConfig{Durable: "w", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := js.Publish(ctx, "loop.m", []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	b := &Broker{
		opts:    Options{Concurrency: concurrency, Stream: StreamOptions{FetchBatch: 2, AckWait: 30 * time.Second}},
		log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		metrics: NewMetrics(prometheus.NewRegistry()),
	}
	var (
		mu      sync.Mutex
		workers = map[uint64]bool{}
		seen    = map[string]int{}
		now     atomic.Int32
		most    atomic.Int32
		all     = make(chan struct{})
	)
	l, err := b.startLoop("test", cons, func(_ context.Context, msg jetstream.Msg) {
		in := now.Add(1)
		defer now.Add(-1)
		for m := most.Load(); in > m && !most.CompareAndSwap(m, in); m = most.Load() {
		}
		time.Sleep(time.Millisecond)
		mu.Lock()
		workers[goroutineID()] = true
		seen[string(msg.Data())]++
		if len(seen) == n {
			close(all)
		}
		mu.Unlock()
		_ = msg.Ack()
	})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-all:
	case <-time.After(20 * time.Second):
		t.Fatal("not every message was handled")
	}
	stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l.stop(stopCtx)
	mu.Lock()
	defer mu.Unlock()
	for k, c := range seen {
		if c != 1 {
			t.Errorf("message %s handled %d times", k, c)
		}
	}
	if m := most.Load(); m > concurrency || m < 2 {
		t.Errorf("%d messages in work at once, want 2..%d", m, concurrency)
	}
	if len(workers) > concurrency {
		t.Errorf("%d goroutines handled %d messages, want at most %d", len(workers), n, concurrency)
	}
}
