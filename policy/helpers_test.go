package policy_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/broker/brokertest"
	"github.com/clearance-broker/clearance/policy"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/uptrace/bun"
)

// env is a store (and its audit log) shared by the instances of a test.
type env struct {
	dsn   string
	db    *bun.DB
	store *policy.Store
	audit *audit.Log
	// snapshotEvery is the instances' Options.SnapshotEvery (0: default).
	snapshotEvery int
	// onErasure is the instances' Options.OnErasure.
	onErasure func(ctx context.Context, subject string, at time.Time) error
	// resync is the instances' Options.Resync (0: an hour).
	resync time.Duration
	// auditDown, when set, makes the instances' audit log refuse appends
	// while it holds true.
	auditDown *atomic.Bool
}

// downableAudit is an audit log that refuses appends while down holds.
type downableAudit struct {
	policy.AuditLog
	down *atomic.Bool
}

func (d downableAudit) Append(ctx context.Context, e *audit.Entry) (int64, error) {
	if d.down.Load() {
		return 0, errors.New("audit store unavailable")
	}
	return d.AuditLog.Append(ctx, e)
}

func newEnv(t testing.TB, dsn string) *env {
	t.Helper()
	keys := brokertest.DevKeys(t, filepath.Join(t.TempDir(), "keys.json"))
	l, db := brokertest.OpenAudit(t, dsn, keys)
	s, err := policy.OpenStore(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	return &env{dsn: dsn, db: db, store: s, audit: l}
}

// node is one instance's live registry.
type node struct {
	live    *policy.Live
	engine  *agreements.Engine
	metrics *prometheus.Registry

	mu    sync.Mutex
	swaps []policy.Event
	at    map[int64]time.Time // when each event was put in force
}

// swapAt returns when n put event seq in force.
func (n *node) swapAt(seq int64) (time.Time, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	at, ok := n.at[seq]
	return at, ok
}

func (e *env) start(t testing.TB, nc *nats.Conn, initial *agreements.Registry) *node {
	t.Helper()
	n := &node{engine: agreements.NewEngine(initial), metrics: prometheus.NewRegistry(), at: map[int64]time.Time{}}
	var log policy.AuditLog = e.audit
	if e.auditDown != nil {
		log = downableAudit{AuditLog: e.audit, down: e.auditDown}
	}
	resync := e.resync
	if resync == 0 {
		resync = time.Hour
	}
	live, err := policy.Start(t.Context(), policy.Options{
		Store: e.store, Engine: n.engine, NATS: nc, Audit: log, Resync: resync, Registerer: n.metrics,
		SnapshotEvery: e.snapshotEvery, OnErasure: e.onErasure,
		OnSwap: func(ev policy.Event) {
			now := time.Now()
			n.mu.Lock()
			n.swaps = append(n.swaps, ev)
			n.at[ev.Seq] = now
			n.mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(live.Stop)
	n.live = live
	return n
}

// waitVersion waits until n's engine decides with version v.
func (n *node) waitVersion(t *testing.T, v string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for n.engine.Registry().Version() != v {
		if time.Now().After(deadline) {
			t.Fatalf("registry version %s never reached (at %s)", v, n.engine.Registry().Version())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// registryDir copies examples/registry to a temporary directory.
func registryDir(t testing.TB) string {
	t.Helper()
	src := filepath.Join(brokertest.RepoRoot(t), "examples", "registry")
	dst := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// applyNewBase edits the registry files in dir into a new base (a
// retention changed, dpa-fastfreight-us at version 2) that keeps the
// version of every other agreement, and applies it through n.
func applyNewBase(t *testing.T, n *node, dir string) policy.Event {
	t.Helper()
	edit(t, dir, "40-agreements.yaml", "retention_days: 60", "retention_days: 61")
	edit(t, dir, "40-agreements.yaml", "id: dpa-fastfreight-us\n    version: 1", "id: dpa-fastfreight-us\n    version: 2")
	ev, _, err := n.live.Apply(t.Context(), load(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// edit replaces old by new in file name of dir.
func edit(t *testing.T, dir, name, old, new string) {
	t.Helper()
	p := filepath.Join(dir, name)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("%s does not hold %q", name, old)
	}
	if err := os.WriteFile(p, []byte(strings.Replace(string(b), old, new, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
}

func load(t testing.TB, dir string) *agreements.Registry {
	t.Helper()
	reg, err := agreements.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// marketing is a request that needs cust-7's consent to marketing.
func marketing(t *testing.T) *agreements.Request {
	t.Helper()
	req, err := agreements.ParseRequest(brokertest.ExampleRequest(t, "10-marketing-consent-allow.json"))
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// at is the instant decisions in these tests are made at.
var at = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

func events(t *testing.T, l *audit.Log, ev audit.Event) []audit.Entry {
	t.Helper()
	es, err := l.Query(context.Background(), audit.Filter{Event: ev, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return es
}

// propagations returns how many events n put in force with a measured
// propagation time.
func (n *node) propagations(t *testing.T) uint64 {
	t.Helper()
	mfs, err := n.metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "clearance_registry_propagation_seconds" {
			return mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	return 0
}

// startApplied starts an instance of e on nc with the registry of dir and
// applies that registry, as the store's first version.
func (e *env) startApplied(t *testing.T, nc *nats.Conn, dir string) *node {
	t.Helper()
	n := e.start(t, nc, load(t, dir))
	if _, _, err := n.live.Apply(t.Context(), load(t, dir)); err != nil {
		t.Fatal(err)
	}
	return n
}

// startPair starts two instances on one NATS server and a registry
// directory, and applies the directory through the first; it returns both,
// the server and the directory for instances started later.
func (e *env) startPair(t *testing.T) (a, b *node, srv *server.Server, dir string) {
	t.Helper()
	srv, dir = brokertest.StartNATS(t), registryDir(t)
	a = e.start(t, brokertest.Connect(t, srv), load(t, dir))
	b = e.start(t, brokertest.Connect(t, srv), load(t, dir))
	if _, _, err := a.live.Apply(t.Context(), load(t, dir)); err != nil {
		t.Fatal(err)
	}
	return a, b, srv, dir
}

// rightsAPI is an HTTP server of one instance's rights routes (Mount).
type rightsAPI struct{ url string }

func (n *node) rightsAPI(t *testing.T) rightsAPI {
	t.Helper()
	mux := http.NewServeMux()
	n.live.Mount(mux, nil)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return rightsAPI{url: srv.URL}
}

// post sends body to path under the Idempotency-Key id (none when empty)
// and returns the status and the receipt.
func (a rightsAPI) post(t *testing.T, path, id, body string) (int, policy.Receipt) {
	t.Helper()
	code, rc, _ := a.send(t, path, id, body)
	return code, rc
}

// send is post, returning the answer's body too.
func (a rightsAPI) send(t *testing.T, path, id, body string) (int, policy.Receipt, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, a.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if id != "" {
		req.Header.Set("Idempotency-Key", id)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var rc policy.Receipt
	if err := json.Unmarshal(b, &rc); err != nil {
		t.Fatalf("answer %d %s", resp.StatusCode, b)
	}
	return resp.StatusCode, rc, string(b)
}

// intakeNode starts an instance of e on a NATS server of its own, applies
// the example registry and starts its rights intake; it returns the
// instance, the receipts to the source cms and a JetStream context to
// publish with.
func (e *env) intakeNode(t *testing.T) (*node, chan *nats.Msg, jetstream.JetStream) {
	t.Helper()
	nc := brokertest.Connect(t, brokertest.StartNATS(t))
	dir := registryDir(t)
	n := e.startApplied(t, nc, dir)
	in, err := n.live.StartIntake(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(in.Stop)
	receipts := make(chan *nats.Msg, 16)
	sub, err := nc.ChanSubscribe(policy.ReceiptsSubject+".cms", receipts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	js, _ := jetstream.New(nc)
	return n, receipts, js
}

// consentFor is the marketing request (marketing) for subject.
func consentFor(t *testing.T, subject string) *agreements.Request {
	t.Helper()
	req := marketing(t)
	req.Subject.ID = subject
	return req
}

// publishRights publishes body on subject under the Nats-Msg-Id id and returns
// the receipt that comes on receipts.
func publishRights(t *testing.T, js jetstream.JetStream, receipts <-chan *nats.Msg, subject, id, body string) policy.Receipt {
	t.Helper()
	msg := nats.NewMsg(subject)
	msg.Data = []byte(body)
	msg.Header.Set(jetstream.MsgIDHeader, id)
	if _, err := js.PublishMsg(t.Context(), msg); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-receipts:
		var rc policy.Receipt
		if err := json.Unmarshal(m.Data, &rc); err != nil {
			t.Fatal(err)
		}
		return rc
	case <-time.After(10 * time.Second):
		t.Fatal("no receipt")
	}
	return policy.Receipt{}
}

// intakeSettled fails t unless the rights intake's consumer holds nothing
// redelivered, pending or waiting for an acknowledgement; what says what
// was expected of the messages.
func intakeSettled(t *testing.T, js jetstream.JetStream, what string) {
	t.Helper()
	c, err := js.Consumer(t.Context(), policy.RightsStream, policy.RightsConsumer)
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.NumRedelivered != 0 || info.NumAckPending != 0 || info.NumPending != 0 {
		t.Errorf("consumer: redelivered %d, ack pending %d, pending %d; want %s",
			info.NumRedelivered, info.NumAckPending, info.NumPending, what)
	}
}
