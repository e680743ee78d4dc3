package hostile

import (
	"context"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/broker"
	"github.com/clearance-broker/clearance/broker/brokertest"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
)

// instance is an in-process broker on its own embedded NATS server, with a
// development key ring, a SQLite audit log and a sample partner.
type instance struct {
	api     *httptest.Server
	nc      *nats.Conn
	audit   *audit.Log
	logs    *brokertest.LogCapture
	partner *brokertest.Partner
}

func start(t *testing.T) *instance {
	t.Helper()
	srv := brokertest.StartNATS(t)
	nc := brokertest.Connect(t, srv)
	k := brokertest.DevKeys(t, filepath.Join(t.TempDir(), "keyring.json"))
	in := &instance{nc: nc, logs: &brokertest.LogCapture{}}
	in.partner = brokertest.NewPartner(t, k.JWKS)
	in.audit, _ = brokertest.OpenAudit(t, brokertest.SQLiteDSN(t), k)
	engine := agreements.NewEngine(brokertest.ExampleRegistry(t, in.partner.Key.PublicJWK))
	reg := prometheus.NewRegistry()
	b, err := broker.New(broker.Options{
		NATS:           nc,
		Retry:          broker.RetryPolicy{MaxDeliver: 5, BackoffBase: 20 * time.Millisecond, BackoffMax: 100 * time.Millisecond},
		Decider:        engine,
		Parties:        broker.PartiesOf(engine),
		Keys:           k,
		Audit:          in.audit,
		Connectors:     broker.ConnectorMap{"partner-webhook": brokertest.Webhook(t, in.partner.URL)},
		Logger:         in.logs.Logger(),
		Registerer:     reg,
		Gatherer:       reg,
		RequestTimeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	in.api = httptest.NewServer(b.Handler())
	t.Cleanup(in.api.Close)
	t.Cleanup(func() { _ = b.Stop(context.Background()) })
	return in
}

// events returns "event/decision" of every audit entry of a request.
func (in *instance) events(t *testing.T, id string) []string {
	t.Helper()
	es, err := in.audit.Query(t.Context(), audit.Filter{RequestID: id})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, string(e.Event)+"/"+e.Decision)
	}
	return out
}
