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
	"os"
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
	procs children
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
	for i := range f.k {
		if !c.InProcess {
			if err := f.procs.spawn(ctx, f.e.spec(kindForwarder, f.sink, fmt.Sprintf("baseline %d/%d", i+1, f.k))); err != nil {
				f.stop(ctx)
				return err
			}
			continue
		}
		p, err := startForwarderInstance(ctx, f.e.spec(kindForwarder, f.sink, ""))
		if err != nil {
			f.stop(ctx)
			return err
		}
		f.parts = append(f.parts, p)
	}
	return nil
}

// startForwarderInstance starts one forwarder on the "baseline" consumer,
// in the harness's process or in a child's.
func startForwarderInstance(ctx context.Context, spec instanceSpec) (p *forwarderInstance, err error) {
	p = &forwarderInstance{sem: make(chan struct{}, spec.Concurrency), done: make(chan struct{})}
	defer func() {
		if err != nil {
			p.stop()
		}
	}()
	if p.nc, err = nats.Connect(spec.Ingest, nats.Name("baseline")); err != nil {
		return p, fmt.Errorf("harness: baseline: %w", err)
	}
	var forward func(jetstream.Msg) error
	if spec.Sink == SinkJetStream {
		if p.rnc, p.rjs, err = connect(spec.Region, "baseline-region"); err != nil {
			return p, err
		}
		forward = p.forwardJetStream()
	} else {
		if p.client, err = partnerClient(spec.PartnerCA); err != nil {
			return p, err
		}
		forward = p.forwardHTTP(spec.PartnerURL)
	}
	js, _ := jetstream.New(p.nc)
	pc, err := js.Consumer(ctx, ingestStream, "baseline")
	if err != nil {
		return p, fmt.Errorf("harness: baseline consumer: %w", err)
	}
	// The broker's pull-ahead (broker.startLoop): at least one message
	// per worker, at most four, and nats.fetch_batch (64) in between.
	ahead := min(max(64, spec.Concurrency), 4*spec.Concurrency)
	if p.iter, err = pc.Messages(jetstream.PullMaxMessages(ahead)); err != nil {
		return p, fmt.Errorf("harness: baseline pull: %w", err)
	}
	go p.run(forward)
	return p, nil
}

// forwardJetStream publishes a message as it is to the region stream.
func (p *forwarderInstance) forwardJetStream() func(jetstream.Msg) error {
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

// forwardHTTP posts a message as it is to the partner at url.
func (p *forwarderInstance) forwardHTTP(url string) func(jetstream.Msg) error {
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

// stop drains the pull, waits for the messages in work and disconnects.
func (p *forwarderInstance) stop() {
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

func (f *forwarder) stop(context.Context) {
	f.procs.stop()
	for _, p := range f.parts {
		p.stop()
	}
	f.parts = nil
}

func (f *forwarder) vaultTrips(context.Context) (uint64, uint64, error) { return 0, 0, nil }

func (f *forwarder) children() *children { return &f.procs }

// partnerClient is an HTTP client configured like the webhook connector's
// (HTTP/2 attempted, at most 64 connections per host and as many kept idle,
// TLS to the partner CA in the PEM file caFile).
func partnerClient(caFile string) (*http.Client, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("harness: partner ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("harness: partner ca: no certificate in %s", caFile)
	}
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Client{Transport: &http.Transport{
		DialContext:         dialer.DialContext,
		TLSClientConfig:     &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool},
		TLSHandshakeTimeout: 5 * time.Second, ForceAttemptHTTP2: true,
		MaxConnsPerHost: 64, MaxIdleConnsPerHost: 64, IdleConnTimeout: 90 * time.Second,
	}}, nil
}

var _ system = (*forwarder)(nil)
