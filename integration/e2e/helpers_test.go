package e2e

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/broker"
	"github.com/clearance-broker/clearance/broker/brokertest"
	"github.com/clearance-broker/clearance/integration/vaulttest"
	"github.com/clearance-broker/clearance/keys"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/uptrace/bun"
)

// instance is one running broker and what it was built from.
type instance struct {
	broker  *broker.Broker
	api     *httptest.Server
	nc      *nats.Conn
	audit   *audit.Log
	db      *bun.DB
	metrics *prometheus.Registry
	logs    *brokertest.LogCapture
}

// setup is what an instance is built on.
type setup struct {
	natsURL    string
	dsn        string
	keys       broker.Keys
	signer     audit.Signer
	registry   *agreements.Registry
	connectors broker.ConnectorSet
	inbound    *broker.InboundOptions
	maxDeliver int
}

func start(t *testing.T, s setup) *instance {
	t.Helper()
	nc, err := nats.Connect(s.natsURL, nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	in := &instance{nc: nc, logs: &brokertest.LogCapture{}, metrics: prometheus.NewRegistry()}
	in.audit, in.db = brokertest.OpenAudit(t, s.dsn, s.signer)
	engine := agreements.NewEngine(s.registry)
	if s.maxDeliver == 0 {
		s.maxDeliver = 20
	}
	b, err := broker.New(broker.Options{
		NATS:           nc,
		Stream:         broker.StreamOptions{AckWait: 10 * time.Second, FetchBatch: 64},
		Retry:          broker.RetryPolicy{MaxDeliver: s.maxDeliver, BackoffBase: 50 * time.Millisecond, BackoffMax: 500 * time.Millisecond},
		Concurrency:    16,
		Decider:        engine,
		Parties:        broker.PartiesOf(engine),
		Keys:           s.keys,
		Audit:          in.audit,
		Connectors:     s.connectors,
		Inbound:        s.inbound,
		Logger:         in.logs.Logger(),
		Registerer:     in.metrics,
		Gatherer:       in.metrics,
		RequestTimeout: 20 * time.Second,
		ReadyChecks:    map[string]func(context.Context) error{"store": in.db.PingContext},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	in.broker = b
	in.api = httptest.NewServer(b.Handler())
	t.Cleanup(in.api.Close)
	t.Cleanup(func() { _ = b.Stop(context.Background()) })
	return in
}

// post sends body to POST /v1/transfers and decodes the answer into out.
func (in *instance) post(t *testing.T, body []byte, out any) int {
	t.Helper()
	resp, err := http.Post(in.api.URL+"/v1/transfers", "application/json", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("answer %d %s: %v", resp.StatusCode, b, err)
	}
	return resp.StatusCode
}

// events returns the audit events recorded for one request, in order.
func (in *instance) events(t *testing.T, requestID string) []string {
	t.Helper()
	es, err := in.audit.Query(t.Context(), audit.Filter{RequestID: requestID})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, string(e.Event))
	}
	return out
}

// vaultKeys starts a Vault dev server with the transit keys Clearance uses
// and connects to it.
func vaultKeys(t *testing.T) *keys.Vault {
	t.Helper()
	s := vaulttest.Start(t)
	s.Write("transit/keys/clearance-data", map[string]any{"type": "aes256-gcm96"})
	s.Write("transit/keys/clearance-signing", map[string]any{"type": "ecdsa-p256"})
	path := filepath.Join(t.TempDir(), "vault-token")
	if err := os.WriteFile(path, []byte(s.Token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := keys.NewVault(t.Context(), keys.VaultConfig{
		Address: s.Addr, Auth: keys.VaultAuth{TokenFile: path}, Timeout: 5 * time.Second,
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("vault: %v", err)
	}
	t.Cleanup(func() { _ = v.Close(context.Background()) })
	return v
}

// request builds a transfer request of order.delivery to swiftship-de with
// the given id and record.
func request(id string, record map[string]any) []byte {
	b, _ := json.Marshal(map[string]any{
		"id": id, "source": "order-service", "recipient": "swiftship-de",
		"purpose": "delivery", "dataset": "order.delivery",
		"subject": map[string]any{"id": "cust-" + id, "jurisdiction": "DE", "minor": false},
		"record":  record,
	})
	return b
}

// auditRows returns every stored audit row as text, as a database reader
// would see it.
func auditRows(t *testing.T, db *bun.DB) string {
	t.Helper()
	var rows []map[string]any
	if err := db.NewSelect().Table("audit_entries").Scan(t.Context(), &rows); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(rows)
	return string(b)
}
