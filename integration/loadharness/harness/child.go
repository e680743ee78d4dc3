package harness

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/internal/gcpercent"
)

// childEnv names the environment variable that makes the harness's binary
// run one measured instance instead of the harness (see MaybeChild). It
// holds the instance's spec as JSON.
const childEnv = "CLEARANCE_LOADHARNESS_CHILD"

// Kinds of instance.
const (
	kindBroker    = "broker"
	kindForwarder = "forwarder"
)

// instanceSpec is everything one measured instance needs, in the harness's
// process or in a child process of its own.
type instanceSpec struct {
	Kind string `json:"kind"`
	// Name prefixes the child's standard error.
	Name string `json:"name"`
	// Sink is the forwarder's destination.
	Sink             string        `json:"sink,omitempty"`
	Ingest           string        `json:"ingest"`
	Region           string        `json:"region"`
	VaultAddr        string        `json:"vault_addr"`
	TokenFile        string        `json:"vault_token_file"`
	DSN              string        `json:"dsn"`
	PartnerURL       string        `json:"partner_url"`
	PartnerCA        string        `json:"partner_ca_file"`
	RegistryDir      string        `json:"registry_dir"`
	Concurrency      int           `json:"concurrency"`
	AckWait          time.Duration `json:"ack_wait"`
	CheckpointEvery  int64         `json:"checkpoint_every"`
	AuditAsyncCommit bool          `json:"audit_async_commit,omitempty"`
	AuditChains      int           `json:"audit_chains,omitempty"`
	// AuditGatherWindow is audit.Options.GatherWindow (0: its default).
	AuditGatherWindow time.Duration `json:"audit_gather_window,omitempty"`
	// GCPercent is a broker's pipeline.gc_percent (0: the runtime's own).
	GCPercent int `json:"gc_percent,omitempty"`
	// LogWarnings: the child logs broker warnings to its standard error.
	LogWarnings bool `json:"log_warnings,omitempty"`
	// ProfileDir, when set, is where the child writes a CPU profile and an
	// allocation profile of its whole life (profileFile).
	ProfileDir string `json:"profile_dir,omitempty"`
}

// profileFile is the profile of kind ("cpu", "allocs") that a child of spec
// with process id pid writes under spec.ProfileDir: its name, made a file
// name, and its pid, as in "broker-1of2-4242.cpu.pprof".
func profileFile(spec instanceSpec, pid int, kind string) string {
	name := strings.NewReplacer(" ", "-", "/", "of").Replace(spec.Name)
	if name == "" {
		name = spec.Kind
	}
	return filepath.Join(spec.ProfileDir, fmt.Sprintf("%s-%d.%s.pprof", name, pid, kind))
}

// startProfiles starts the child's CPU profile under spec.ProfileDir and
// returns what stops it and writes the allocation profile.
func startProfiles(spec instanceSpec) (stop func() error, err error) {
	f, err := os.Create(profileFile(spec, os.Getpid(), "cpu"))
	if err != nil {
		return nil, fmt.Errorf("harness child: cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("harness child: cpu profile: %w", err)
	}
	return func() error {
		pprof.StopCPUProfile()
		err := f.Close()
		a, aerr := os.Create(profileFile(spec, os.Getpid(), "allocs"))
		if aerr == nil {
			aerr = pprof.Lookup("allocs").WriteTo(a, 0)
			aerr = errors.Join(aerr, a.Close())
		}
		return errors.Join(err, aerr)
	}, nil
}

// spec returns the spec of an instance of kind in e.
func (e *env) spec(kind, sink, name string) instanceSpec {
	return instanceSpec{
		Kind: kind, Name: name, Sink: sink, Ingest: e.ingest, Region: e.region,
		VaultAddr: e.vault.Addr, TokenFile: e.tokenFile, DSN: e.dsn,
		PartnerURL: e.partner.URL, PartnerCA: e.partnerCA, RegistryDir: e.registryDir,
		Concurrency: e.cfg.Concurrency, AckWait: e.cfg.AckWait, CheckpointEvery: e.cfg.CheckpointEvery, GCPercent: e.cfg.GCPercent,
		AuditAsyncCommit: e.cfg.AuditAsyncCommit, AuditChains: e.cfg.AuditChains, AuditGatherWindow: e.cfg.AuditGatherWindow, ProfileDir: e.cfg.InstanceProfileDir,
		LogWarnings: e.cfg.Logger.Enabled(context.Background(), slog.LevelWarn),
	}
}

// childStats is one line a child writes: its state after starting
// ("ready"), on request ("mark", "stats") and after stopping ("final").
type childStats struct {
	Event string `json:"event"`
	Error string `json:"error,omitempty"`
	Pid   int    `json:"pid"`
	// CPUNanos is the child's user and system CPU time (getrusage).
	CPUNanos int64 `json:"cpu_ns"`
	// HWMBytes is the child's peak resident set (VmHWM); HWMReset says
	// whether the last "mark" reset it.
	HWMBytes    uint64    `json:"vm_hwm_bytes"`
	HWMReset    bool      `json:"vm_hwm_reset"`
	KeyTrips    uint64    `json:"vault_pipeline_round_trips"`
	SignerTrips uint64    `json:"vault_checkpoint_round_trips"`
	Stages      stageSums `json:"stage_sums,omitempty"`
	// GCPercent is the collector's percentage in force in the child.
	GCPercent int `json:"gc_percent"`
}

// MaybeChild runs one measured instance and exits the process when the
// process was started by the harness as a child (the binary re-executed
// with CLEARANCE_LOADHARNESS_CHILD set); otherwise it returns false at
// once. Programs and tests that run the harness call it first thing.
func MaybeChild() bool {
	spec, ok := os.LookupEnv(childEnv)
	if !ok {
		return false
	}
	os.Exit(runChild(spec))
	return true
}

// childInstance is a running instance in a child process.
type childInstance interface {
	stats(*childStats)
	stop(ctx context.Context)
}

type childBroker struct{ in *instance }

func (c childBroker) stats(st *childStats) {
	st.KeyTrips, st.SignerTrips = c.in.keys.RoundTrips(), c.in.signer.RoundTrips()
	st.Stages = stageSums{}
	st.Stages.add(c.in.reg)
}

func (c childBroker) stop(ctx context.Context) { c.in.close(ctx) }

type childForwarder struct{ p *forwarderInstance }

func (childForwarder) stats(*childStats)      {}
func (c childForwarder) stop(context.Context) { c.p.stop() }

// runChild is the child's main: it starts the instance of specJSON, writes
// a "ready" line to its standard output, answers "mark" (reset the peak
// resident set, then report) and "stats" (report) read from its standard
// input, and on the end of its input or SIGTERM stops the instance, writes
// a "final" line and returns 0.
func runChild(specJSON string) int {
	// Standard output carries the answers only; whatever else writes to it
	// goes to standard error.
	out := json.NewEncoder(os.Stdout)
	os.Stdout = os.Stderr
	signal.Ignore(os.Interrupt) // the harness stops its children itself
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	fail := func(err error) int {
		_ = out.Encode(childStats{Event: "error", Error: err.Error(), Pid: os.Getpid()})
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var spec instanceSpec
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		return fail(fmt.Errorf("harness child: spec: %w", err))
	}
	if spec.ProfileDir != "" {
		stop, err := startProfiles(spec)
		if err != nil {
			return fail(err)
		}
		defer func() {
			if err := stop(); err != nil {
				fmt.Fprintln(os.Stderr, "harness child: profiles:", err)
			}
		}()
	}
	logger := slog.New(slog.DiscardHandler)
	if spec.LogWarnings {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	ctx := context.Background()
	var inst childInstance
	switch spec.Kind {
	case kindBroker:
		// As clearance serve does (a GOGC or GOMEMLIMIT in the environment
		// wins; the memory limit is the default's, the cgroup's if any).
		gcpercent.Apply(spec.GCPercent)
		gcpercent.ApplyMemoryLimit(0)
		reg, err := agreements.Load(spec.RegistryDir)
		if err != nil {
			return fail(fmt.Errorf("harness child: registry: %w", err))
		}
		in, err := newInstance(ctx, spec, agreements.NewEngine(reg), logger)
		if err != nil {
			return fail(err)
		}
		if err := in.b.Start(ctx); err != nil {
			in.close(ctx)
			return fail(fmt.Errorf("harness: broker start: %w", err))
		}
		inst = childBroker{in}
	case kindForwarder:
		p, err := startForwarderInstance(ctx, spec)
		if err != nil {
			return fail(err)
		}
		inst = childForwarder{p}
	default:
		return fail(fmt.Errorf("harness child: kind %q", spec.Kind))
	}
	hwmReset := false
	report := func(event string) error {
		st := childStats{Event: event, Pid: os.Getpid(), CPUNanos: int64(processCPU()), HWMBytes: vmHWM(), HWMReset: hwmReset, GCPercent: gcpercent.Current()}
		inst.stats(&st)
		return out.Encode(st)
	}
	if err := report("ready"); err != nil {
		inst.stop(ctx)
		return 1
	}
	cmds := make(chan string)
	go func() {
		defer close(cmds)
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			cmds <- sc.Text()
		}
	}()
loop:
	for {
		select {
		case <-term:
			break loop
		case cmd, ok := <-cmds:
			if !ok {
				break loop
			}
			switch cmd {
			case "mark":
				hwmReset = resetHWM()
				_ = report("mark")
			case "stats":
				_ = report("stats")
			default:
				fmt.Fprintf(os.Stderr, "harness child: unknown command %q\n", cmd)
			}
		}
	}
	inst.stop(ctx)
	_ = report("final")
	return 0
}

// resetHWM resets the process's peak resident set (Linux 4.0+).
func resetHWM() bool { return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil }

// child is a child process running one instance, seen from the harness.
type child struct {
	name string
	cmd  *exec.Cmd
	in   *os.File // its standard input
	// lines are its standard output's lines; closed at its end.
	lines chan []byte
	done  chan struct{} // closed when it has exited
	err   error         // its exit status, once done
	mu    sync.Mutex    // one request at a time
}

// childTimeout bounds a child's start, an answer and its stop.
const childTimeout = 2 * time.Minute

// spawnChild starts the harness's binary as a child running spec and waits
// for its "ready" line. The child is killed when the harness dies
// (Pdeathsig) and stops by itself when its input ends.
func spawnChild(ctx context.Context, spec instanceSpec) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("harness: own executable: %w", err)
	}
	b, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("harness: child spec: %w", err)
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("harness: child pipe: %w", err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, fmt.Errorf("harness: child pipe: %w", err)
	}
	c := &child{name: spec.Name, in: inW, lines: make(chan []byte, 4), done: make(chan struct{})}
	c.cmd = exec.Command(exe)
	c.cmd.Env = append(os.Environ(), childEnv+"="+string(b))
	c.cmd.Stdin, c.cmd.Stdout = inR, outW
	c.cmd.Stderr = &prefixWriter{w: os.Stderr, prefix: "[" + spec.Name + "] "}
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err = c.cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return nil, fmt.Errorf("harness: start %s: %w", spec.Name, err)
	}
	c.cmd.Stderr.(*prefixWriter).setPrefix(fmt.Sprintf("[%s pid %d] ", spec.Name, c.cmd.Process.Pid))
	go func() {
		defer close(c.lines)
		defer outR.Close()
		r := bufio.NewReaderSize(outR, 64<<10)
		for {
			line, err := r.ReadBytes('\n')
			if len(bytes.TrimSpace(line)) > 0 {
				c.lines <- line
			}
			if err != nil {
				return
			}
		}
	}()
	go func() { c.err = c.cmd.Wait(); close(c.done) }()
	st, err := c.read(ctx)
	if err == nil && st.Event != "ready" {
		err = fmt.Errorf("harness: %s: %q, want ready", spec.Name, st.Event)
	}
	if err != nil {
		c.kill()
		return nil, err
	}
	return c, nil
}

// read returns the child's next line.
func (c *child) read(ctx context.Context) (childStats, error) {
	var st childStats
	select {
	case line, ok := <-c.lines:
		if !ok {
			<-c.done
			return st, fmt.Errorf("harness: %s exited: %v", c.name, c.err)
		}
		if err := json.Unmarshal(line, &st); err != nil {
			return st, fmt.Errorf("harness: %s: %q: %w", c.name, line, err)
		}
		if st.Event == "error" {
			return st, fmt.Errorf("harness: %s: %s", c.name, st.Error)
		}
		return st, nil
	case <-ctx.Done():
		return st, ctx.Err()
	case <-time.After(childTimeout):
		return st, fmt.Errorf("harness: %s: no answer after %s", c.name, childTimeout)
	}
}

// request sends cmd and returns the answer.
func (c *child) request(ctx context.Context, cmd string) (childStats, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := io.WriteString(c.in, cmd+"\n"); err != nil {
		return childStats{}, fmt.Errorf("harness: %s: %w", c.name, err)
	}
	return c.read(ctx)
}

// stop ends the child's input, so that it stops its instance and exits,
// and waits for it; it kills the child if it has not exited in time.
func (c *child) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.in.Close()
	timeout := time.After(childTimeout)
	for {
		select {
		case _, ok := <-c.lines:
			if ok {
				continue
			}
			select {
			case <-c.done:
			case <-timeout:
				c.kill()
			}
			if c.err != nil {
				fmt.Fprintf(os.Stderr, "harness: %s: %v\n", c.name, c.err)
			}
			return
		case <-timeout:
			c.kill()
			return
		}
	}
}

// kill kills the child and waits for it.
func (c *child) kill() {
	_ = c.cmd.Process.Kill()
	_ = c.in.Close()
	<-c.done
	for range c.lines {
	}
}

// children are the child processes of one system's instances.
type children struct{ list []*child }

// spawn starts one more child and waits until it is ready.
func (cs *children) spawn(ctx context.Context, spec instanceSpec) error {
	c, err := spawnChild(ctx, spec)
	if err != nil {
		return err
	}
	cs.list = append(cs.list, c)
	return nil
}

// ask sends cmd to every child and returns their answers in order.
func (cs *children) ask(ctx context.Context, cmd string) ([]childStats, error) {
	if cs == nil || len(cs.list) == 0 {
		return nil, nil
	}
	out := make([]childStats, len(cs.list))
	errs := make([]error, len(cs.list))
	var wg sync.WaitGroup
	for i, c := range cs.list {
		wg.Add(1)
		go func() { defer wg.Done(); out[i], errs[i] = c.request(ctx, cmd) }()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// pids returns the children's process ids (none for nil).
func (cs *children) pids() []int {
	if cs == nil {
		return nil
	}
	out := make([]int, 0, len(cs.list))
	for _, c := range cs.list {
		out = append(out, c.cmd.Process.Pid)
	}
	return out
}

// mark resets every child's peak resident set and returns their figures.
func (cs *children) mark(ctx context.Context) ([]childStats, error) { return cs.ask(ctx, "mark") }

// stats returns every child's figures.
func (cs *children) stats(ctx context.Context) ([]childStats, error) { return cs.ask(ctx, "stats") }

// stop stops every child at once and waits for them.
func (cs *children) stop() {
	var wg sync.WaitGroup
	for _, c := range cs.list {
		wg.Add(1)
		go func() { defer wg.Done(); c.stop() }()
	}
	wg.Wait()
	cs.list = nil
}

// prefixWriter writes whole lines to w, each after prefix.
type prefixWriter struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string
	buf    []byte
}

func (p *prefixWriter) setPrefix(prefix string) {
	p.mu.Lock()
	p.prefix = prefix
	p.mu.Unlock()
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			break
		}
		if _, err := fmt.Fprintf(p.w, "%s%s", p.prefix, p.buf[:i+1]); err != nil {
			return len(b), err
		}
		p.buf = p.buf[i+1:]
	}
	return len(b), nil
}
