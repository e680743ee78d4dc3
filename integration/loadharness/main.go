// Command loadharness measures Clearance against a bare forwarder on real
// NATS, Vault and Postgres and writes a JSON report, a text table and an
// SVG plot under results/<timestamp>/. See BENCHMARKS.md.
//
//	go run ./integration/loadharness                 # the full run (N=200,000)
//	go run ./integration/loadharness -n 20000 -sinks jetstream -in-process -cpuprofile cpu.out
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/clearance-broker/clearance/config"
	"github.com/clearance-broker/clearance/integration/loadharness/harness"
)

func main() {
	// The harness runs each measured instance as this program re-executed.
	harness.MaybeChild()
	os.Exit(run())
}

func run() int {
	var (
		cfg        harness.Config
		sinks      = flag.String("sinks", "jetstream,webhook", "sinks to measure: jetstream, webhook")
		instances  = flag.String("instances", "1,2", "broker instance counts to measure")
		rates      = flag.String("rates", "0.5,0.9", "fractions of the maximum rate for the paced latency runs")
		out        = flag.String("out", "results", "directory under which results/<timestamp>/ is written")
		cpuprofile = flag.String("cpuprofile", "", "write a CPU profile of the harness process to this file (with -in-process, the brokers' too)")
		memprofile = flag.String("memprofile", "", "write an allocation profile of the harness process at the end to this file (with -in-process, the brokers' too)")
		verbose    = flag.Bool("v", false, "log broker warnings to stderr")
	)
	flag.IntVar(&cfg.N, "n", 200_000, "requests per throughput measurement")
	flag.IntVar(&cfg.WebhookN, "webhook-n", 0, "requests per webhook throughput measurement (default n/4)")
	flag.BoolVar(&cfg.KeepAudit, "keep-audit", false, "keep the audit log from one measurement to the next (default: each starts on an empty Postgres schema)")
	flag.IntVar(&cfg.Rounds, "rounds", 4, "alternating baseline/broker rounds each throughput measurement is split into")
	flag.IntVar(&cfg.Size, "size", 1024, "request size in bytes")
	flag.IntVar(&cfg.GCPercent, "gc-percent", 0, "the broker instances' pipeline.gc_percent (0: the product default; negative: the Go runtime's own)")
	flag.IntVar(&cfg.Concurrency, "concurrency", config.Defaults().Pipeline.Concurrency, "workers per instance (broker and baseline); the product default")
	flag.DurationVar(&cfg.PacedDuration, "paced", 20*time.Second, "longest paced latency run")
	flag.BoolVar(&cfg.NoPaced, "no-paced", false, "skip the paced latency runs")
	flag.Int64Var(&cfg.Prefault, "prefault", 0, "bytes of heap the harness touches and frees before the first measurement, so that no measurement pays for the heap's first growth (0: 20 KB per request of -n, at most -harness-heap-limit; negative: none)")
	flag.DurationVar(&cfg.Warmup, "warmup", 2*time.Second, "publishing at the paced rate before the measured requests, whose latency is reported apart (negative: none)")
	flag.IntVar(&cfg.RegistryParties, "registry-parties", 0, "synthetic parties (each with an agreement) added to the registry")
	flag.StringVar(&cfg.RegistryDir, "registry", "", "registry directory (default examples/registry)")
	flag.StringVar(&cfg.NATSURL, "nats", "", "NATS URL to use instead of embedded servers (its CLEARANCE_TRANSFERS and CLEARANCE_REGION_INBOUND streams are purged and deleted)")
	flag.StringVar(&cfg.PostgresDSN, "postgres", "", "admin Postgres DSN (default $CLEARANCE_TEST_POSTGRES or the local test database)")
	flag.BoolVar(&cfg.NoPostgresCheckpoint, "no-pg-checkpoint", false, "do not ask Postgres for a checkpoint (CHECKPOINT) before each paced run")
	flag.Int64Var(&cfg.CheckpointEvery, "checkpoint-every", int64(config.Defaults().Audit.CheckpointEvery), "audit checkpoint interval in entries; the product default")
	flag.DurationVar(&cfg.AckWait, "ack-wait", 30*time.Second, "ack wait of the ingest consumer (broker and baseline)")
	flag.IntVar(&cfg.AuditChains, "audit-chains", 0, "the audit log's hash chains, as audit.chains (0: the product default, one)")
	flag.DurationVar(&cfg.AuditGatherWindow, "audit-gather-window", 0, "the audit writer's gather window, as audit.gather_window (0: the product default; negative: never wait)")
	flag.BoolVar(&cfg.AuditAsyncCommit, "audit-async-commit", false, "diagnostic: synchronous_commit=off for the audit log (not durable; shows the cost of WAL flushes)")
	flag.IntVar(&cfg.Propagation, "propagation", 50, "registry changes applied through the live registry under load, each timed until in force on every instance (0: not measured)")
	flag.StringVar(&cfg.InstanceProfileDir, "instance-profiles", "", "directory where each instance in a child process writes CPU and allocation profiles of its life (<name>-<pid>.cpu.pprof, .allocs.pprof)")
	flag.BoolVar(&cfg.InProcess, "in-process", false, "run the broker and baseline instances in the harness's process (no per-instance CPU and memory), not each in a child process")
	flag.Int64Var(&cfg.HarnessHeapLimit, "harness-heap-limit", 0, "heap size in bytes at which the harness process's own garbage collector runs (and before each measurement), rather than at the Go runtime's pace, whose collections stalled the embedded NATS servers (0: a third of the machine's memory, at most 8 GiB; negative: the runtime's pace)")
	flag.DurationVar(&cfg.Timeout, "timeout", 10*time.Minute, "longest wait for one measurement")
	flag.Parse()

	cfg.Sinks = splitList(*sinks)
	var err error
	if cfg.Instances, err = ints(*instances); err != nil {
		fmt.Fprintln(os.Stderr, "loadharness: -instances:", err)
		return 2
	}
	if cfg.Rates, err = floats(*rates); err != nil {
		fmt.Fprintln(os.Stderr, "loadharness: -rates:", err)
		return 2
	}
	cfg.Progress = os.Stderr
	if *verbose {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	if err := cfg.Defaults().Validate(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if cfg.InstanceProfileDir != "" {
		if err := os.MkdirAll(cfg.InstanceProfileDir, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, "loadharness:", err)
			return 1
		}
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "loadharness:", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "loadharness:", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, runErr := harness.Run(ctx, cfg)
	if runErr != nil {
		fmt.Fprintln(os.Stderr, "loadharness:", runErr)
		if rep == nil {
			return 1
		}
		fmt.Fprintln(os.Stderr, "loadharness: writing the partial report")
	}
	if *memprofile != "" {
		if f, err := os.Create(*memprofile); err == nil {
			_ = pprof.Lookup("allocs").WriteTo(f, 0)
			f.Close()
		}
	}
	dir := filepath.Join(*out, rep.Started.Format("20060102T150405Z"))
	if err := write(dir, rep); err != nil {
		fmt.Fprintln(os.Stderr, "loadharness:", err)
		return 1
	}
	_ = rep.WriteTable(os.Stdout)
	fmt.Printf("\nreport: %s\n", dir)
	if runErr != nil {
		return 1
	}
	if problems := rep.Check(); len(problems) > 0 {
		fmt.Fprintln(os.Stderr, "loadharness: the report is not sound:\n  "+strings.Join(problems, "\n  "))
		return 1
	}
	return 0
}

// write writes report.json, report.txt and report.svg into dir.
func write(dir string, rep *harness.Report) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, fn := range map[string]func(f *os.File) error{
		"report.json": func(f *os.File) error { return rep.WriteJSON(f) },
		"report.txt":  func(f *os.File) error { return rep.WriteTable(f) },
		"report.svg":  func(f *os.File) error { return rep.WriteSVG(f) },
	} {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		err = fn(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func ints(s string) ([]int, error) {
	var out []int
	for _, p := range splitList(s) {
		n, err := strconv.Atoi(p)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

func floats(s string) ([]float64, error) {
	out := []float64{}
	for _, p := range splitList(s) {
		f, err := strconv.ParseFloat(p, 64)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, nil
}
