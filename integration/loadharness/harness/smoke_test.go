package harness_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/config"
	"github.com/clearance-broker/clearance/integration/loadharness/harness"
)

// TestMain lets the test binary run a measured instance when the harness
// starts it as a child.
func TestMain(m *testing.M) {
	harness.MaybeChild()
	os.Exit(m.Run())
}

// TestSmoke runs the harness on a few thousand requests over both sinks
// and checks that the report is produced and sound: every request
// accounted for once, broker outcomes matching the mix, figures present,
// and the JSON, table and SVG written.
func TestSmoke(t *testing.T) {
	cfg := harness.Config{
		N: 2000, WebhookN: 400, Instances: []int{1, 2}, Rates: []float64{0.5},
		PacedDuration: 2 * time.Second, Warmup: 500 * time.Millisecond, Timeout: 3 * time.Minute, Propagation: 10,
		InstanceProfileDir: t.TempDir(),
	}
	if testing.Short() {
		cfg.N, cfg.WebhookN, cfg.Instances = 600, 200, []int{1}
	}
	rep, err := harness.Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range rep.Check() {
		t.Error(p)
	}
	checkProfiles(t, cfg.InstanceProfileDir)
	// The harness's heap was grown before the first measurement (finding
	// 61).
	if want := int64(cfg.N) * 20 << 10; rep.Settings.Prefault != want {
		t.Errorf("prefaulted %d bytes, want %d", rep.Settings.Prefault, want)
	}
	if want := 2 * 2 * len(cfg.Instances); len(rep.Runs) != want {
		t.Fatalf("%d measurements, want %d", len(rep.Runs), want)
	}
	for _, m := range rep.Runs {
		if m.Kind == "broker" {
			if m.RatioToBaseline <= 0 || m.AuditPerSecond <= 0 || m.VaultTrips == 0 && m.Sink == harness.SinkWebhook {
				t.Errorf("%s: ratio %.2f, audit %.0f/s, vault trips %d: figures missing", m.Name, m.RatioToBaseline, m.AuditPerSecond, m.VaultTrips)
			}
		}
		if m.Resources.CPUSeconds <= 0 || m.Resources.PeakRSSBytes == 0 || len(m.Paced) != 1 {
			t.Errorf("%s: cpu %.2fs, rss %d, %d paced runs: figures missing", m.Name, m.Resources.CPUSeconds, m.Resources.PeakRSSBytes, len(m.Paced))
		}
		// Each paced run had its warm-up, measured apart, the broker's
		// stage times over its own requests, and its latency by window.
		for _, p := range m.Paced {
			if p.WarmupRequests == 0 || p.WarmupLatency.Count != p.WarmupRequests || p.Latency.Count != p.Requests ||
				m.Kind == "broker" && (p.Stages["stage:audit_ms"] <= 0 || p.StagesP99["stage:audit_ms"] <= 0 ||
					p.Stages["audit_commit_ms"] <= 0) {
				t.Errorf("%s paced: warm-up %d requests, %d timed; %d requests, %d timed; stages %v, p99 %v: figures missing",
					m.Name, p.WarmupRequests, p.WarmupLatency.Count, p.Requests, p.Latency.Count, p.Stages, p.StagesP99)
			}
			// Each began after a checkpoint of Postgres (the test's role may
			// ask for one), and the broker's wrote WAL: its audit entries.
			if p.CheckpointFirstError != "" || p.CheckpointFirstMS <= 0 || m.Kind == "broker" && p.PostgresWALBytes <= 0 {
				t.Errorf("%s paced: checkpoint first %.1f ms (%s), wal %d bytes", m.Name, p.CheckpointFirstMS, p.CheckpointFirstError, p.PostgresWALBytes)
			}
			inWindows := 0
			for _, w := range p.Windows {
				inWindows += w.Count
			}
			if inWindows != p.Latency.Count {
				t.Errorf("%s paced: %d requests in %d latency windows, %d timed", m.Name, inWindows, len(p.Windows), p.Latency.Count)
			}
			// Where the machine reports its stalls, the run read them and
			// the processes' CPU time; a span's stall is never more than
			// the whole run's.
			if _, err := os.Stat("/proc/pressure/io"); err == nil {
				if st, ws := p.Contention, p.WorstContention; st == nil || ws == nil || len(p.Windows) > 0 && p.Windows[0].Contention == nil ||
					ws.IOSomeMS > st.IOSomeMS+1 || ws.IOFullMS > st.IOFullMS+1 || ws.CPUSomeMS > st.CPUSomeMS+1 || st.IOFullMS > st.IOSomeMS+1 ||
					st.MachineCPUMS <= 0 || st.HarnessCPUMS <= 0 || st.InstanceCPUMS <= 0 || m.Kind == "broker" && !testing.Short() && st.PostgresCPUMS <= 0 {
					t.Errorf("%s paced: contention %+v, worst window's %+v", m.Name, st, ws)
				}
			}
		}
		// The machine's busy time covers every process measured, and the
		// audit log's broker runs made the machine's Postgres work (not
		// checked with -short: its few requests may cost Postgres less
		// than the 10 ms tick its CPU time is counted in).
		if m.Resources.MachineCPUSeconds < m.Resources.InstancesCPUSeconds || m.MachineBusy <= 0 || m.MachineBusy > 1.1 ||
			m.Kind == "broker" && !testing.Short() && m.PostgresCPUMicrosPerRequest <= 0 {
			t.Errorf("%s: machine %.2fs busy (%.2f of its cores), instances %.2fs, postgres %.0f µs/req: host figures missing",
				m.Name, m.Resources.MachineCPUSeconds, m.MachineBusy, m.Resources.InstancesCPUSeconds, m.PostgresCPUMicrosPerRequest)
		}
		// Each instance ran in a child process: its own CPU and peak memory.
		if len(m.Resources.PerInstance) != m.Instances || m.InstancesCPUMicrosPerRequest <= 0 || m.Resources.InstancePeakRSSBytes == 0 {
			t.Errorf("%s: %d instance figures for %d instances, %.0f µs/req, peak %d bytes: per-instance figures missing",
				m.Name, len(m.Resources.PerInstance), m.Instances, m.InstancesCPUMicrosPerRequest, m.Resources.InstancePeakRSSBytes)
		}
		// Brokers run with the product's pipeline.gc_percent, as clearance
		// serve applies it; the baseline with the runtime's own.
		if _, set := os.LookupEnv("GOGC"); !set {
			want := 100
			if m.Kind == "broker" {
				want = config.Defaults().Pipeline.GCPercent
			}
			for i, in := range m.Resources.PerInstance {
				if in.GCPercent != want {
					t.Errorf("%s: instance %d ran with gc percent %d, want %d", m.Name, i, in.GCPercent, want)
				}
			}
		}
	}
	if p := rep.Propagation; p == nil || len(p.PerInstance) != slices.Max(cfg.Instances) || p.Changes != cfg.Propagation || p.UnderLoad == 0 || p.PerInstance[0].P99 <= 0 {
		t.Errorf("propagation figures missing: %+v", p)
	}
	var js, table, svg bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back harness.Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || len(back.Runs) != len(rep.Runs) || len(back.Runs[0].Resources.PerInstance) != back.Runs[0].Instances {
		t.Errorf("JSON report does not read back: %v", err)
	}
	if err := rep.WriteTable(&table); err != nil || !strings.Contains(table.String(), "jetstream/broker-1") || !strings.Contains(table.String(), "registry change propagation") ||
		!strings.Contains(table.String(), "inst µs/r") || strings.Contains(table.String(), "in-process") {
		t.Errorf("table: %v\n%s", err, table.String())
	}
	if err := rep.WriteSVG(&svg); err != nil || !strings.HasPrefix(svg.String(), "<svg") || !strings.HasSuffix(svg.String(), "</svg>\n") {
		t.Errorf("svg: %v", err)
	}
	t.Logf("\n%s", table.String())
}

// checkProfiles: every instance's process wrote its CPU and allocation
// profiles (gzipped protocol buffers) under dir.
func checkProfiles(t *testing.T, dir string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.pprof"))
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil || len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
			t.Errorf("%s: not a gzipped profile (%d bytes, %v)", filepath.Base(f), len(b), err)
		}
		// <name>-<pid>.<kind>.pprof, the name "broker-1of2" or "baseline-1of2".
		base := strings.TrimSuffix(filepath.Base(f), ".pprof")
		who, _, _ := strings.Cut(base, "-")
		kinds[who+base[strings.LastIndex(base, "."):]]++
	}
	for _, k := range []string{"broker.cpu", "broker.allocs", "baseline.cpu", "baseline.allocs"} {
		if kinds[k] == 0 {
			t.Errorf("no %s profile among %d files (%v)", k, len(files), kinds)
		}
	}
	if kinds["broker.cpu"] != kinds["broker.allocs"] || kinds["baseline.cpu"] != kinds["baseline.allocs"] {
		t.Errorf("CPU and allocation profiles do not pair up: %v", kinds)
	}
}
