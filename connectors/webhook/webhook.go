package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"sync/atomic"
	"time"

	"github.com/clearance-broker/clearance/connectors"
)

// KindName is the name of this connector kind in the broker config.
const KindName = "webhook"

const (
	defaultTimeout = 10 * time.Second
	// drainLimit bounds how much of a response body is read (and discarded)
	// so that the connection can be reused.
	drainLimit = 64 << 10
)

// Kind returns the webhook connector kind for a connectors.Registry.
func Kind() connectors.Kind {
	return connectors.NewKind(KindName, DefaultConfig,
		func(ctx context.Context, name string, cfg *Config, deps connectors.Deps) (connectors.Connector, error) {
			return New(name, cfg, deps)
		})
}

// Webhook posts sealed payloads to partner HTTPS endpoints. It is safe for
// concurrent use; all deliveries share one http.Transport.
type Webhook struct {
	name      string
	urls      map[string]*url.URL
	fallback  *url.URL
	timeout   time.Duration
	transport *http.Transport
	client    *http.Client
	log       *slog.Logger
	gate      connectors.Gate
}

// New returns a webhook connector called name. cfg must be valid; New loads
// the TLS files it names.
func New(name string, cfg *Config, deps connectors.Deps) (*Webhook, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("webhook: %s: config: %w", name, err)
	}
	tlsCfg, err := loadTLS(cfg.TLS)
	if err != nil {
		return nil, fmt.Errorf("webhook: %s: %w", name, err)
	}
	w := &Webhook{
		name:    name,
		urls:    make(map[string]*url.URL, len(cfg.URLs)),
		timeout: cfg.Timeout.D(),
		log:     deps.Log().With("component", "connector", "connector", name, "kind", KindName),
	}
	for r, raw := range cfg.URLs {
		w.urls[r], _ = url.Parse(raw) // checked by Validate
	}
	if cfg.DefaultURL != "" {
		w.fallback, _ = url.Parse(cfg.DefaultURL)
	}
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	w.transport = &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		TLSClientConfig:       tlsCfg,
		TLSHandshakeTimeout:   5 * time.Second,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          0,
		MaxConnsPerHost:       cfg.MaxConnsPerHost,
		MaxIdleConnsPerHost:   cfg.MaxIdleConnsPerHost,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	w.client = &http.Client{
		Transport: w.transport,
		// A partner redirecting a sealed payload elsewhere is refused: the
		// endpoint is part of the agreement.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return w, nil
}

func loadTLS(c TLSConfig) (*tls.Config, error) {
	t := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.ca_file %s: no PEM certificates", c.CAFile)
		}
		t.RootCAs = pool
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls.cert_file/key_file: %w", err)
		}
		t.Certificates = []tls.Certificate{cert}
	}
	return t, nil
}

// Endpoint returns the URL deliveries for recipient are posted to.
func (w *Webhook) Endpoint(recipient string) (*url.URL, bool) {
	if u, ok := w.urls[recipient]; ok {
		return u, true
	}
	return w.fallback, w.fallback != nil
}

// Deliver posts d.Body to the recipient's endpoint and classifies the answer
// (see the package documentation). It blocks until the partner answers, the
// configured timeout passes, or ctx ends; in the last case the error wraps
// ctx.Err().
func (w *Webhook) Deliver(ctx context.Context, d *connectors.Delivery) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("webhook: %s: %w", w.name, err)
	}
	if err := w.gate.Enter(); err != nil {
		return fmt.Errorf("webhook: %s: %w", w.name, err)
	}
	defer w.gate.Leave()
	if err := checkDelivery(d); err != nil {
		return fmt.Errorf("webhook: %s: %w", w.name, err)
	}
	u, ok := w.Endpoint(d.Recipient)
	if !ok {
		return fmt.Errorf("webhook: %s: no endpoint for recipient %s: %w", w.name, d.Recipient, connectors.ErrPermanent)
	}

	ctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(d.Body))
	if err != nil {
		return fmt.Errorf("webhook: post to %s: %w: %w", d.Recipient, err, connectors.ErrPermanent)
	}
	ct := d.ContentType
	if ct == "" {
		ct = "application/jose"
	}
	for k, v := range d.Headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Idempotency-Key", d.RequestID)
	req.Header.Set("X-Clearance-Kind", d.Kind)
	req.Header.Set("User-Agent", "clearance-webhook")

	// Whether the request went out whole: a failure after that (a timeout,
	// a connection reset while the partner answers) may have reached it.
	var wrote atomic.Bool
	req = req.WithContext(httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: noteWritten(&wrote),
	}))
	start := time.Now()
	resp, err := w.client.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // the URL is said once, by recipient, below
		}
		if wrote.Load() {
			return fmt.Errorf("webhook: post to %s: %w: %w", d.Recipient, err, connectors.ErrOutcomeUnknown)
		}
		return fmt.Errorf("webhook: post to %s: %w", d.Recipient, err)
	}
	_, _ = io.CopyN(io.Discard, resp.Body, drainLimit)
	_ = resp.Body.Close()

	err = classify(resp, time.Now())
	w.log.LogAttrs(ctx, slog.LevelDebug, "delivery answered",
		slog.String("request_id", d.RequestID), slog.String("recipient", d.Recipient),
		slog.Int("status", resp.StatusCode), slog.Duration("took", time.Since(start)))
	if err != nil {
		return fmt.Errorf("webhook: post to %s: %w", d.Recipient, err)
	}
	return nil
}

// noteWritten returns the httptrace hook that sets *wrote once a request
// went out whole. Once written, always: a retry the transport makes on
// another connection (the request is idempotent by its key) whose write
// fails does not unsay that an earlier one went out.
func noteWritten(wrote *atomic.Bool) func(httptrace.WroteRequestInfo) {
	return func(i httptrace.WroteRequestInfo) {
		if i.Err == nil {
			wrote.Store(true)
		}
	}
}

func checkDelivery(d *connectors.Delivery) error {
	switch {
	case d == nil:
		return fmt.Errorf("nil delivery: %w", connectors.ErrPermanent)
	case d.RequestID == "":
		return fmt.Errorf("delivery without request id: %w", connectors.ErrPermanent)
	case d.Recipient == "":
		return fmt.Errorf("delivery without recipient: %w", connectors.ErrPermanent)
	}
	return nil
}

// Close stops new deliveries, waits for those in flight (or ctx) and closes
// idle connections. It is idempotent.
func (w *Webhook) Close(ctx context.Context) error {
	first, err := w.gate.Close(ctx)
	if first {
		w.transport.CloseIdleConnections()
	}
	if err != nil {
		return fmt.Errorf("webhook: %s: close: %w", w.name, err)
	}
	return nil
}

var _ connectors.Connector = (*Webhook)(nil)
