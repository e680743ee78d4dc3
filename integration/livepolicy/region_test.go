package livepolicy

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/broker"
	"github.com/clearance-broker/clearance/broker/brokertest"
	"github.com/clearance-broker/clearance/connectors"
	"github.com/clearance-broker/clearance/connectors/natsregion"
	"github.com/clearance-broker/clearance/keys"
	"github.com/clearance-broker/clearance/shred"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/uptrace/bun"
)

// regionPair is a sending region (EU) and a receiving one (JP), each with
// its own NATS server, sharing the SQL store (audit log, registry, subject
// keys) and the key service: the topology in which per-subject keys reach
// the receiving region (see the shred package documentation).
type regionPair struct {
	euSrv, jpSrv *server.Server
	eu, jp       *nats.Conn
	ring         *keys.DevKeyRing
	auditLog     *audit.Log
	db           *bun.DB
	reg          *agreements.Registry
	euKeys       *shred.Keyring
	jpKeys       *shred.Keyring
	region       connectors.Connector // EU's natsregion connector to JP
	local        chan *nats.Msg       // what JP's Clearance hands its systems
}

func newRegionPair(t *testing.T) *regionPair {
	t.Helper()
	p := &regionPair{euSrv: brokertest.StartNATS(t), jpSrv: brokertest.StartNATS(t)}
	p.eu, p.jp = brokertest.Connect(t, p.euSrv), brokertest.Connect(t, p.jpSrv)
	p.ring = brokertest.DevKeys(t, devRing(t))
	p.auditLog, p.db = brokertest.OpenAudit(t, brokertest.PostgresDSN(t), p.ring)
	pkey := newRecipient(t, 0).key
	p.reg = brokertest.ExampleRegistry(t, pkey.PublicJWK)
	open := func(nc *nats.Conn) *shred.Keyring {
		k, err := shred.Open(t.Context(), shred.Options{DB: p.db, Keys: p.ring, Audit: p.auditLog, SubjectKey: brokertest.SubjectKey, NATS: nc})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(k.Close)
		return k
	}
	p.euKeys, p.jpKeys = open(p.eu), open(p.jp)
	region, err := natsregion.New(t.Context(), "region-jp", &natsregion.Config{
		URLs: []string{p.jpSrv.ClientURL()}, SubjectPrefix: natsregion.DefaultSubjectPrefix,
		Replicas: 1, DuplicateWindow: connectors.Duration(time.Minute), AckTimeout: connectors.Duration(5 * time.Second),
		ConnectTimeout: connectors.Duration(5 * time.Second), ReconnectWait: connectors.Duration(time.Second), NoResponderRetries: 2,
		FullRetryAfter: connectors.Duration(time.Second),
	}, connectors.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = region.Close(context.Background()) })
	p.region = region
	p.local = make(chan *nats.Msg, 8)
	sub, err := p.jp.ChanSubscribe("tokyo.local", p.local)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return p
}

// startBroker starts a broker on nc; inbound makes it JP's receiving side.
func (p *regionPair) startBroker(t *testing.T, nc *nats.Conn, engine *agreements.Engine, subjects *shred.Keyring,
	conns broker.ConnectorMap, inbound bool) *broker.Broker {
	t.Helper()
	opts := broker.Options{
		NATS: nc, Decider: engine, Parties: broker.PartiesOf(engine), Keys: p.ring, Audit: p.auditLog, Subjects: subjects,
		Connectors: conns, Retry: broker.RetryPolicy{MaxDeliver: 5, BackoffBase: 50 * time.Millisecond, BackoffMax: 200 * time.Millisecond},
	}
	if inbound {
		opts.Inbound = tokyoInbound()
	}
	return startBrokerWith(t, opts)
}

// tokyoInbound is the receiving side of the Tokyo region in these tests.
func tokyoInbound() *broker.InboundOptions {
	return &broker.InboundOptions{Stream: "REGION_JP_IN", Subject: natsregion.DefaultSubjectPrefix + ".>", LocalSubject: "tokyo.local"}
}

// startBrokerWith starts a broker with opts, stopped at the test's end.
func startBrokerWith(t *testing.T, opts broker.Options) *broker.Broker {
	t.Helper()
	b, err := broker.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Stop(context.Background()) })
	return b
}

// sendTokyo publishes the example hosting transfer to dc-tokyo with id on
// EU's ingest stream and waits for its receipt.
func sendTokyo(t *testing.T, nc *nats.Conn, id string) string {
	t.Helper()
	receipts := make(chan *nats.Msg, 1)
	sub, err := nc.ChanSubscribe("clearance.receipts.device-fleet", receipts)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	body := strings.Replace(string(brokertest.ExampleRequest(t, "08-hosting-tokyo-adequacy.json")), "dev-551-hosting", id, 1)
	js, _ := jetstream.New(nc)
	msg := nats.NewMsg("clearance.transfers.device-fleet")
	msg.Data, msg.Header = []byte(body), nats.Header{}
	msg.Header.Set(jetstream.MsgIDHeader, id)
	if _, err := js.PublishMsg(t.Context(), msg); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-receipts:
		return string(m.Data)
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: no receipt", id)
	}
	return ""
}

// streamCopy returns what the JP stream holds of the last delivery to
// dc-tokyo.
func streamCopy(t *testing.T, nc *nats.Conn) *jetstream.RawStreamMsg {
	t.Helper()
	js, _ := jetstream.New(nc)
	stream, err := js.Stream(t.Context(), "REGION_JP_IN")
	if err != nil {
		t.Fatal(err)
	}
	msg, err := stream.GetLastMsgForSubject(t.Context(), natsregion.DefaultSubjectPrefix+".dc-tokyo")
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

// TestErasureShredsRegionalStreams sends a transfer to the Tokyo region:
// the regional stream holds it sealed under the subject's key, Tokyo's
// Clearance opens it and hands it on; once the subject is erased, the
// copy in the stream opens nowhere, not with the subject keys nor with the
// shared data key.
func TestErasureShredsRegionalStreams(t *testing.T) {
	p := newRegionPair(t)
	engine := agreements.NewEngine(p.reg)
	p.startBroker(t, p.jp, agreements.NewEngine(p.reg), p.jpKeys, broker.ConnectorMap{}, true)
	p.startBroker(t, p.eu, engine, p.euKeys, broker.ConnectorMap{"region-jp": p.region}, false)

	if rc := sendTokyo(t, p.eu, "host-1"); !strings.Contains(rc, `"delivered"`) {
		t.Fatalf("receipt %s", rc)
	}
	select {
	case m := <-p.local:
		if !strings.Contains(string(m.Data), `"host-1"`) {
			t.Fatalf("Tokyo handed on %s", m.Data)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Tokyo's Clearance never handed the transfer on")
	}
	cp := streamCopy(t, p.jp)
	if !shred.IsEnvelope(cp.Data) || cp.Header.Get("Clearance-Key-Ref") != broker.SubjectKeyRef {
		t.Fatalf("regional copy is not under the subject key (key ref %q)", cp.Header.Get("Clearance-Key-Ref"))
	}
	if strings.Contains(string(cp.Data), "cust-44") || strings.Contains(string(cp.Data), "SN123") {
		t.Fatal("regional copy holds personal data in clear")
	}
	if _, err := p.jpKeys.Open(t.Context(), cp.Data); err != nil {
		t.Fatalf("Tokyo cannot open the regional copy: %v", err)
	}
	delivered, err := p.auditLog.Query(t.Context(), audit.Filter{Event: audit.EventDelivered, RequestID: "host-1"})
	if err != nil || len(delivered) != 1 || delivered[0].KeyRef != broker.SubjectKeyRef {
		t.Fatalf("the audit does not name the subject key for the regional delivery: %+v %v", delivered, err)
	}

	if _, err := p.euKeys.Destroy(t.Context(), "cust-44", "dead letters, retry copies, regional streams"); err != nil {
		t.Fatal(err)
	}
	fresh, err := shred.Open(t.Context(), shred.Options{DB: p.db, Keys: p.ring, Audit: p.auditLog, SubjectKey: brokertest.SubjectKey})
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	for name, k := range map[string]*shred.Keyring{"the sending instance": p.euKeys, "a fresh instance": fresh} {
		if got, err := k.Open(t.Context(), cp.Data); !errors.Is(err, shred.ErrShredded) {
			t.Errorf("%s opened the shredded regional copy: %q, %v", name, got, err)
		}
	}
	if _, err := p.ring.Open(t.Context(), cp.Data); err == nil {
		t.Error("the shared data key opens the regional copy")
	}
	if rc := sendTokyo(t, p.eu, "host-2"); strings.Contains(rc, `"delivered"`) {
		t.Errorf("a transfer of the shredded subject went out: %s", rc)
	}
}

// TestRegionWithItsOwnSubjectKeys: Tokyo's Clearance reads subject keys
// from its own store (with its own audit log), not from the EU's: the
// mistake subject_keys.store is there to avoid. The regional copy cannot be
// opened there; Tokyo retries it (a replicated key table may lag), then
// audits it as rejected with receive_failed: subject_key_unknown and keeps
// it, sealed, as a dead letter. Nothing says the subject was erased, and
// nothing is handed on.
func TestRegionWithItsOwnSubjectKeys(t *testing.T) {
	p := newRegionPair(t)
	jpLog, jpDB := brokertest.OpenAudit(t, brokertest.SQLiteDSN(t), p.ring)
	jpOwn, err := shred.Open(t.Context(), shred.Options{DB: jpDB, Keys: p.ring, Audit: jpLog, SubjectKey: brokertest.SubjectKey, NATS: p.jp})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(jpOwn.Close)
	engine := agreements.NewEngine(p.reg)
	startBrokerWith(t, broker.Options{
		NATS: p.jp, Decider: engine, Parties: broker.PartiesOf(engine), Keys: p.ring, Audit: jpLog, Subjects: jpOwn,
		Connectors: broker.ConnectorMap{}, Retry: broker.RetryPolicy{MaxDeliver: 5, BackoffBase: 50 * time.Millisecond, BackoffMax: 200 * time.Millisecond},
		Inbound: tokyoInbound(),
	})
	p.startBroker(t, p.eu, agreements.NewEngine(p.reg), p.euKeys, broker.ConnectorMap{"region-jp": p.region}, false)

	if rc := sendTokyo(t, p.eu, "host-own"); !strings.Contains(rc, `"delivered"`) {
		t.Fatalf("receipt %s", rc)
	}
	var rejected []audit.Entry
	for deadline := time.Now().Add(20 * time.Second); len(rejected) == 0; time.Sleep(50 * time.Millisecond) {
		if rejected, err = jpLog.Query(t.Context(), audit.Filter{Event: audit.EventRejected, RequestID: broker.InboundRejectionPrefix + "host-own"}); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatal("Tokyo never gave the regional copy up")
		}
	}
	if r := rejected[0].Reasons; len(r) != 1 || r[0] != "receive_failed: subject_key_unknown" {
		t.Errorf("rejected with %v, want receive_failed: subject_key_unknown", r)
	}
	js, _ := jetstream.New(p.jp)
	in, err := js.Consumer(t.Context(), "REGION_JP_IN", "clearance-inbound")
	if err != nil {
		t.Fatal(err)
	}
	ci, err := in.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if ci.Delivered.Consumer != 5 {
		t.Errorf("the regional copy reached Tokyo's Clearance %d times, want max_deliver 5: it is retried", ci.Delivered.Consumer)
	}
	s, err := js.Stream(t.Context(), broker.DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	dl, err := s.GetLastMsgForSubject(t.Context(), broker.DeadLetterSubject+".inbound")
	if err != nil {
		t.Fatalf("no dead letter in Tokyo: %v", err)
	}
	if !shred.IsEnvelope(dl.Data) || strings.Contains(string(dl.Data), "cust-44") {
		t.Error("the dead letter is not the sealed regional copy")
	}
	select {
	case m := <-p.local:
		t.Fatalf("Tokyo handed on %s", m.Data)
	default:
	}
	if _, err := p.jpKeys.Open(t.Context(), dl.Data); err != nil {
		t.Errorf("the EU's key store does not open the dead letter: %v", err)
	}
}
