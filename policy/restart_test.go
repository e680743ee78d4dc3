package policy_test

import (
	"net"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/broker/brokertest"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// restartable is an embedded NATS server that can be restarted on the same
// port and store directory.
type restartable struct {
	t    *testing.T
	opts server.Options
	srv  *server.Server
}

func startRestartable(t *testing.T) *restartable {
	t.Helper()
	r := &restartable{t: t, opts: server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true}}
	r.start()
	r.opts.Port = r.srv.Addr().(*net.TCPAddr).Port // keep the port on restart
	t.Cleanup(r.stop)
	return r
}

func (r *restartable) start() {
	r.t.Helper()
	o := r.opts
	s, err := server.NewServer(&o)
	if err != nil {
		r.t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		r.t.Fatal("nats server not ready")
	}
	r.srv = s
}

func (r *restartable) stop() {
	if r.srv != nil {
		r.srv.Shutdown()
		r.srv.WaitForShutdown()
		r.srv = nil
	}
}

func TestWatchSurvivesNATSRestart(t *testing.T) {
	e := newEnv(t, brokertest.SQLiteDSN(t))
	ns := startRestartable(t)
	connect := func() *nats.Conn {
		nc, err := nats.Connect(ns.srv.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	dir := registryDir(t)
	a := e.start(t, connect(), load(t, dir))
	b := e.start(t, connect(), load(t, dir))
	first, _, err := a.live.Apply(t.Context(), load(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	b.waitVersion(t, first.Version)

	ns.stop()
	time.Sleep(300 * time.Millisecond)
	ns.start()

	// The resync interval is an hour: only the watch can bring the change.
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; ; i++ {
		ev, err := a.live.Change(t.Context(), agreements.Change{Consents: []agreements.Consent{{
			Subject: "cust-restart", Purpose: "marketing", GrantedAt: at.Add(time.Duration(-i-1) * time.Minute)}}})
		if err != nil {
			t.Fatal(err)
		}
		wait := time.Now().Add(2 * time.Second)
		for time.Now().Before(wait) && b.engine.Registry().Version() != ev.Version {
			time.Sleep(10 * time.Millisecond)
		}
		if b.engine.Registry().Version() == ev.Version {
			t.Logf("change %d after the restart reached the other instance", i+1)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no change reached the other instance after the restart (at %d, want %d)", b.live.Seq(), ev.Seq)
		}
	}
	// The watch is made once again, and then holds: an idle instance makes
	// no further calls to JetStream's API (a watch that ended at once was
	// made again every 200 ms, a consumer created and deleted each time).
	api := func() uint64 { return ns.srv.GlobalAccount().JetStreamUsage().API.Total }
	time.Sleep(time.Second)
	before := api()
	time.Sleep(2 * time.Second)
	if calls := api() - before; calls > 4 {
		t.Errorf("%d JetStream API calls in 2 s of two idle instances after the restart", calls)
	}
	// Later changes arrive through the re-established watch.
	for i := range 3 {
		ev, err := a.live.Change(t.Context(), agreements.Change{Consents: []agreements.Consent{{
			Subject: "cust-restart", Purpose: "after_sales", GrantedAt: at.Add(time.Duration(-i-1) * time.Second)}}})
		if err != nil {
			t.Fatal(err)
		}
		b.waitVersion(t, ev.Version)
	}
}
