package harness

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// forwarder is the baseline: k bare forwarders that consume the same
// stream through a durable consumer configured like the broker's, pull
// ahead as the broker does, work on Concurrency messages at once, publish
// each message as it is to the same destination (the region stream with a
// synchronous, de-duplicated publish, or a POST to the HTTPS partner) and
// Ack it. No decision, sealing or audit.
type forwarder struct {
	e     *env
	k     int
	sink  string
	parts []*forwarderInstance
}

type forwarderInstance struct {
	nc, rnc *nats.Conn
	rjs     jetstream.JetStream
	client  *http.Client
	iter    jetstream.MessagesContext
	sem     chan struct{}
	wg      sync.WaitGroup
	done    chan struct{}
}

func (f *forwarder) start(ctx context.Context) error {
	c := f.e.cfg
	_, err := f.e.js.CreateOrUpdateConsumer(ctx, ingestStream, jetstream.ConsumerConfig{
		Durable: "baseline", AckPolicy: jetstream.AckExplicitPolicy, AckWait: c.AckWait,
		MaxDeliver: -1, MaxAckPending: 20000, FilterSubject: "clearance.transfers.>",
	})
	if err != nil {
		return fmt.Errorf("harness: baseline consumer: %w", err)
	}
	for range f.k {
		p := &forwarderInstance{sem: make(chan struct{}, c.Concurrency), done: make(chan struct{})}
		f.parts = append(f.parts, p)
		if p.nc, err = nats.Connect(f.e.ingest, nats.Name("baseline")); err != nil {
			f.stop(ctx)
			return fmt.Errorf("harness: baseline: %w", err)
		}
		if f.sink == SinkJetStream {
			if p.rnc, p.rjs, err = connect(f.e.region, "baseline-region"); err != nil {
				f.stop(ctx)
				return err
			}
		} else {
			p.client = f.e.partnerClient()
		}
		js, _ := jetstream.New(p.nc)
		pc, err := js.Consumer(ctx, ingestStream, "baseline")
		if err != nil {
			f.stop(ctx)
			return fmt.Errorf("harness: baseline consumer: %w", err)
		}
		// The broker's pull-ahead (broker.startLoop): at least one message
		// per worker, at most four, and nats.fetch_batch (64) in between.
		ahead := min(max(64, c.Concurrency), 4*c.Concurrency)
		if p.iter, err = pc.Messages(jetstream.PullMaxMessages(ahead)); err != nil {
			f.stop(ctx)
			return fmt.Errorf("harness: baseline pull: %w", err)
		}
		go p.run(f.forward(p))
	}
	return nil
}

// forward returns the forwarding step of p for the sink.
func (f *forwarder) forward(p *forwarderInstance) func(jetstream.Msg) error {
	if f.sink == SinkJetStream {
		opts := []jetstream.PublishOpt{jetstream.WithRetryAttempts(2), jetstream.WithRetryWait(250 * time.Millisecond), jetstream.WithExpectStream(regionStream)}
		return func(m jetstream.Msg) error {
			out := nats.NewMsg(baselineTarget)
			out.Data = m.Data()
			out.Header.Set(jetstream.MsgIDHeader, m.Headers().Get(jetstream.MsgIDHeader))
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err := p.rjs.PublishMsg(ctx, out, opts...)
			return err
		}
	}
	url := f.e.partner.URL
	return func(m jetstream.Msg) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(m.Data()))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", m.Headers().Get(jetstream.MsgIDHeader))
		resp, err := p.client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("partner answered %d", resp.StatusCode)
		}
		return nil
	}
}

// run pulls one message per free worker slot, as the broker's loop does.
func (p *forwarderInstance) run(forward func(jetstream.Msg) error) {
	defer close(p.done)
	for {
		p.sem <- struct{}{}
		msg, err := p.iter.Next()
		if err != nil {
			<-p.sem
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return
			}
			time.Sleep(100 * time.Millisecond)
			continue
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer func() { <-p.sem }()
			if err := forward(msg); err != nil {
				_ = msg.NakWithDelay(time.Second)
				return
			}
			_ = msg.Ack()
		}()
	}
}

func (f *forwarder) stop(context.Context) {
	for _, p := range f.parts {
		if p.iter != nil {
			p.iter.Drain()
			<-p.done
			p.wg.Wait()
		}
		for _, c := range []*nats.Conn{p.nc, p.rnc} {
			if c != nil {
				c.Close()
			}
		}
		if p.client != nil {
			p.client.CloseIdleConnections()
		}
	}
	f.parts = nil
}

func (f *forwarder) vaultTrips() (uint64, uint64) { return 0, 0 }

// partnerClient is an HTTP client configured like the webhook connector's
// (HTTP/2 attempted, at most 64 connections per host and as many kept idle,
// TLS to the partner CA).
func (e *env) partnerClient() *http.Client {
	pool := x509.NewCertPool()
	pool.AddCert(e.partner.Certificate())
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Client{Transport: &http.Transport{
		DialContext:         dialer.DialContext,
		TLSClientConfig:     &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool},
		TLSHandshakeTimeout: 5 * time.Second, ForceAttemptHTTP2: true,
		MaxConnsPerHost: 64, MaxIdleConnsPerHost: 64, IdleConnTimeout: 90 * time.Second,
	}}
}

var _ system = (*forwarder)(nil)
