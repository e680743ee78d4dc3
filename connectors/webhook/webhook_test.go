package webhook_test

import (
	"context"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"os"
	"path"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/connectors"
	"github.com/clearance-broker/clearance/connectors/connectortest"
	"github.com/clearance-broker/clearance/connectors/webhook"
)

const retryAfterSeconds = 7

func TestConformance(t *testing.T) {
	connectortest.Run(t, connectortest.Features{
		Ordered:    true,
		RetryAfter: retryAfterSeconds * time.Second,
	}, newHarness)
}

// harness is a partner endpoint: an httptest TLS server whose answers the
// suite controls.
type harness struct {
	t       *testing.T
	srv     *httptest.Server
	caFile  string
	release chan struct{}

	mu       sync.Mutex
	mode     connectortest.Failure
	received []connectortest.Received
	wire     []byte
}

func newHarness(t *testing.T) connectortest.Harness {
	h := &harness{t: t, release: make(chan struct{})}
	h.srv = httptest.NewUnstartedServer(http.HandlerFunc(h.serve))
	h.srv.EnableHTTP2 = true
	h.srv.StartTLS()
	t.Cleanup(h.srv.Close)
	t.Cleanup(func() { close(h.release) }) // runs first: frees stalled handlers
	h.caFile = writeCertPEM(t, h.srv.Certificate().Raw)
	return h
}

func (h *harness) serve(w http.ResponseWriter, r *http.Request) {
	dump, err := httputil.DumpRequest(r, true)
	if err != nil {
		http.Error(w, "unreadable request", http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	h.wire = append(h.wire, dump...)
	mode := h.mode
	h.mu.Unlock()

	switch mode {
	case connectortest.FailTransient:
		http.Error(w, "maintenance", http.StatusServiceUnavailable)
		return
	case connectortest.FailPermanent:
		http.Error(w, "payload rejected", http.StatusBadRequest)
		return
	case connectortest.FailRetryAfter:
		w.Header().Set("Retry-After", fmt.Sprint(retryAfterSeconds))
		http.Error(w, "slow down", http.StatusTooManyRequests)
		return
	case connectortest.FailStall:
		select {
		case <-r.Context().Done():
		case <-h.release:
		}
		return
	}
	headers := make(map[string]string, len(r.Header))
	for k := range r.Header {
		headers[k] = r.Header.Get(k)
	}
	payload := dumpBody(dump)
	h.mu.Lock()
	h.received = append(h.received, connectortest.Received{
		IdempotencyKey: r.Header.Get("Idempotency-Key"),
		Recipient:      path.Base(r.URL.Path),
		Kind:           r.Header.Get("X-Clearance-Kind"),
		ContentType:    r.Header.Get("Content-Type"),
		Headers:        headers,
		Body:           payload,
	})
	h.mu.Unlock()
	w.WriteHeader(http.StatusAccepted)
}

// dumpBody returns the body part of an httputil request dump.
func dumpBody(dump []byte) []byte {
	for i := 0; i+3 < len(dump); i++ {
		if string(dump[i:i+4]) == "\r\n\r\n" {
			return append([]byte(nil), dump[i+4:]...)
		}
	}
	return nil
}

func (h *harness) Connector() connectors.Connector {
	h.t.Helper()
	reg, err := connectors.NewRegistry(webhook.Kind())
	if err != nil {
		h.t.Fatal(err)
	}
	raw := fmt.Sprintf(`
urls:
  partner-a: %[1]s/in/partner-a
  partner-b: %[1]s/in/partner-b
timeout: 30s
tls:
  ca_file: %[2]s
`, h.srv.URL, h.caFile)
	c, err := reg.New(h.t.Context(), "test-webhook", "webhook", connectors.YAML([]byte(raw)), connectors.Deps{})
	if err != nil {
		h.t.Fatalf("build webhook connector: %v", err)
	}
	return c
}

func (h *harness) Received() []connectortest.Received {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]connectortest.Received(nil), h.received...)
}

func (h *harness) Wire() []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]byte(nil), h.wire...)
}

func (h *harness) Fail(f connectortest.Failure) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.mode = f
}

func writeCertPEM(t testing.TB, der []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func closeConnector(t testing.TB, c connectors.Connector) {
	t.Helper()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := c.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
}
