package harness

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"strings"
	"time"
)

// Report is the result of one harness run: how it was run, on what, and
// every measurement with its ratio to the baseline measured in the same run.
type Report struct {
	Started         time.Time      `json:"started"`
	Finished        time.Time      `json:"finished"`
	Machine         Machine        `json:"machine"`
	Settings        Settings       `json:"settings"`
	RegistryVersion string         `json:"registry_version"`
	RegistryParties int            `json:"registry_extra_parties"`
	Mix             []MixEntry     `json:"mix"`
	Runs            []*Measurement `json:"runs"`
	// Propagation is the registry change measurement (Config.Propagation).
	Propagation *Propagation `json:"propagation,omitempty"`
	Targets     []Target     `json:"targets"`
	Notes       []string     `json:"notes"`
}

// Machine describes where the run happened.
type Machine struct {
	CPUs       int    `json:"nproc"`
	CPUModel   string `json:"cpu_model"`
	LoadBefore string `json:"loadavg_before"`
	LoadAfter  string `json:"loadavg_after"`
	// CPUPressureBefore and CPUPressureAfter are /proc/pressure/cpu "some
	// avg60" (percent of time some task waited for a CPU) around the run.
	CPUPressureBefore string `json:"cpu_pressure_some_avg60_before"`
	CPUPressureAfter  string `json:"cpu_pressure_some_avg60_after"`
	GoVersion         string `json:"go_version"`
	GOMAXPROCS        int    `json:"gomaxprocs"`
	MemTotalMiB       uint64 `json:"mem_total_mib"`
}

// Settings are the run's parameters.
type Settings struct {
	N               int       `json:"n"`
	WebhookN        int       `json:"webhook_n"`
	Size            int       `json:"size_bytes"`
	Sinks           []string  `json:"sinks"`
	Instances       []int     `json:"instances"`
	Concurrency     int       `json:"concurrency"`
	Rates           []float64 `json:"paced_fractions"`
	PacedSeconds    float64   `json:"paced_seconds_max"`
	CheckpointEvery int64     `json:"audit_checkpoint_every"`
	AckWaitSeconds  float64   `json:"ack_wait_seconds"`
	EmbeddedNATS    bool      `json:"embedded_nats"`
	AuditAsync      bool      `json:"audit_synchronous_commit_off,omitempty"`
	AuditChains     int       `json:"audit_chains,omitempty"`
	Propagation     int       `json:"propagation_changes,omitempty"`
	// PostgresCheckpointFirst: the harness asked Postgres for a checkpoint
	// before each paced run (Config.NoPostgresCheckpoint).
	PostgresCheckpointFirst bool `json:"postgres_checkpoint_before_paced"`
	// GCPercent is the broker instances' pipeline.gc_percent (0: the Go
	// runtime's own).
	GCPercent int `json:"broker_gc_percent"`
	// Prefault is how many bytes of heap the harness touched and freed
	// before the first measurement (finding 61).
	Prefault int64 `json:"harness_prefault_bytes"`
	// InProcess: the measured instances ran in the harness's process, so
	// there are no per-instance figures.
	InProcess bool `json:"instances_in_process"`
	// HarnessHeapLimit: the harness process's collector ran only when its
	// heap neared this many bytes, and before each measurement (0: at the
	// Go runtime's pace).
	HarnessHeapLimit int64 `json:"harness_heap_limit_bytes"`
}

// MixEntry is one kind of request of a sink's mix.
type MixEntry struct {
	Sink    string   `json:"sink"`
	Name    string   `json:"name"`
	Class   Class    `json:"class"`
	Percent int      `json:"percent"`
	Reasons []string `json:"decision_reasons"`
}

// Measurement is one system (baseline or broker, k instances) on one sink.
type Measurement struct {
	Name      string        `json:"name"`
	Sink      string        `json:"sink"`
	Kind      string        `json:"kind"`
	Instances int           `json:"instances"`
	Size      int           `json:"size_bytes"`
	Requests  int           `json:"requests"`
	Expected  map[Class]int `json:"expected_classes"`
	// Outcomes counts receipts by status (broker) or arrivals (baseline).
	Outcomes   map[string]int `json:"outcomes"`
	Accounted  int            `json:"accounted"`
	Missing    int            `json:"missing"`
	Duplicates int            `json:"duplicates"`
	Foreign    int            `json:"foreign_ids"`

	Rounds          int     `json:"rounds"`
	Seconds         float64 `json:"seconds"`
	Throughput      float64 `json:"throughput_per_second"`
	RatioToBaseline float64 `json:"throughput_ratio_to_baseline,omitempty"`
	Paced           []Paced `json:"paced"`

	VaultTrips           uint64  `json:"vault_round_trips"`
	VaultCheckpointTrips uint64  `json:"vault_checkpoint_round_trips"`
	VaultTripsPer10k     float64 `json:"vault_round_trips_per_10k"`
	VaultAllTripsPer10k  float64 `json:"vault_round_trips_per_10k_with_checkpoints"`
	AuditEntries         int64   `json:"audit_entries"`
	AuditPerSecond       float64 `json:"audit_entries_per_second"`

	// Stages are the broker's mean stage times in ms and mean audit
	// group-commit size, from its own metrics (throughput run only).
	Stages map[string]float64 `json:"broker_stage_means,omitempty"`

	Resources Resources `json:"resources"`
	// CPUMicrosPerRequest is the harness process's CPU time per request
	// (the instances' too when they run in-process).
	CPUMicrosPerRequest float64 `json:"process_cpu_us_per_request"`
	// InstancesCPUMicrosPerRequest is the CPU time of the measured
	// instances' processes per request (all instances together; 0
	// in-process).
	InstancesCPUMicrosPerRequest float64 `json:"instances_cpu_us_per_request"`
	// PostgresCPUMicrosPerRequest is the CPU time of the machine's
	// PostgreSQL processes per request.
	PostgresCPUMicrosPerRequest float64 `json:"postgres_cpu_us_per_request"`
	// MachineCPUMicrosPerRequest is the busy time of the whole machine per
	// request, and MachineBusy the share of its cores that were busy over
	// the throughput run (1: every core all the time).
	MachineCPUMicrosPerRequest float64 `json:"machine_cpu_us_per_request"`
	MachineBusy                float64 `json:"machine_busy_fraction"`
	// NewMemoryBytes is the memory the harness process touched for the
	// first time during the throughput rounds (its page faults times the
	// page size): a measurement that grows the harness's heap pays for it
	// (finding 61), so finish notes any over newMemoryNote.
	NewMemoryBytes int64 `json:"process_new_memory_bytes"`
}

// Paced is a latency measurement at a fraction of the maximum rate.
type Paced struct {
	Fraction     float64 `json:"fraction"`
	TargetRate   float64 `json:"target_rate"`
	AchievedRate float64 `json:"achieved_publish_rate"`
	Requests     int     `json:"requests"`
	Latency      Latency `json:"latency"`
	// WarmupRequests were published at the same rate just before the
	// Requests, and WarmupLatency is theirs (not in Latency).
	WarmupRequests int     `json:"warmup_requests"`
	WarmupLatency  Latency `json:"warmup_latency"`
	Missing        int     `json:"missing"`
	Duplicates     int     `json:"duplicates"`
	// Resources over the paced run: peak memory at a steady rate, without
	// the backlog the throughput run builds up in the embedded NATS server.
	Resources Resources `json:"resources"`
	// Stages are the broker's mean stage times in ms and mean audit batch
	// size over the paced run (as Measurement.Stages).
	Stages map[string]float64 `json:"broker_stage_means,omitempty"`
	// StagesP99 bound the 99th percentile of the same figures over the
	// paced run: the upper bound of the histogram bucket that holds it
	// (the stage buckets double from 0.1 ms), so that a latency percentile
	// can be laid at the stage that makes it.
	StagesP99 map[string]float64 `json:"broker_stage_p99_at_most,omitempty"`
	// Windows is the latency of the measured requests by 100 ms of
	// publish time (finding 40 of BENCHMARKS.md found the harness's own
	// collections this way).
	Windows []Window `json:"latency_windows"`
	// Started is when the first measured request was published: the
	// windows' origin, to lay them beside a server's log.
	Started time.Time `json:"started"`
	// PostgresCheckpoints is how many checkpoints the Postgres server
	// began while the measured requests were published and answered, and
	// PostgresCheckpointSyncMS the time the ones that finished spent in
	// their final fsync of the data files (its log says when).
	PostgresCheckpoints      int64   `json:"postgres_checkpoints"`
	PostgresCheckpointSyncMS float64 `json:"postgres_checkpoint_sync_ms"`
	// PostgresWALBytes is the WAL the server wrote over the same time,
	// the audit log's and anything else it served.
	PostgresWALBytes int64 `json:"postgres_wal_bytes"`
	// CheckpointFirstMS is how long the checkpoint the harness asked the
	// server for before the warm-up took (Config.NoPostgresCheckpoint);
	// CheckpointFirstError why the server refused it, when it did (the
	// run goes on without it).
	CheckpointFirstMS    float64 `json:"postgres_checkpoint_first_ms,omitempty"`
	CheckpointFirstError string  `json:"postgres_checkpoint_first_error,omitempty"`
	// Contention is what the machine did while the measured requests
	// were published and answered, sampled every 10 ms: the time in which
	// a task waited for the disk (a commit's WAL flush is such a wait),
	// in which every task that could run waited for it, in which a task
	// that could run waited for a core (its pressure stall information),
	// and the CPU time of the harness, of the instances, of Postgres, of
	// Vault and of the whole machine. WorstContention is the same from the
	// start of the worst window (the highest median) until its median
	// request was answered; each window holds its own. Absent where the
	// machine has no /proc/pressure (finding 60).
	Contention      *Contention `json:"contention,omitempty"`
	WorstContention *Contention `json:"worst_window_contention,omitempty"`
}

// Target is one target of issue 8 and whether the run met it.
type Target struct {
	Name   string  `json:"name"`
	Want   string  `json:"want"`
	Got    float64 `json:"got"`
	Met    bool    `json:"met"`
	Detail string  `json:"detail,omitempty"`
}

func newReport(cfg Config) *Report {
	r := &Report{
		Started: time.Now().UTC(),
		Machine: machine(),
		Settings: Settings{N: cfg.N, WebhookN: cfg.WebhookN, Size: cfg.Size, Sinks: cfg.Sinks, Instances: cfg.Instances,
			Concurrency: cfg.Concurrency, Rates: cfg.Rates, PacedSeconds: cfg.PacedDuration.Seconds(),
			CheckpointEvery: cfg.CheckpointEvery, AckWaitSeconds: cfg.AckWait.Seconds(), EmbeddedNATS: cfg.NATSURL == "", AuditAsync: cfg.AuditAsyncCommit,
			AuditChains: cfg.AuditChains, GCPercent: cfg.GCPercent, Prefault: cfg.Prefault,
			Propagation: cfg.Propagation, InProcess: cfg.InProcess, PostgresCheckpointFirst: !cfg.NoPostgresCheckpoint},
	}
	if cfg.quietGC() {
		r.Settings.HarnessHeapLimit = cfg.HarnessHeapLimit
	}
	return r
}

func machine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), GoVersion: runtime.Version(), LoadBefore: loadavg(), CPUPressureBefore: cpuPressure()}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	m.MemTotalMiB = memTotal() >> 20
	return m
}

// memTotal returns the machine's memory in bytes (MemTotal), 0 if unknown.
func memTotal() uint64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	var kb uint64
	if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err != nil {
		return 0
	}
	return kb << 10
}

func cpuPressure() string {
	b, err := os.ReadFile("/proc/pressure/cpu")
	if err != nil {
		return ""
	}
	for _, f := range strings.Fields(string(b)) {
		if v, ok := strings.CutPrefix(f, "avg60="); ok {
			return v
		}
	}
	return ""
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

func (r *Report) addMix(sink string, w *workload, reasons map[string][]string) {
	for _, t := range w.templates {
		r.Mix = append(r.Mix, MixEntry{Sink: sink, Name: t.name, Class: t.class, Percent: t.weight, Reasons: reasons[t.name]})
	}
}

// add adds one round's bookkeeping from its tracker.
func (m *Measurement) add(t *tracker, n int, w *workload) {
	for k, v := range t.statuses() {
		m.Outcomes[k] += v
	}
	for k, v := range w.expected(n) {
		m.Expected[k] += v
	}
	missing := int(t.left.Load())
	m.Missing += missing
	m.Accounted += n - missing
	m.Duplicates += int(t.dups.Load())
	m.Foreign += int(t.alien.Load())
}

// summarise derives the rates from the rounds' totals.
func (m *Measurement) summarise() {
	if m.Seconds <= 0 {
		return
	}
	n := float64(m.Requests)
	m.Throughput = n / m.Seconds
	m.CPUMicrosPerRequest = m.Resources.CPUSeconds / n * 1e6
	m.InstancesCPUMicrosPerRequest = m.Resources.InstancesCPUSeconds / n * 1e6
	m.PostgresCPUMicrosPerRequest = m.Resources.PostgresCPUSeconds / n * 1e6
	m.MachineCPUMicrosPerRequest = m.Resources.MachineCPUSeconds / n * 1e6
	m.NewMemoryBytes = m.Resources.PageFaults * int64(os.Getpagesize())
	if m.Resources.WallSeconds > 0 {
		m.MachineBusy = m.Resources.MachineCPUSeconds / (m.Resources.WallSeconds * float64(runtime.NumCPU()))
	}
	m.VaultTripsPer10k = float64(m.VaultTrips) / n * 10000
	m.VaultAllTripsPer10k = float64(m.VaultTrips+m.VaultCheckpointTrips) / n * 10000
	m.AuditPerSecond = float64(m.AuditEntries) / m.Seconds
}

func (m *Measurement) ratio(base *Measurement) {
	if base != nil && base.Throughput > 0 {
		m.RatioToBaseline = m.Throughput / base.Throughput
	}
}

// find returns the measurement of sink, kind and k instances, or nil.
func (r *Report) find(sink, kind string, k int) *Measurement {
	for _, m := range r.Runs {
		if m.Sink == sink && m.Kind == kind && m.Instances == k {
			return m
		}
	}
	return nil
}

// pacedAt returns the paced run at fraction f, or nil.
func (m *Measurement) pacedAt(f float64) *Paced {
	for i := range m.Paced {
		if m.Paced[i].Fraction == f {
			return &m.Paced[i]
		}
	}
	return nil
}

// finish evaluates the targets of issue 8 and closes the report.
func (r *Report) finish() {
	r.Finished = time.Now().UTC()
	r.Machine.LoadAfter = loadavg()
	r.Machine.CPUPressureAfter = cpuPressure()
	if r.Settings.InProcess {
		r.Notes = append(r.Notes, "Broker and baseline instances ran in-process (one OS process, -in-process): CPU and peak memory are process totals including both embedded NATS servers and the publisher, so they are upper bounds per instance.")
	} else {
		r.Notes = append(r.Notes, "Each broker and baseline instance ran in a child process of its own: instance CPU is the children's user+system time over the measurement (summed over instances, per request), instance peak RSS the largest child's VmHWM (reset at the start of each measurement). Process figures are the harness process: both embedded NATS servers, the publisher and the receipt observer. The propagation measurement runs its instances in-process.")
	}
	r.Notes = append(r.Notes,
		"Throughput: consumers run first, then N requests are published as fast as the stream takes them (the publisher shares the machine); throughput is N over the time from the first publish to the last outcome (receipt for the broker, arrival at the destination for the baseline).",
		"Latency: paced publishing at a fraction of the measured maximum; from publish to the receipt (broker: after the delivery and its audit entry) or to arrival at the destination (baseline).",
		"The baseline forwards every request; the broker forwards only allowed ones (refused requests are audited and answered, not delivered).")
	for _, m := range r.Runs {
		if m.NewMemoryBytes > newMemoryNote {
			r.Notes = append(r.Notes, fmt.Sprintf("The harness process touched %d MiB of memory for the first time during %s's throughput rounds (page faults): its heap grew beyond what -prefault (%d MiB) had grown it to, and that measurement paid for the growth in CPU time (finding 61). Raise -prefault.",
				m.NewMemoryBytes>>20, m.Name, r.Settings.Prefault>>20))
		}
	}
	b1, r1 := r.find(SinkJetStream, "baseline", 1), r.find(SinkJetStream, "broker", 1)
	if b1 != nil && r1 != nil {
		r.Targets = append(r.Targets,
			Target{Name: "throughput vs baseline (jetstream, 1 instance)", Want: ">= 0.50 (aim 0.80)", Got: r1.RatioToBaseline, Met: r1.RatioToBaseline >= 0.5},
			Target{Name: "vault round trips per 10,000 messages (pipeline)", Want: "<= 1", Got: r1.VaultTripsPer10k, Met: r1.VaultTripsPer10k <= 1,
				Detail: fmt.Sprintf("%.1f with audit checkpoint signatures (one per %d entries)", r1.VaultAllTripsPer10k, r.Settings.CheckpointEvery)},
			peakTarget(r1))
		if p := r1.pacedAt(0.5); p != nil {
			t := Target{Name: "p99 latency at 50% of max rate (jetstream, 1 instance)", Want: "<= 20 ms", Got: p.Latency.P99, Met: p.Latency.P99 <= 20}
			var details []string
			switch {
			case p.CheckpointFirstError != "":
				details = append(details, "no checkpoint before the run ("+p.CheckpointFirstError+")")
			case r.Settings.PostgresCheckpointFirst:
				details = append(details, fmt.Sprintf("after a checkpoint asked for before the warm-up (%.0f ms)", p.CheckpointFirstMS))
			}
			if p.PostgresCheckpoints > 0 {
				details = append(details, fmt.Sprintf("Postgres began %d checkpoint(s) during the run (%d MiB of WAL in it)", p.PostgresCheckpoints, p.PostgresWALBytes>>20))
			}
			if p.PostgresCheckpointSyncMS > 0 {
				details = append(details, fmt.Sprintf("Postgres finished a checkpoint during the run, whose fsync of the data files took %.0f ms", p.PostgresCheckpointSyncMS))
			}
			if w := p.WorstContention; w != nil {
				details = append(details, "from the worst 100 ms window's start until its median answer "+w.String())
			}
			if bp := b1.pacedAt(0.5); bp != nil {
				d := fmt.Sprintf("the baseline's p99 at 50%% was %.1f ms", bp.Latency.P99)
				if w := bp.WorstContention; w != nil {
					d += " (its worst window's span: " + w.String() + ")"
				}
				details = append(details, d)
			}
			t.Detail = strings.Join(details, "; ")
			r.Targets = append(r.Targets, t)
		}
	}
	if r2 := r.find(SinkJetStream, "broker", 2); r1 != nil && r2 != nil && r1.Throughput > 0 {
		s := r2.Throughput / r1.Throughput
		t := Target{Name: "2 instances vs 1 (jetstream)", Want: ">= 1.6 where cores allow", Got: s, Met: s >= 1.6}
		if b2 := r.find(SinkJetStream, "baseline", 2); b2 != nil && b1 != nil && b1.Throughput > 0 {
			t.Detail = fmt.Sprintf("baseline scales %.2fx on the same machine", b2.Throughput/b1.Throughput)
		}
		if r.Machine.CPUs < 4 {
			t.Detail = strings.TrimPrefix(t.Detail+fmt.Sprintf("; %d cores shared by both instances, NATS, Vault and Postgres: the cores do not allow it", r.Machine.CPUs), "; ")
		}
		r.Targets = append(r.Targets, t)
	}
	if p := r.Propagation; p != nil {
		r.Targets = append(r.Targets, Target{Name: fmt.Sprintf("registry change in force on all %d instances, p99 ms", p.Instances), Want: "<= 1000 ms under load",
			Got: p.P99, Met: p.Met, Detail: fmt.Sprintf("%d changes on %s, %d under load, %d confirmed everywhere", p.Changes, p.Sink, p.UnderLoad, p.Confirmed)})
	}
	if wb, wr := r.find(SinkWebhook, "baseline", 1), r.find(SinkWebhook, "broker", 1); wb != nil && wr != nil {
		r.Targets = append(r.Targets, Target{Name: "webhook throughput vs HTTP baseline (1 instance)", Want: "reported (same 50% bar)", Got: wr.RatioToBaseline, Met: wr.RatioToBaseline >= 0.5})
	}
}

// peakTarget judges peak memory at 50% of the maximum rate when it was
// measured (steady state), else over the throughput run.
// A broker instance in a child process of its own is judged on its own
// peak; in-process, on the process total.
func peakTarget(m *Measurement) Target {
	if m.Resources.InstancePeakRSSBytes > 0 {
		rss, where := m.Resources.InstancePeakRSSBytes, "over the throughput run"
		if p := m.pacedAt(0.5); p != nil && p.Resources.InstancePeakRSSBytes > 0 {
			rss, where = max(rss, p.Resources.InstancePeakRSSBytes), fmt.Sprintf("largest of the throughput run (%d MiB) and the run at 50%% of max rate (%d MiB)",
				m.Resources.InstancePeakRSSBytes>>20, p.Resources.InstancePeakRSSBytes>>20)
		}
		return Target{Name: "peak memory per instance (own VmHWM, 1 instance)", Want: "<= 256 MiB", Got: float64(rss >> 20), Met: rss <= 256<<20,
			Detail: "the broker's own process, " + where}
	}
	rss, where := m.Resources.PeakRSSBytes, "throughput run, with its backlog in the embedded NATS server"
	if p := m.pacedAt(0.5); p != nil && p.Resources.PeakRSSBytes > 0 {
		rss, where = p.Resources.PeakRSSBytes, fmt.Sprintf("at 50%% of max rate; %d MiB over the throughput run with its backlog", m.Resources.PeakRSSBytes>>20)
	}
	return Target{Name: "peak memory per instance (process peak RSS, 1 instance)", Want: "<= 256 MiB", Got: float64(rss >> 20), Met: rss <= 256<<20,
		Detail: "in-process: process total with both NATS servers and the publisher, " + where}
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes a short text table of the measurements and targets.
func (r *Report) WriteTable(w io.Writer) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "Clearance load harness  %s  nproc %d  %s  load %s -> %s  cpu pressure %s%% -> %s%%\n", r.Started.Format(time.RFC3339), r.Machine.CPUs, r.Machine.CPUModel, r.Machine.LoadBefore, r.Machine.LoadAfter, r.Machine.CPUPressureBefore, r.Machine.CPUPressureAfter)
	fmt.Fprintf(bw, "N %d (webhook %d), %d B requests, concurrency %d, registry +%d parties", r.Settings.N, r.Settings.WebhookN, r.Settings.Size, r.Settings.Concurrency, r.RegistryParties)
	if r.Settings.AuditChains > 0 {
		fmt.Fprintf(bw, ", audit chains %d", r.Settings.AuditChains)
	}
	if r.Settings.GCPercent > 0 {
		fmt.Fprintf(bw, ", broker gc_percent %d", r.Settings.GCPercent)
	} else {
		fmt.Fprint(bw, ", broker gc_percent: the Go runtime's")
	}
	if r.Settings.AuditAsync {
		fmt.Fprint(bw, ", AUDIT synchronous_commit=off (diagnostic, not durable)")
	}
	fmt.Fprint(bw, "\n\n")
	if r.Settings.InProcess {
		fmt.Fprint(bw, "instances ran in-process: no per-instance figures; process figures include them\n\n")
	}
	fmt.Fprintf(bw, "%-22s %9s %6s %23s %23s %9s %8s %9s %8s %9s %8s %7s %9s %5s\n", "run", "req/s", "ratio", "p50/p99/p99.9 @50% ms", "p50/p99/p99.9 @90% ms", "vault/10k", "audit/s",
		"inst µs/r", "inst MiB", "proc µs/r", "proc MiB", "pg µs/r", "host µs/r", "busy")
	for _, m := range r.Runs {
		lat := func(f float64) string {
			if p := m.pacedAt(f); p != nil {
				return fmt.Sprintf("%.1f/%.1f/%.1f", p.Latency.P50, p.Latency.P99, p.Latency.P999)
			}
			return "-"
		}
		ratio := "-"
		if m.RatioToBaseline > 0 {
			ratio = fmt.Sprintf("%.2f", m.RatioToBaseline)
		}
		instCPU, instRSS := "-", "-"
		if len(m.Resources.PerInstance) > 0 {
			instCPU, instRSS = fmt.Sprintf("%.0f", m.InstancesCPUMicrosPerRequest), fmt.Sprintf("%d", m.Resources.InstancePeakRSSBytes>>20)
		}
		fmt.Fprintf(bw, "%-22s %9.0f %6s %23s %23s %9.2f %8.0f %9s %8s %9.0f %8d %7.0f %9.0f %4.0f%%\n", m.Name, m.Throughput, ratio, lat(0.5), lat(0.9),
			m.VaultTripsPer10k, m.AuditPerSecond, instCPU, instRSS, m.CPUMicrosPerRequest, m.Resources.PeakRSSBytes>>20,
			m.PostgresCPUMicrosPerRequest, m.MachineCPUMicrosPerRequest, m.MachineBusy*100)
	}
	if p := r.Propagation; p != nil {
		fmt.Fprintf(bw, "\nregistry change propagation (%s, %d instances, %d changes, %d under load):\n", p.Sink, p.Instances, p.Changes, p.UnderLoad)
		for i, l := range p.PerInstance {
			fmt.Fprintf(bw, "  instance %d: p50 %.1f ms  p99 %.1f ms  max %.1f ms  (%d in force)\n", i, l.P50, l.P99, l.Max, l.Count)
		}
	}
	fmt.Fprintln(bw)
	for _, t := range r.Targets {
		met := "NOT MET"
		if t.Met {
			met = "met"
		}
		fmt.Fprintf(bw, "%-58s want %-26s got %8.2f  %s", t.Name, t.Want, t.Got, met)
		if t.Detail != "" {
			fmt.Fprintf(bw, "  (%s)", t.Detail)
		}
		fmt.Fprintln(bw)
	}
	return bw.Flush()
}

// Check reports the problems that make a report unusable: a request not
// accounted for, a duplicate outcome, or broker outcomes that disagree with
// the mix (delivered must equal allowed plus minimised, denied refused).
func (r *Report) Check() []string {
	var out []string
	for _, m := range r.Runs {
		if m.Missing != 0 || m.Accounted != m.Requests {
			out = append(out, fmt.Sprintf("%s: %d of %d requests accounted for", m.Name, m.Accounted, m.Requests))
		}
		if m.Duplicates != 0 {
			out = append(out, fmt.Sprintf("%s: %d duplicate outcomes", m.Name, m.Duplicates))
		}
		if m.Throughput <= 0 {
			out = append(out, fmt.Sprintf("%s: no throughput", m.Name))
		}
		if m.Kind == "broker" {
			want := map[string]int{"delivered": m.Expected[ClassAllowed] + m.Expected[ClassMinimised], "denied": m.Expected[ClassRefused]}
			keys := make([]string, 0, len(m.Outcomes))
			for k := range m.Outcomes {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				if _, ok := want[k]; !ok {
					out = append(out, fmt.Sprintf("%s: %d requests %s", m.Name, m.Outcomes[k], k))
				}
			}
			for k, n := range want {
				if m.Outcomes[k] != n {
					out = append(out, fmt.Sprintf("%s: %d %s, want %d", m.Name, m.Outcomes[k], k, n))
				}
			}
			if m.AuditEntries < int64(m.Requests) {
				out = append(out, fmt.Sprintf("%s: %d audit entries for %d requests", m.Name, m.AuditEntries, m.Requests))
			}
		}
		if !r.Settings.InProcess {
			out = append(out, instanceProblems(m.Name, m.Instances, m.Resources)...)
		}
		for _, p := range m.Paced {
			if p.Missing != 0 || p.Latency.Count != p.Requests {
				out = append(out, fmt.Sprintf("%s at %.0f%%: %d of %d requests measured", m.Name, p.Fraction*100, p.Latency.Count, p.Requests))
			}
			if !r.Settings.InProcess {
				out = append(out, instanceProblems(fmt.Sprintf("%s at %.0f%%", m.Name, p.Fraction*100), m.Instances, p.Resources)...)
			}
		}
	}
	if p := r.Propagation; p != nil {
		if p.Changes != r.Settings.Propagation {
			out = append(out, fmt.Sprintf("propagation: %d of %d changes applied", p.Changes, r.Settings.Propagation))
		}
		for i, l := range p.PerInstance {
			if l.Count != p.Changes {
				out = append(out, fmt.Sprintf("propagation: instance %d put %d of %d changes in force", i, l.Count, p.Changes))
			}
		}
	}
	return out
}

// instanceProblems reports per-instance figures missing from res, a
// measurement of k instances each in a child process of its own.
func instanceProblems(name string, k int, res Resources) []string {
	var out []string
	if len(res.PerInstance) != k {
		out = append(out, fmt.Sprintf("%s: figures of %d of %d instances", name, len(res.PerInstance), k))
	}
	for i, p := range res.PerInstance {
		if p.CPUSeconds <= 0 || p.PeakRSSBytes == 0 {
			out = append(out, fmt.Sprintf("%s: instance %d: cpu %.3fs, peak rss %d bytes: figures missing", name, i, p.CPUSeconds, p.PeakRSSBytes))
		}
	}
	if res.InstancesCPUSeconds <= 0 || res.InstancePeakRSSBytes == 0 {
		out = append(out, fmt.Sprintf("%s: instances cpu %.3fs, peak rss %d bytes: figures missing", name, res.InstancesCPUSeconds, res.InstancePeakRSSBytes))
	}
	return out
}

// newMemoryNote is the new memory of the harness process in one
// measurement's throughput rounds above which the report notes it: about
// 0.2 s of CPU on the machine of finding 61 (11 µs a page).
const newMemoryNote = 64 << 20
