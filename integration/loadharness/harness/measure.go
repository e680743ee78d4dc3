package harness

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/uptrace/bun"
)

// tracker records, per request of one measurement, when it was published
// and when its outcome was observed (receipt, or arrival at the sink for
// the baseline). It counts duplicates and unknown ids.
type tracker struct {
	run   int
	sent  []int64
	done  []int64
	left  atomic.Int64
	dups  atomic.Int64
	alien atomic.Int64
	all   chan struct{}
	once  sync.Once

	mu     sync.Mutex
	status map[string]int
}

func newTracker(run, n int) *tracker {
	t := &tracker{run: run, sent: make([]int64, n), done: make([]int64, n), all: make(chan struct{}), status: map[string]int{}}
	t.left.Store(int64(n))
	if n == 0 {
		close(t.all)
	}
	return t
}

// sentAt records that request i was published now.
func (t *tracker) sentAt(i int, now int64) { atomic.StoreInt64(&t.sent[i], now) }

// finish records the outcome of the request with this id; concurrent-safe.
func (t *tracker) finish(id, status string) {
	i, ok := indexOf(id)
	prefix := "lh" + strconv.Itoa(t.run) + "-"
	if !ok || !strings.HasPrefix(id, prefix) || i >= len(t.done) {
		t.alien.Add(1)
		return
	}
	if !atomic.CompareAndSwapInt64(&t.done[i], 0, time.Now().UnixNano()) {
		t.dups.Add(1)
		return
	}
	t.mu.Lock()
	t.status[status]++
	t.mu.Unlock()
	if t.left.Add(-1) == 0 {
		t.once.Do(func() { close(t.all) })
	}
}

// wait blocks until every request is finished or ctx ends.
func (t *tracker) wait(ctx context.Context) error {
	select {
	case <-t.all:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("harness: %d of %d requests unaccounted for: %w", t.left.Load(), len(t.done), ctx.Err())
	}
}

// statuses returns a copy of the outcome counts.
func (t *tracker) statuses() map[string]int {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]int, len(t.status))
	for k, v := range t.status {
		out[k] = v
	}
	return out
}

// lastDone returns the latest finish time (unix ns).
func (t *tracker) lastDone() int64 {
	var last int64
	for i := range t.done {
		last = max(last, atomic.LoadInt64(&t.done[i]))
	}
	return last
}

// Latency is a latency distribution in milliseconds.
type Latency struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
}

// latency returns the distribution of done-sent over the finished requests
// from index from to index to (exclusive).
func (t *tracker) latency(from, to int) Latency {
	d := make([]int64, 0, to-from)
	for i := from; i < to; i++ {
		s, e := atomic.LoadInt64(&t.sent[i]), atomic.LoadInt64(&t.done[i])
		if s > 0 && e > 0 {
			d = append(d, e-s)
		}
	}
	if len(d) == 0 {
		return Latency{}
	}
	slices.Sort(d)
	q := func(p float64) float64 {
		k := int(p*float64(len(d))+0.5) - 1
		return float64(d[min(max(k, 0), len(d)-1)]) / 1e6
	}
	return Latency{Count: len(d), P50: q(0.5), P99: q(0.99), P999: q(0.999), Max: float64(d[len(d)-1]) / 1e6}
}

// Window is the latency of the requests published in one slice of a paced
// run: a stall (a collection, a slow commit) shows as windows whose median
// rises for their whole width, where the run's percentiles only show a
// tail.
type Window struct {
	// StartMS is the window's start after the first publish of the run.
	StartMS float64 `json:"start_ms"`
	Count   int     `json:"count"`
	P50     float64 `json:"p50_ms"`
	Max     float64 `json:"max_ms"`
	// Contention is what the machine did during the window's 100 ms of
	// wall time, where sampled (Paced.Contention).
	Contention *Contention `json:"contention,omitempty"`
}

// windowWidth is the width of a latency Window.
const windowWidth = 100 * time.Millisecond

// firstSent returns when the first of requests from to to (exclusive) was
// published (zero if none was).
func (t *tracker) firstSent(from, to int) time.Time {
	first := int64(0)
	for i := from; i < to; i++ {
		if s := atomic.LoadInt64(&t.sent[i]); s > 0 && (first == 0 || s < first) {
			first = s
		}
	}
	if first == 0 {
		return time.Time{}
	}
	return time.Unix(0, first)
}

// windows returns the latency of the finished requests from index from to
// index to (exclusive) in windows of width by publish time from start (their
// firstSent), the empty ones left out.
func (t *tracker) windows(from, to int, start time.Time, width time.Duration) []Window {
	first := start.UnixNano()
	byWin := map[int64][]int64{}
	for i := from; i < to; i++ {
		s, e := atomic.LoadInt64(&t.sent[i]), atomic.LoadInt64(&t.done[i])
		if s > 0 && e > 0 {
			k := (s - first) / int64(width)
			byWin[k] = append(byWin[k], e-s)
		}
	}
	out := make([]Window, 0, len(byWin))
	for _, k := range slices.Sorted(maps.Keys(byWin)) {
		d := byWin[k]
		slices.Sort(d)
		out = append(out, Window{StartMS: float64(k*int64(width)) / 1e6, Count: len(d),
			P50: float64(d[(len(d)-1)/2]) / 1e6, Max: float64(d[len(d)-1]) / 1e6})
	}
	return out
}

// worstWindow returns the window with the highest median (zero if none).
func worstWindow(ws []Window) Window {
	var w Window
	for _, x := range ws {
		if x.P50 > w.P50 {
			w = x
		}
	}
	return w
}

// usage is the resource use over one measurement: the harness process's
// CPU time (user + system: the embedded NATS servers and the publisher,
// and the measured instances when they run in-process), the Vault server's
// CPU time, the process's peak resident memory (VmHWM, reset at the start
// when the kernel allows), the Go runtime's peak mapped memory and, when
// the instances run in child processes, each instance's CPU time and peak
// resident memory.
type usage struct {
	cpu0, vault0 time.Duration
	// faults0 is the harness process's minor page faults at the start.
	faults0  int64
	vaultPid int
	// pg0 and busy0 are the CPU time of the machine's PostgreSQL processes
	// and of the whole machine at the start (see hostCPU).
	pg0, busy0 time.Duration
	start      time.Time
	hwmReset   bool
	peakGo     atomic.Uint64
	stop       chan struct{}
	wg         sync.WaitGroup
	procs      *children
	procs0     []childStats
}

// startUsage starts measuring; procs are the measured instances' child
// processes (none in-process), whose peak resident sets it resets.
func startUsage(ctx context.Context, vaultPid int, procs *children) (*usage, error) {
	u := &usage{cpu0: processCPU(), faults0: processFaults(), vaultPid: vaultPid, vault0: childCPU(vaultPid), stop: make(chan struct{}), procs: procs}
	u.pg0, u.busy0 = hostCPU()
	u.start = time.Now()
	var err error
	if u.procs0, err = procs.mark(ctx); err != nil {
		return nil, err
	}
	// Writing 5 to clear_refs resets the peak RSS (Linux 4.0+).
	u.hwmReset = resetHWM()
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			u.sample()
			select {
			case <-u.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return u, nil
}

var memSamples = []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}

func (u *usage) sample() {
	s := slices.Clone(memSamples)
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 || s[1].Value.Kind() != metrics.KindUint64 {
		return
	}
	v := s[0].Value.Uint64() - s[1].Value.Uint64()
	for {
		old := u.peakGo.Load()
		if v <= old || u.peakGo.CompareAndSwap(old, v) {
			return
		}
	}
}

// Resources are the figures a usage gives.
type Resources struct {
	// CPUSeconds is the harness process's CPU time: both embedded NATS
	// servers and the publisher, and the measured instances too when they
	// run in-process.
	CPUSeconds float64 `json:"process_cpu_seconds"`
	// VaultCPUSeconds is the Vault dev server's CPU time.
	VaultCPUSeconds float64 `json:"vault_cpu_seconds"`
	// PostgresCPUSeconds is the CPU time of every PostgreSQL process on
	// this machine (0 when the audit log's server runs elsewhere): the
	// audit log's backends, and the server's own writers and vacuum.
	PostgresCPUSeconds float64 `json:"postgres_cpu_seconds"`
	// MachineCPUSeconds is the CPU time the whole machine spent busy
	// (/proc/stat: every state but idle and iowait), whoever used it.
	MachineCPUSeconds float64 `json:"machine_cpu_seconds"`
	// WallSeconds is how long the measurement of these figures took.
	WallSeconds float64 `json:"wall_seconds"`
	// PeakRSSBytes is the harness process's peak resident set (VmHWM).
	PeakRSSBytes uint64 `json:"peak_rss_bytes"`
	// PeakRSSReset says whether VmHWM was reset at the start (else it is
	// the peak since the process started).
	PeakRSSReset bool `json:"peak_rss_reset"`
	// PeakGoBytes is the harness process's Go runtime peak memory in use
	// (mapped minus released), sampled every 50ms.
	PeakGoBytes uint64 `json:"peak_go_bytes"`
	// PageFaults is how many pages the harness process touched for the
	// first time (minor page faults, getrusage): the heap growing, or
	// taking back memory it had returned to the kernel. Each costs the
	// measurement CPU time (finding 61); -prefault keeps it near zero.
	PageFaults int64 `json:"process_page_faults"`

	// InstancesCPUSeconds is the CPU time of the measured instances, each
	// in a child process of its own, summed over them (0 in-process).
	InstancesCPUSeconds float64 `json:"instances_cpu_seconds"`
	// InstancePeakRSSBytes is the largest peak resident set (VmHWM) of
	// one instance's process (0 in-process).
	InstancePeakRSSBytes uint64 `json:"instance_peak_rss_bytes"`
	// InstancePeakRSSReset says whether every instance's VmHWM was reset
	// at the start (else it is the peak since the instance started).
	InstancePeakRSSReset bool `json:"instance_peak_rss_reset"`
	// PerInstance are each instance's figures, in start order.
	PerInstance []InstanceResources `json:"per_instance,omitempty"`
}

// InstanceResources are one instance's (child process's) figures.
type InstanceResources struct {
	CPUSeconds   float64 `json:"cpu_seconds"`
	PeakRSSBytes uint64  `json:"peak_rss_bytes"`
	// GCPercent is the instance's garbage collector percentage (GOGC).
	GCPercent int `json:"gc_percent"`
}

// add sums CPU times and keeps the larger peaks.
func (r *Resources) add(o Resources) {
	r.CPUSeconds += o.CPUSeconds
	r.VaultCPUSeconds += o.VaultCPUSeconds
	r.PostgresCPUSeconds += o.PostgresCPUSeconds
	r.MachineCPUSeconds += o.MachineCPUSeconds
	r.WallSeconds += o.WallSeconds
	r.PeakRSSBytes = max(r.PeakRSSBytes, o.PeakRSSBytes)
	r.PeakRSSReset = o.PeakRSSReset
	r.PeakGoBytes = max(r.PeakGoBytes, o.PeakGoBytes)
	r.PageFaults += o.PageFaults
	r.InstancesCPUSeconds += o.InstancesCPUSeconds
	r.InstancePeakRSSBytes = max(r.InstancePeakRSSBytes, o.InstancePeakRSSBytes)
	r.InstancePeakRSSReset = o.InstancePeakRSSReset
	for i, p := range o.PerInstance {
		if i == len(r.PerInstance) {
			r.PerInstance = append(r.PerInstance, InstanceResources{})
		}
		r.PerInstance[i].CPUSeconds += p.CPUSeconds
		r.PerInstance[i].PeakRSSBytes = max(r.PerInstance[i].PeakRSSBytes, p.PeakRSSBytes)
		r.PerInstance[i].GCPercent = p.GCPercent
	}
}

// end stops measuring and returns the figures.
func (u *usage) end(ctx context.Context) (Resources, error) {
	close(u.stop)
	u.wg.Wait()
	u.sample()
	procs1, err := u.procs.stats(ctx)
	pg1, busy1 := hostCPU()
	r := Resources{
		WallSeconds:        time.Since(u.start).Seconds(),
		CPUSeconds:         (processCPU() - u.cpu0).Seconds(),
		VaultCPUSeconds:    (childCPU(u.vaultPid) - u.vault0).Seconds(),
		PostgresCPUSeconds: (pg1 - u.pg0).Seconds(),
		MachineCPUSeconds:  (busy1 - u.busy0).Seconds(),
		PeakRSSBytes:       vmHWM(),
		PeakRSSReset:       u.hwmReset,
		PeakGoBytes:        u.peakGo.Load(),
		PageFaults:         processFaults() - u.faults0,
	}
	if err != nil {
		return r, err
	}
	if len(procs1) != len(u.procs0) {
		return r, fmt.Errorf("harness: %d instances at the end of a measurement, %d at its start", len(procs1), len(u.procs0))
	}
	r.InstancePeakRSSReset = len(procs1) > 0
	for i, p := range procs1 {
		if p.Pid != u.procs0[i].Pid {
			return r, fmt.Errorf("harness: instance %d is process %d at the end of a measurement, %d at its start", i, p.Pid, u.procs0[i].Pid)
		}
		ir := InstanceResources{CPUSeconds: time.Duration(p.CPUNanos - u.procs0[i].CPUNanos).Seconds(), PeakRSSBytes: p.HWMBytes, GCPercent: p.GCPercent}
		r.PerInstance = append(r.PerInstance, ir)
		r.InstancesCPUSeconds += ir.CPUSeconds
		r.InstancePeakRSSBytes = max(r.InstancePeakRSSBytes, ir.PeakRSSBytes)
		r.InstancePeakRSSReset = r.InstancePeakRSSReset && p.HWMReset
	}
	return r, nil
}

// processCPU returns the process's CPU time so far (user + system).
func processCPU() time.Duration {
	ru := selfRusage()
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// processFaults returns the process's minor page faults so far.
func processFaults() int64 { return selfRusage().Minflt }

// selfRusage returns the process's getrusage, zero if it fails.
func selfRusage() syscall.Rusage {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return syscall.Rusage{}
	}
	return ru
}

// childCPU reads utime+stime of pid from /proc (clock ticks of 1/100 s).
func childCPU(pid int) time.Duration { return procCPU(pid, false) }

// procCPU returns the CPU time of the process pid, with that of its
// children that exited when children is set (0 for none or an exited one).
func procCPU(pid int, children bool) time.Duration {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	return statCPU(b, children)
}

// statCPU returns utime+stime from the text of a /proc/<pid>/stat, and
// with children also cutime+cstime: the time of its children that exited
// and were waited for.
func statCPU(b []byte, children bool) time.Duration {
	f := statFields(b)
	if len(f) < 15 {
		return 0
	}
	var ticks int64
	last := 12
	if children {
		last = 14
	}
	for k := 11; k <= last; k++ {
		v, _ := strconv.ParseInt(f[k], 10, 64)
		ticks += v
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

// hostCPU returns the CPU time used so far by the processes named postgres
// on this machine, with the time of their children that exited (a backend
// that exits between two readings, as other users' connections do, moves
// its time to the postmaster's: without it the figure could fall), and
// the machine's busy time from the first line of /proc/stat (user, nice,
// system, irq, softirq and steal ticks).
func hostCPU() (pg, busy time.Duration) {
	eachPostgres(func(_ int, stat []byte) { pg += statCPU(stat, true) })
	return pg, machineBusy()
}

// postmaster is the pid of the postmaster of the harness's PostgreSQL
// server (0 while unknown, or where the server is not on this machine).
// Once known, only its processes are counted as Postgres's: another
// cluster on the machine, as a test suite's own private one, starts and
// stops during a run, and its time would make the figure jump or fall.
var postmaster atomic.Int64

// findPostmaster records the postmaster of db's server: the parent of the
// backend serving db, where that backend is a process of this machine.
func findPostmaster(ctx context.Context, db *bun.DB) {
	var pid int
	if err := db.QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		return
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil || !bytes.Contains(b, []byte("(postgres)")) {
		return
	}
	if ppid := statPPid(b); ppid > 0 {
		postmaster.Store(int64(ppid))
	}
}

// statPPid returns the parent pid from the text of a /proc/<pid>/stat.
func statPPid(b []byte) int {
	f := statFields(b)
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// statFields returns the fields of the text of a /proc/<pid>/stat after
// the command name (which may hold spaces), from the state on; nil if
// there are none.
func statFields(b []byte) []string {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 > len(b) {
		return nil
	}
	return strings.Fields(string(b[i+2:]))
}

// eachPostgres calls f with the pid and /proc/<pid>/stat of each process
// named postgres on this machine: the postmaster's and its children's,
// once findPostmaster knows it.
func eachPostgres(f func(pid int, stat []byte)) {
	pm := int(postmaster.Load())
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil || !bytes.Contains(b, []byte("(postgres)")) || pm != 0 && pid != pm && statPPid(b) != pm {
			continue
		}
		f(pid, b)
	}
}

// postgresPids returns the pids of the processes named postgres.
func postgresPids() []int {
	var pids []int
	eachPostgres(func(pid int, _ []byte) { pids = append(pids, pid) })
	return pids
}

// machineBusy returns the whole machine's busy time from /proc/stat: every
// state but idle and iowait, in clock ticks of 1/100 s.
func machineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return 0
	}
	var ticks int64
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		v, _ := strconv.ParseInt(f[i], 10, 64)
		ticks += v
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

// vmHWM returns the process's peak resident set.
func vmHWM() uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}
