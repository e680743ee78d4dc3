package policy_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/broker/brokertest"
	"github.com/clearance-broker/clearance/policy"
	"github.com/prometheus/client_golang/prometheus"
)

// snapshotSeq returns the event of the stored snapshot, or 0.
func (e *env) snapshotSeq(t *testing.T) int64 {
	t.Helper()
	var seq int64
	if err := e.db.NewRaw("SELECT COALESCE(MAX(seq), 0) FROM policy_snapshots").Scan(t.Context(), &seq); err != nil {
		t.Fatal(err)
	}
	return seq
}

// firstSwap returns the event n put in force first.
func (n *node) firstSwap(t *testing.T) int64 {
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.swaps) == 0 {
		t.Fatal("nothing put in force")
	}
	return n.swaps[0].Seq
}

// contentJSON is reg's content as stored.
func contentJSON(t *testing.T, reg *agreements.Registry) string {
	t.Helper()
	b, err := json.Marshal(reg.Content())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestStartResumesFromSnapshot: an instance that starts after a snapshot
// was stored puts it in force and replays only the events after it, and
// ends with the very registry (version and content) that an instance
// replaying every event derives; the run-time changes before the snapshot
// are still carried over a later apply. A snapshot that does not hold
// together is passed over.
func TestStartResumesFromSnapshot(t *testing.T) {
	for name, dsn := range map[string]func(testing.TB) string{"sqlite": brokertest.SQLiteDSN, "postgres": brokertest.PostgresDSN} {
		t.Run(name, func(t *testing.T) { resumeFromSnapshot(t, dsn(t)) })
	}
}

func resumeFromSnapshot(t *testing.T, dsn string) {
	t.Cleanup(policy.SetSnapshotPart(1024))
	e := newEnv(t, dsn)
	e.snapshotEvery = 5
	srv := brokertest.StartNATS(t)
	dir := registryDir(t)
	a := e.startApplied(t, brokertest.Connect(t, srv), dir)
	changes := []agreements.Change{
		{Withdrawals: []agreements.Withdrawal{{Subject: "cust-7", Purpose: "marketing", At: at.Add(-time.Hour)}}},
		{Suspend: []string{"dpa-swiftship-de"}},
		{Erasures: []agreements.Erasure{{Subject: "cust-erased", At: at}}},
		// A withdrawal before its consent is recorded: the snapshot keeps
		// it, for the consent recorded after the snapshot.
		{Withdrawals: []agreements.Withdrawal{{Subject: "cust-late", Purpose: "marketing", At: at.Add(-time.Hour)}}},
	}
	for i := range 5 {
		changes = append(changes, agreements.Change{Consents: []agreements.Consent{{
			Subject: fmt.Sprintf("cust-snap-%d", i), Purpose: "marketing", GrantedAt: at.Add(-time.Duration(i+1) * time.Hour)}}})
	}
	for _, ch := range changes {
		if _, err := a.live.Change(t.Context(), ch); err != nil {
			t.Fatal(err)
		}
	}
	// The snapshots are stored off the change's path: events 5 and 10,
	// or 10 alone when 5's was still being stored at 10.
	deadline := time.Now().Add(10 * time.Second)
	for e.snapshotSeq(t) != 10 {
		if time.Now().After(deadline) {
			t.Fatalf("no snapshot stored (latest at %d)", e.snapshotSeq(t))
		}
		time.Sleep(10 * time.Millisecond)
	}
	snap := e.snapshotSeq(t)
	var stored int
	if err := e.db.NewRaw("SELECT COUNT(*) FROM policy_snapshots").Scan(t.Context(), &stored); err != nil {
		t.Fatal(err)
	}
	if stored != 1 {
		t.Fatalf("%d snapshots kept, want the newest only", stored)
	}
	ev, err := a.live.Change(t.Context(), agreements.Change{Consents: []agreements.Consent{{
		Subject: "cust-late", Purpose: "marketing", GrantedAt: at.Add(-2 * time.Hour)}}})
	if err != nil {
		t.Fatal(err)
	}
	if cs, _ := a.engine.Registry().Subject("cust-late"); len(cs) != 1 || cs[0].WithdrawnAt == nil {
		t.Fatalf("a consent recorded after its withdrawal: %+v", cs)
	}
	want, wantContent := ev.Version, contentJSON(t, a.engine.Registry())

	// others starts an instance without snapshots of its own (so that the
	// stored one stays as the test made it) and checks that it reaches
	// the registry in force, from event from.
	others := *e
	others.snapshotEvery = -1
	check := func(t *testing.T, from int64) *node {
		t.Helper()
		n := others.start(t, brokertest.Connect(t, srv), load(t, dir))
		if got := n.firstSwap(t); got != from {
			t.Fatalf("started from event %d, want %d", got, from)
		}
		if got := n.engine.Registry().Version(); got != want {
			t.Fatalf("version %s, want %s", got, want)
		}
		if got := contentJSON(t, n.engine.Registry()); got != wantContent {
			t.Fatalf("content differs from the instance that made the changes:\n got %s\nwant %s", got, wantContent)
		}
		reg, seq, err := e.store.InForce(t.Context())
		if err != nil || seq != ev.Seq || reg.Version() != want {
			t.Fatalf("InForce = %v at %d, %v; want %s at %d", reg.Version(), seq, err, want, ev.Seq)
		}
		return n
	}
	resumed := check(t, snap)
	if got := gauge(t, resumed.metrics, "clearance_registry_snapshot_event"); got != float64(snap) {
		t.Fatalf("snapshot_event %v on the instance started from snapshot %d", got, snap)
	}
	if got := gauge(t, a.metrics, "clearance_registry_snapshot_bytes"); got < 1000 {
		t.Fatalf("snapshot_bytes %v on the instance that stored it", got)
	}

	// The content is in parts (of 1 KiB in this test).
	var parts int
	if err := e.db.NewRaw("SELECT COUNT(*) FROM policy_snapshot_parts WHERE seq = ?", snap).Scan(t.Context(), &parts); err != nil {
		t.Fatal(err)
	}
	if parts < 3 {
		t.Fatalf("snapshot stored in %d parts, want several", parts)
	}
	exec := func(t *testing.T, query string, args ...any) {
		t.Helper()
		if _, err := e.db.Exec(query, args...); err != nil {
			t.Fatal(err)
		}
	}
	// replaceContent stores content as the snapshot's only part.
	replaceContent := func(t *testing.T, content string) {
		exec(t, "DELETE FROM policy_snapshot_parts")
		exec(t, "INSERT INTO policy_snapshot_parts (seq, part, data) SELECT seq, 0, ? FROM policy_snapshots", []byte(content))
		exec(t, "UPDATE policy_snapshots SET digest = ?", sha256Hex(content))
	}
	for _, tamper := range []struct {
		name  string
		apply func(t *testing.T)
		from  func() int64 // the event the next instance starts from
	}{
		{"a part edited", func(t *testing.T) {
			exec(t, "UPDATE policy_snapshot_parts SET data = ? WHERE part = 1", []byte(strings.Repeat(" ", 1024)))
		}, nil},
		{"a part missing", func(t *testing.T) { exec(t, "DELETE FROM policy_snapshot_parts WHERE part = 1") }, nil},
		{"a part added", func(t *testing.T) {
			exec(t, "INSERT INTO policy_snapshot_parts (seq, part, data) SELECT seq, 1000, ? FROM policy_snapshots", []byte(" "))
		}, nil},
		{"other version", func(t *testing.T) { exec(t, "UPDATE policy_snapshots SET version = 'sha256:0000'") }, nil},
		{"content does not decode", func(t *testing.T) { replaceContent(t, `{"zones":7}`) }, nil},
		{"content not a registry", func(t *testing.T) { replaceContent(t, notRegistry) }, nil},
		// A snapshot stored before it kept the run-time withdrawals lacks
		// what withdraws a consent recorded after it.
		{"stored without the run-time withdrawals", func(t *testing.T) {
			var c agreements.Content
			if err := json.Unmarshal([]byte(snapshotJSON(t, e)), &c); err != nil {
				t.Fatal(err)
			}
			b, err := json.Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			replaceContent(t, string(b))
		}, nil},
		// A snapshot stored before parts holds its content in its own row,
		// and is put in force.
		{"stored before parts", func(t *testing.T) {
			content := snapshotJSON(t, e)
			exec(t, "DELETE FROM policy_snapshot_parts")
			exec(t, "UPDATE policy_snapshots SET content = ?", content)
		}, func() int64 { return e.snapshotSeq(t) }},
	} {
		t.Run(tamper.name, func(t *testing.T) {
			tamper.apply(t)
			from := int64(1)
			if tamper.from != nil {
				from = tamper.from()
			}
			check(t, from)
		})
		// The next tamper starts from the intact snapshot again.
		exec(t, "DELETE FROM policy_snapshot_parts")
		exec(t, "DELETE FROM policy_snapshots")
		a.live.Stop()
		a = e.start(t, brokertest.Connect(t, srv), load(t, dir))
		deadline := time.Now().Add(10 * time.Second)
		for e.snapshotSeq(t) == 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if e.snapshotSeq(t) != ev.Seq {
			t.Fatalf("a starting instance replaying %d events stored its snapshot at %d", ev.Seq, e.snapshotSeq(t))
		}
	}

	// A later apply that keeps the suspended agreement's version carries
	// the changes made before the snapshot on the instance that started
	// from it, as on the others: the withdrawal and the suspension hold.
	applied := applyNewBase(t, a, dir)
	resumed.waitVersion(t, applied.Version)
	if d := resumed.engine.Decide(marketing(t), at); d.Allowed() {
		t.Fatal("withdrawal before the snapshot lost by the apply")
	}
	delivery, err := agreements.ParseRequest(brokertest.ExampleRequest(t, "01-delivery-eea-allow.json"))
	if err != nil {
		t.Fatal(err)
	}
	if d := resumed.engine.Decide(delivery, at); d.Allowed() {
		t.Fatal("suspension before the snapshot lost by the apply")
	}
}

// snapshotJSON returns the content of the stored snapshot, its parts
// joined.
func snapshotJSON(t *testing.T, e *env) string {
	t.Helper()
	var rows []struct {
		Data []byte `bun:"data"`
	}
	if err := e.db.NewRaw("SELECT data FROM policy_snapshot_parts ORDER BY part").Scan(t.Context(), &rows); err != nil {
		t.Fatal(err)
	}
	var content []byte
	for _, r := range rows {
		content = append(content, r.Data...)
	}
	return string(content)
}

// notRegistry decodes as registry content that New refuses.
const notRegistry = `{"agreements":[{"id":"x","parties":["nobody"]}]}`

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// TestReplayNamesCorruptEvent: a starting instance takes the run-time
// changes since the last apply at once, yet a stored version that is not
// the one its change derives, in the middle of them, still stops the
// start, naming the event, as when every event was taken one by one.
func TestReplayNamesCorruptEvent(t *testing.T) {
	e := newEnv(t, brokertest.SQLiteDSN(t))
	e.snapshotEvery = -1
	srv := brokertest.StartNATS(t)
	dir := registryDir(t)
	a := e.startApplied(t, brokertest.Connect(t, srv), dir)
	for i := range 6 {
		if _, err := a.live.Change(t.Context(), agreements.Change{Consents: []agreements.Consent{{
			Subject: fmt.Sprintf("cust-run-%d", i), Purpose: "marketing", GrantedAt: at}}}); err != nil {
			t.Fatal(err)
		}
	}
	// Replayed as one run, the events reach the same registry.
	b := e.start(t, brokertest.Connect(t, srv), load(t, dir))
	if got, want := b.engine.Registry().Version(), a.engine.Registry().Version(); got != want {
		t.Fatalf("replayed %s, want %s", got, want)
	}
	// A page of events reads that page.
	page, err := e.store.Events(t.Context(), 2, 3)
	if err != nil || len(page) != 3 || page[0].Seq != 3 || page[2].Seq != 5 {
		t.Fatalf("Events(2, 3) = %d events from %v, %v", len(page), page, err)
	}
	if _, err := e.db.Exec("UPDATE policy_events SET version = 'sha256:0000' WHERE seq = 4"); err != nil {
		t.Fatal(err)
	}
	_, err = policy.Start(t.Context(), policy.Options{Store: e.store, Engine: agreements.NewEngine(load(t, dir)),
		NATS: brokertest.Connect(t, srv), Audit: e.audit, SnapshotEvery: -1})
	if !errors.Is(err, policy.ErrCorruptEvent) || !strings.Contains(err.Error(), "event 4 ") {
		t.Fatalf("start on a corrupt event 4: %v", err)
	}
	if _, _, err := e.store.InForce(t.Context()); !errors.Is(err, policy.ErrCorruptEvent) {
		t.Fatalf("InForce on a corrupt event: %v", err)
	}
}

// gauge returns the value of the unlabelled gauge or counter name of g.
func gauge(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			if c := mf.GetMetric()[0].GetCounter(); c != nil {
				return c.GetValue()
			}
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// TestSnapshotFailureWaitsAnInterval: a snapshot the store refuses is
// counted and logged, and tried again after another interval of events,
// not at every event after it.
func TestSnapshotFailureWaitsAnInterval(t *testing.T) {
	e := newEnv(t, brokertest.SQLiteDSN(t))
	e.snapshotEvery = 3
	srv := brokertest.StartNATS(t)
	dir := registryDir(t)
	a := e.startApplied(t, brokertest.Connect(t, srv), dir)
	change := func(i int) {
		t.Helper()
		if _, err := a.live.Change(t.Context(), agreements.Change{Consents: []agreements.Consent{{
			Subject: fmt.Sprintf("cust-fail-%d", i), Purpose: "marketing", GrantedAt: at}}}); err != nil {
			t.Fatal(err)
		}
	}
	failures := func(want float64) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for gauge(t, a.metrics, "clearance_registry_snapshot_failures_total") < want {
			if time.Now().After(deadline) {
				t.Fatalf("snapshot failures never reached %v", want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	change(2)
	change(3) // stored
	for deadline := time.Now().Add(5 * time.Second); e.snapshotSeq(t) != 3; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("snapshot at %d, want 3", e.snapshotSeq(t))
		}
	}
	if _, err := e.db.Exec("DROP TABLE policy_snapshots"); err != nil {
		t.Fatal(err)
	}
	// A store whose snapshots cannot be read is an error, not a replay.
	if _, _, err := e.store.InForce(t.Context()); err == nil {
		t.Fatal("InForce read a store without its snapshot table")
	}
	for i := 4; i <= 6; i++ {
		change(i) // 6: refused
	}
	failures(1)
	for i := 7; i <= 9; i++ {
		change(i) // 9: refused again
	}
	failures(2)
	time.Sleep(200 * time.Millisecond)
	if got := gauge(t, a.metrics, "clearance_registry_snapshot_failures_total"); got != 2 {
		t.Fatalf("%v snapshot attempts refused, want 2 (events 6 and 9)", got)
	}
}
