package livepolicy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/broker"
	"github.com/clearance-broker/clearance/broker/brokertest"
	"github.com/clearance-broker/clearance/integration/vaulttest"
	"github.com/clearance-broker/clearance/keys"
	"github.com/clearance-broker/clearance/policy"
	"github.com/clearance-broker/clearance/shred"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/uptrace/bun"
)

// vaultKeys starts a Vault dev server with Clearance's transit keys and
// connects to it.
func vaultKeys(tb testing.TB) *keys.Vault {
	tb.Helper()
	s := vaulttest.Start(tb)
	s.Write("transit/keys/clearance-data", map[string]any{"type": "aes256-gcm96"})
	s.Write("transit/keys/clearance-signing", map[string]any{"type": "ecdsa-p256"})
	path := filepath.Join(tb.TempDir(), "vault-token")
	if err := os.WriteFile(path, []byte(s.Token+"\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	v, err := keys.NewVault(context.Background(), keys.VaultConfig{
		Address: s.Addr, Auth: keys.VaultAuth{TokenFile: path}, Timeout: 5 * time.Second,
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		tb.Fatalf("vault: %v", err)
	}
	tb.Cleanup(func() { _ = v.Close(context.Background()) })
	return v
}

func keyring(tb testing.TB, db *bun.DB, v *keys.Vault, log *audit.Log, nc *nats.Conn) *shred.Keyring {
	tb.Helper()
	k, err := shred.Open(context.Background(), shred.Options{DB: db, Keys: v, Audit: log, SubjectKey: brokertest.SubjectKey, NATS: nc})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(k.Close)
	return k
}

// TestShreddedDeadLettersCannotBeOpened dead-letters transfers of two
// subjects under their own keys (Vault transit, Postgres), erases one, and
// opens the dead-letter stream: the erased subject's entries no longer open,
// on this instance or a fresh one, while the other subject's still do.
func TestShreddedDeadLettersCannotBeOpened(t *testing.T) {
	srv := brokertest.StartNATS(t)
	nc := brokertest.Connect(t, srv)
	v := vaultKeys(t)
	auditLog, db := brokertest.OpenAudit(t, brokertest.PostgresDSN(t), v)
	subjects := keyring(t, db, v, auditLog, nc)
	refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusBadRequest) // permanent: every transfer is dead-lettered
	}))
	t.Cleanup(refusing.Close)
	pub := newRecipient(t, 0).key.PublicJWK
	reg := brokertest.ExampleRegistry(t, pub)
	engine := agreements.NewEngine(reg)
	store, err := policy.OpenStore(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	var proof shred.Proof
	live, err := policy.Start(t.Context(), policy.Options{Store: store, Engine: engine, NATS: nc, Audit: auditLog,
		OnErasure: func(ctx context.Context, subject string, _ time.Time) error {
			var err error
			proof, err = subjects.Destroy(ctx, subject, "dead letters, retry copies, regional streams")
			return err
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(live.Stop)
	if _, _, err := live.Apply(t.Context(), reg); err != nil {
		t.Fatal(err)
	}
	b, err := broker.New(broker.Options{
		NATS: nc, Decider: engine, Parties: broker.PartiesOf(engine), Keys: v, Audit: auditLog, Subjects: subjects,
		Connectors: broker.ConnectorMap{"partner-webhook": brokertest.Webhook(t, refusing.URL)},
		Retry:      broker.RetryPolicy{MaxDeliver: 2, BackoffBase: 20 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Stop(context.Background()) })

	receipts := make(chan *nats.Msg, 8)
	sub, err := nc.ChanSubscribe("clearance.receipts.order-service", receipts)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	js, _ := jetstream.New(nc)
	owner := map[string]string{"dl-a1": "cust-a", "dl-a2": "cust-a", "dl-b1": "cust-b"}
	original := map[string][]byte{}
	for id, subject := range owner {
		body := []byte(fmt.Sprintf(`{"id":%q,"source":"order-service","recipient":"swiftship-de","purpose":"delivery","dataset":"order.delivery","subject":{"id":%q,"jurisdiction":"DE","minor":false},"record":{"order_id":"1","name":"N"}}`, id, subject))
		original[id] = body
		msg := nats.NewMsg("clearance.transfers.order-service")
		msg.Data, msg.Header = body, nats.Header{}
		msg.Header.Set(jetstream.MsgIDHeader, id)
		if _, err := js.PublishMsg(t.Context(), msg); err != nil {
			t.Fatal(err)
		}
	}
	for range owner {
		select {
		case <-receipts:
		case <-time.After(30 * time.Second):
			t.Fatal("no receipt")
		}
	}
	letters := deadLetters(t, js, len(owner))
	for id, body := range letters {
		if got, err := subjects.Open(t.Context(), body); err != nil || string(broker.KeptData(got)) != string(original[id]) {
			t.Fatalf("%s before the erasure: %v", id, err)
		}
	}

	if _, err := live.Change(t.Context(), agreements.Change{Erasures: []agreements.Erasure{{Subject: "cust-a", At: time.Now()}}}); err != nil {
		t.Fatal(err)
	}
	fresh := keyring(t, db, v, auditLog, nil) // an instance that never saw the key
	for id, body := range letters {
		for name, k := range map[string]*shred.Keyring{"this instance": subjects, "a fresh instance": fresh} {
			t.Run(id+" on "+name, func(t *testing.T) {
				got, err := k.Open(t.Context(), body)
				if owner[id] == "cust-a" {
					if !errors.Is(err, shred.ErrShredded) {
						t.Fatalf("shredded subject's dead letter: %q, %v", got, err)
					}
					return
				}
				if err != nil || string(broker.KeptData(got)) != string(original[id]) {
					t.Fatalf("other subject's dead letter: %v", err)
				}
			})
		}
	}
	es, err := auditLog.Query(t.Context(), audit.Filter{Event: shred.EventKeyDestroyed, SubjectID: "cust-a"})
	if err != nil || len(es) != 1 || es[0].Sequence != proof.AuditSequence || es[0].Reasons[0] != "key_id:"+proof.KeyID {
		t.Fatalf("proof %+v, entries %+v, %v", proof, es, err)
	}
}

// deadLetters reads n dead letters, by request id.
func deadLetters(t *testing.T, js jetstream.JetStream, n int) map[string][]byte {
	t.Helper()
	cons, err := js.OrderedConsumer(t.Context(), broker.DeadLetterStream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	batch, err := cons.Fetch(n, jetstream.FetchMaxWait(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		if m.Headers().Get("Clearance-Key-Ref") != broker.SubjectKeyRef {
			t.Fatalf("dead letter under %q", m.Headers().Get("Clearance-Key-Ref"))
		}
		out[m.Headers().Get("Clearance-Request-Id")] = m.Data()
	}
	if len(out) != n {
		t.Fatalf("%d dead letters, want %d", len(out), n)
	}
	return out
}
