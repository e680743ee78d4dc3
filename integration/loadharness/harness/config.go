package harness

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"

	"github.com/clearance-broker/clearance/config"
)

// Sinks the harness delivers to.
const (
	// SinkJetStream delivers through the natsregion connector to a stream on
	// a second (region) NATS server.
	SinkJetStream = "jetstream"
	// SinkWebhook delivers through the webhook connector to an HTTPS partner.
	SinkWebhook = "webhook"
)

// Config is one harness run. Zero fields take the defaults of Defaults.
type Config struct {
	// N is how many requests each throughput measurement publishes
	// (default 200,000).
	N int
	// WebhookN is N for the webhook sink (default N/4: every webhook
	// delivery is an ECDH-ES encryption and a Vault signature batch).
	WebhookN int
	// Size is the size in bytes of one request (default 1024).
	Size int
	// Rounds splits each throughput measurement into alternating rounds of
	// baseline and broker, so that both see the same machine load (default
	// 4).
	Rounds int
	// Sinks to measure (default jetstream and webhook).
	Sinks []string
	// Instances are the broker instance counts to measure (default 1 and 2).
	Instances []int
	// Concurrency is the broker's (and the baseline's) workers per instance
	// (default: the broker's own default, config.Defaults().Pipeline.Concurrency).
	Concurrency int
	// GCPercent is the broker instances' pipeline.gc_percent (default: the
	// product's, config.Defaults().Pipeline.GCPercent; negative: the Go
	// runtime's own, as 0 in the configuration). The baseline keeps the
	// runtime's own: it is the bare client as an application runs it. Not
	// applied with InProcess.
	GCPercent int
	// Rates are the fractions of the measured maximum rate at which paced
	// latency runs publish (default 0.5 and 0.9; empty after defaults: none).
	Rates []float64
	// NoPaced skips the paced latency runs.
	NoPaced bool
	// KeepAudit keeps the audit log (and the rest of the harness's Postgres
	// schema) from one measurement to the next. By default every
	// measurement starts on an empty schema, so that 1 and 2 instances, and
	// the sinks, append to logs of the same size: on a small Postgres an
	// audit log of several hundred thousand entries makes every append
	// dearer (its indexes no longer fit in shared_buffers).
	KeepAudit bool
	// PacedDuration bounds one paced run (default 20s; at most N requests).
	PacedDuration time.Duration
	// Warmup is how long each paced run publishes at its rate before the
	// requests whose latency it measures (default 2s; negative: none). The
	// warm-up's requests are tracked like the others and their latency is
	// reported apart: an instance that has just started, or has been idle,
	// answers its first second of requests far slower than it goes on to.
	Warmup time.Duration
	// Prefault is how much memory the harness process's heap touches and
	// frees before the first measurement, when its collector runs only
	// near HarnessHeapLimit (default 20 KB per request of N, at most
	// HarnessHeapLimit; negative: none). On this machine each page a
	// process touches for the first time cost about 11 µs of its CPU, and
	// the heap grew to its size in the first measurement, the baseline's,
	// which it slowed by a quarter to a half (finding 61).
	Prefault int64
	// RegistryParties adds this many synthetic parties, each with its own
	// agreement, to examples/registry (default 0).
	RegistryParties int
	// RegistryDir is the registry to start from (default examples/registry
	// under the module root).
	RegistryDir string
	// NATSURL, when set, is used instead of embedded NATS servers (ingest
	// and region streams both on it).
	NATSURL string
	// PostgresDSN is the admin DSN; a unique schema is created in it and
	// dropped at the end (default $CLEARANCE_TEST_POSTGRES or
	// postgres://postgres@127.0.0.1:5432/test?sslmode=disable).
	PostgresDSN string
	// NoPostgresCheckpoint: the harness does not ask Postgres for a
	// checkpoint before each paced run. By default it does (CHECKPOINT, as
	// a superuser or a member of pg_checkpoint), so that the WAL the
	// measurements before it wrote does not make the server begin or end a
	// checkpoint in it, as the harness's own garbage is collected before
	// each measurement; a checkpoint the paced run's own WAL brings on
	// still falls in it, and is reported (BENCHMARKS.md, finding 66).
	NoPostgresCheckpoint bool
	// CheckpointEvery is the audit log's checkpoint interval in entries
	// (default: the product default, config.Defaults().Audit.CheckpointEvery).
	CheckpointEvery int64
	// AckWait is the ingest consumer's ack wait, for the broker and the
	// baseline alike (default 30s, the broker's default). The broker looks
	// a message up in the audit log before working on it when it has
	// waited in the stream longer than half of it.
	AckWait time.Duration
	// AuditAsyncCommit sets synchronous_commit=off on the audit log's
	// Postgres sessions. A diagnostic only: it shows how much of the
	// broker's cost is the WAL flush of each audit commit, and it weakens
	// the log's guarantee (a Postgres crash can lose the last commits).
	AuditAsyncCommit bool
	// AuditChains is the audit log's number of hash chains, the broker's
	// audit.chains (0: the product default, one for a new log).
	AuditChains int
	// AuditGatherWindow is the audit writer's gather window, the broker's
	// audit.gather_window (0: the product default; negative: never wait).
	AuditGatherWindow time.Duration
	// Propagation, when positive, is how many registry changes are applied
	// through policy.Live on one of the most broker instances measured
	// while they work through a load of the first sink, each timed until
	// it is in force on every instance (0: not measured).
	Propagation int
	// InProcess runs the measured instances (broker and baseline) in the
	// harness's own process, as the harness did before it ran each in a
	// child process of its own: CPU time and peak memory are then process
	// totals only. The propagation measurement is always in-process.
	InProcess bool
	// InstanceProfileDir, when set, has every instance in a child process
	// write CPU and allocation profiles of its whole life there (files
	// named by the instance and its pid). Not with InProcess, whose instances the harness
	// process's own profile covers.
	InstanceProfileDir string
	// HarnessHeapLimit is the size of the harness process's heap at which
	// its garbage collector runs, instead of the Go runtime's pace (a
	// collection each time the heap doubles): the process hosts the
	// embedded NATS servers, the publisher and the receipt subscriber of
	// every measurement, and a collection of its heap (70-85 MiB live
	// under load) stopped them for 40-80 ms every 0.7 s, in the latency
	// of the baseline and the broker alike. Each measurement also starts
	// with a collection. Not with InProcess, whose instances would run
	// with the same setting. 0: DefaultHarnessHeapLimit(); negative: the
	// runtime's pace.
	HarnessHeapLimit int64
	// Timeout bounds waiting for one measurement to finish (default 10m).
	Timeout time.Duration
	// Progress receives one line per finished measurement (nil: none).
	Progress io.Writer
	// Logger receives the brokers' logs (nil: discarded).
	Logger *slog.Logger
}

// DefaultHarnessHeapLimit returns Config.HarnessHeapLimit's default: a
// third of the machine's memory, at most 8 GiB (3 GiB when the memory is
// not known). The harness allocates 3-10 KiB per request published
// and observed (the embedded NATS servers' copies most of it), so 8 GiB
// holds the longest default measurement, 20 s paced at 90 % of a bare
// forwarder's 30,000 req/s, without a collection inside it.
func DefaultHarnessHeapLimit() int64 {
	if m := memTotal(); m > 0 {
		return int64(min(m/3, 8<<30))
	}
	return 3 << 30
}

// Defaults returns c with empty fields set.
func (c Config) Defaults() Config {
	if c.N <= 0 {
		c.N = 200_000
	}
	if c.WebhookN <= 0 {
		c.WebhookN = max(c.N/4, 1)
	}
	if c.Rounds <= 0 {
		c.Rounds = 4
	}
	if c.Size <= 0 {
		c.Size = 1024
	}
	if len(c.Sinks) == 0 {
		c.Sinks = []string{SinkJetStream, SinkWebhook}
	}
	if len(c.Instances) == 0 {
		c.Instances = []int{1, 2}
	}
	if c.Concurrency <= 0 {
		c.Concurrency = config.Defaults().Pipeline.Concurrency
	}
	switch {
	case c.GCPercent == 0:
		c.GCPercent = config.Defaults().Pipeline.GCPercent
	case c.GCPercent < 0:
		c.GCPercent = 0
	}
	if c.Rates == nil {
		c.Rates = []float64{0.5, 0.9}
	}
	if c.PacedDuration <= 0 {
		c.PacedDuration = 20 * time.Second
	}
	if c.Warmup == 0 {
		c.Warmup = 2 * time.Second
	}
	if c.CheckpointEvery <= 0 {
		c.CheckpointEvery = int64(config.Defaults().Audit.CheckpointEvery)
	}
	if c.AckWait <= 0 {
		c.AckWait = 30 * time.Second
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Minute
	}
	if c.HarnessHeapLimit == 0 {
		c.HarnessHeapLimit = DefaultHarnessHeapLimit()
	}
	switch {
	case c.Prefault == 0 && c.quietGC():
		c.Prefault = min(int64(c.N)*prefaultPerRequest, c.HarnessHeapLimit)
	case c.Prefault < 0 || !c.quietGC():
		c.Prefault = 0
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// prefaultPerRequest covers the harness heap's peak per request of N in
// the runs of 2026-11-30: at 15 KB the first measurement of a 60,000-request
// run still touched 110 MiB of new memory (process_new_memory_bytes), at
// 20 KB 17 MiB, as much as the measurements after it.
const prefaultPerRequest = 20 << 10

// quietGC reports whether the harness process's collector runs only near
// HarnessHeapLimit (after Defaults).
func (c Config) quietGC() bool { return c.HarnessHeapLimit > 0 && !c.InProcess }

// Validate reports every problem of c (after Defaults) at once.
func (c Config) Validate() error {
	var errs []error
	for _, s := range c.Sinks {
		if s != SinkJetStream && s != SinkWebhook {
			errs = append(errs, fmt.Errorf("harness: sinks: %q: want %s or %s", s, SinkJetStream, SinkWebhook))
		}
	}
	for _, n := range c.Instances {
		if n < 1 || n > 8 {
			errs = append(errs, fmt.Errorf("harness: instances: %d: want 1 to 8", n))
		}
	}
	if slices.ContainsFunc(c.Rates, func(r float64) bool { return r <= 0 || r > 1 }) {
		errs = append(errs, errors.New("harness: rates: fractions of the maximum rate, in (0, 1]"))
	}
	if c.Size > 1<<20 {
		errs = append(errs, errors.New("harness: size: at most 1 MiB"))
	}
	if c.Propagation < 0 || c.Propagation > 100_000 {
		errs = append(errs, errors.New("harness: propagation: 0 to 100,000 changes"))
	}
	if c.AuditChains < 0 {
		errs = append(errs, fmt.Errorf("harness: audit chains: %d: want 0 (the default) or more", c.AuditChains))
	}
	if c.RegistryParties < 0 || c.RegistryParties > 100_000 {
		errs = append(errs, errors.New("harness: registry parties: 0 to 100,000"))
	}
	if c.InstanceProfileDir != "" && c.InProcess {
		errs = append(errs, errors.New("harness: instance profiles: instances in child processes only (the harness process's own profile covers in-process instances)"))
	}
	return errors.Join(errs...)
}
