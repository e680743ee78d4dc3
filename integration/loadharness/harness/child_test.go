package harness

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestChildForwarder runs a baseline forwarder in a child process (the
// test binary re-executed, see TestMain) on embedded NATS servers and
// checks that it forwards, reports its own CPU time and peak memory, and
// exits when stopped.
func TestChildForwarder(t *testing.T) {
	ctx := t.Context()
	var urls []string
	for _, name := range []string{"ingest", "region"} {
		s, err := startNATS(filepath.Join(t.TempDir(), name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Shutdown)
		urls = append(urls, s.ClientURL())
	}
	e := &env{cfg: Config{AckWait: 30 * time.Second}.Defaults(), ingest: urls[0], region: urls[1]}
	var err error
	if e.nc, e.js, err = connect(e.ingest, "test"); err != nil {
		t.Fatal(err)
	}
	defer e.nc.Close()
	if e.rnc, e.rjs, err = connect(e.region, "test-region"); err != nil {
		t.Fatal(err)
	}
	defer e.rnc.Close()
	if err := e.streams(ctx); err != nil {
		t.Fatal(err)
	}
	arrived := make(chan string, 1000)
	sub, err := e.rnc.Subscribe(baselineTarget, func(m *nats.Msg) { arrived <- m.Header.Get(jetstream.MsgIDHeader) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()

	f := &forwarder{e: e, k: 2, sink: SinkJetStream}
	spec := func(kind, sink, name string) instanceSpec {
		return instanceSpec{Kind: kind, Name: name, Sink: sink, Ingest: e.ingest, Region: e.region, Concurrency: 8}
	}
	// forwarder.start takes its specs from e.spec, which needs Vault and
	// Postgres; the forwarder needs neither, so start its children here.
	if _, err := e.js.CreateOrUpdateConsumer(ctx, ingestStream, jetstream.ConsumerConfig{
		Durable: "baseline", AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Minute, MaxDeliver: -1, FilterSubject: "clearance.transfers.>",
	}); err != nil {
		t.Fatal(err)
	}
	for i := range f.k {
		if err := f.procs.spawn(ctx, spec(kindForwarder, SinkJetStream, fmt.Sprintf("baseline %d/2", i+1))); err != nil {
			f.stop(ctx)
			t.Fatal(err)
		}
	}
	pids := []int{f.procs.list[0].cmd.Process.Pid, f.procs.list[1].cmd.Process.Pid}
	u, err := startUsage(ctx, 0, f.children())
	if err != nil {
		f.stop(ctx)
		t.Fatal(err)
	}
	const n = 500
	for i := range n {
		msg := nats.NewMsg("clearance.transfers.test")
		msg.Data = []byte(strings.Repeat("x", 512))
		msg.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("m-%d", i))
		if _, err := e.js.PublishMsg(ctx, msg); err != nil {
			f.stop(ctx)
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	timeout := time.After(time.Minute)
	for len(seen) < n {
		select {
		case id := <-arrived:
			seen[id] = true
		case <-timeout:
			f.stop(ctx)
			t.Fatalf("%d of %d messages forwarded", len(seen), n)
		}
	}
	res, err := u.end(ctx)
	if err != nil {
		f.stop(ctx)
		t.Fatal(err)
	}
	if len(res.PerInstance) != 2 || res.InstancePeakRSSBytes == 0 || res.InstancesCPUSeconds <= 0 || !res.InstancePeakRSSReset {
		t.Errorf("per-instance figures missing: %+v", res)
	}
	for _, p := range instanceProblems("test", 2, res) {
		t.Error(p)
	}
	f.stop(ctx)
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); err == nil {
			t.Errorf("child %d still runs after stop", pid)
		}
	}
}

// TestChildFailure checks that a child that cannot start its instance is
// reported with its reason and reaped.
func TestChildFailure(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	c, err := spawnChild(ctx, instanceSpec{Kind: "nonsense", Name: "bad"})
	if err == nil {
		c.stop()
		t.Fatal("a child of unknown kind started")
	}
	if !strings.Contains(err.Error(), `kind "nonsense"`) {
		t.Errorf("error %q does not give the reason", err)
	}
}

// TestCheckInstanceFigures checks that a report of instances in child
// processes without their figures is not sound, and that one of
// in-process instances is not held to them.
func TestCheckInstanceFigures(t *testing.T) {
	m := &Measurement{Name: "jetstream/broker-2", Kind: "baseline", Instances: 2, Requests: 10, Accounted: 10, Throughput: 100,
		Resources: Resources{CPUSeconds: 1, PeakRSSBytes: 1 << 20, InstancesCPUSeconds: 1, InstancePeakRSSBytes: 1 << 20,
			PerInstance: []InstanceResources{{CPUSeconds: 1, PeakRSSBytes: 1 << 20}}}}
	r := &Report{Runs: []*Measurement{m}}
	if p := r.Check(); len(p) != 1 || !strings.Contains(p[0], "1 of 2 instances") {
		t.Errorf("one instance's figures missing: problems %q", p)
	}
	m.Resources.PerInstance = append(m.Resources.PerInstance, InstanceResources{PeakRSSBytes: 1 << 20})
	if p := r.Check(); len(p) != 1 || !strings.Contains(p[0], "instance 1: cpu") {
		t.Errorf("one instance's CPU missing: problems %q", p)
	}
	m.Resources.PerInstance[1].CPUSeconds = 0.5
	if p := r.Check(); len(p) != 0 {
		t.Errorf("complete figures: problems %q", p)
	}
	r.Settings.InProcess = true
	m.Resources = Resources{CPUSeconds: 1, PeakRSSBytes: 1 << 20}
	if p := r.Check(); len(p) != 0 {
		t.Errorf("in-process: problems %q", p)
	}
}
