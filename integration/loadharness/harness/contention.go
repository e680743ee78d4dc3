package harness

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// contentionEvery is how often a contentionSampler reads the machine: a
// tenth of a latency Window, so that a stall is laid at the window it falls
// in.
const contentionEvery = 10 * time.Millisecond

// times are the machine's cumulative stall and CPU times at one moment.
// From its pressure stall information: IOSome, the time in which at least
// one task waited for the disk (a commit's WAL flush, for one); IOFull, the
// time in which every task that could run waited for it at once; CPUSome,
// the time in which at least one task that could run waited for a core.
// From getrusage and /proc (CPU time, ticks of 10 ms but the harness's):
// Harness, the harness process (both NATS servers, the publisher, the
// receipt observer); Instances, the measured instances' processes;
// Postgres, the machine's PostgreSQL processes that ran when sampling began
// (the audit log's backends among them); Vault, the Vault dev server;
// Machine, the whole machine's busy time. From /proc/vmstat: Written, the
// bytes the kernel has written out of the page cache (nr_written: the
// writeback of every file's dirty pages, a WAL's own writes among them).
type times struct {
	IOSome, IOFull, CPUSome                      time.Duration
	Harness, Instances, Postgres, Vault, Machine time.Duration
	Written                                      int64
}

func (t times) minus(o times) times {
	return times{t.IOSome - o.IOSome, t.IOFull - o.IOFull, t.CPUSome - o.CPUSome,
		t.Harness - o.Harness, t.Instances - o.Instances, t.Postgres - o.Postgres, t.Vault - o.Vault, t.Machine - o.Machine,
		t.Written - o.Written}
}

// lerp is t plus f of the way to o.
func (t times) lerp(o times, f float64) times {
	at := func(a, b time.Duration) time.Duration { return a + time.Duration(f*float64(b-a)) }
	return times{at(t.IOSome, o.IOSome), at(t.IOFull, o.IOFull), at(t.CPUSome, o.CPUSome),
		at(t.Harness, o.Harness), at(t.Instances, o.Instances), at(t.Postgres, o.Postgres), at(t.Vault, o.Vault), at(t.Machine, o.Machine),
		t.Written + int64(f*float64(o.Written-t.Written))}
}

// readTimes reads the machine's times, with the CPU time of the processes
// in ps; ok is false where the machine has no pressure stall information
// (/proc/pressure, Linux 4.20+).
func readTimes(ps sampledPids) (t times, ok bool) {
	io, err := os.ReadFile("/proc/pressure/io")
	if err != nil {
		return t, false
	}
	cpu, err := os.ReadFile("/proc/pressure/cpu")
	if err != nil {
		return t, false
	}
	var okIO, okCPU bool
	t.IOSome, t.IOFull, okIO = parsePressure(string(io))
	t.CPUSome, _, okCPU = parsePressure(string(cpu))
	t.Harness, t.Machine = processCPU(), machineBusy()
	t.Written = pagesWritten()
	for _, pid := range ps.instances {
		t.Instances += childCPU(pid)
	}
	// A backend that exits moves its time to the postmaster's children's
	// (statCPU with children), so that the sum does not fall.
	pm := int(postmaster.Load())
	for _, pid := range ps.postgres {
		t.Postgres += procCPU(pid, pid == pm)
	}
	t.Vault = childCPU(ps.vault)
	return t, okIO && okCPU
}

// parsePressure reads the "total=" (µs) of a pressure file's "some" and
// "full" lines.
func parsePressure(text string) (some, full time.Duration, ok bool) {
	var seen int
	for line := range strings.Lines(text) {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		for _, f := range fields[1:] {
			v, found := strings.CutPrefix(f, "total=")
			if !found {
				continue
			}
			us, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return 0, 0, false
			}
			switch fields[0] {
			case "some":
				some, seen = time.Duration(us)*time.Microsecond, seen|1
			case "full":
				full, seen = time.Duration(us)*time.Microsecond, seen|2
			}
		}
	}
	return some, full, seen == 3
}

// pagesWritten is /proc/vmstat's nr_written in bytes (0 where it cannot
// be read).
func pagesWritten() int64 {
	b, err := os.ReadFile("/proc/vmstat")
	if err != nil {
		return 0
	}
	_, rest, ok := strings.Cut(string(b), "\nnr_written ")
	if !ok {
		return 0
	}
	v, _, _ := strings.Cut(rest, "\n")
	n, _ := strconv.ParseInt(v, 10, 64)
	return n * int64(os.Getpagesize())
}

// sampledPids are the processes whose CPU time a contentionSampler reads:
// the instances', the PostgreSQL processes' and Vault's (0 for none).
type sampledPids struct {
	instances, postgres []int
	vault               int
}

// timesSample is the machine's times at one moment.
type timesSample struct {
	at time.Time
	t  times
}

// contentionSampler records the machine's times every contentionEvery while
// a paced run is measured, so that its slow windows can be laid beside the
// disk's stalls, the waits for a core and who used the cores
// (BENCHMARKS.md, finding 60).
type contentionSampler struct {
	pids    sampledPids
	stop    chan struct{}
	wg      sync.WaitGroup
	samples []timesSample
}

// startContentionSampler starts sampling, with the CPU time of the
// instances' processes pids; it returns nil where the machine has no
// pressure stall information.
func startContentionSampler(instances []int, vault int) *contentionSampler {
	ps := sampledPids{instances: instances, postgres: postgresPids(), vault: vault}
	t0, ok := readTimes(ps)
	if !ok {
		return nil
	}
	s := &contentionSampler{pids: ps, stop: make(chan struct{}), samples: []timesSample{{time.Now(), t0}}}
	s.wg.Go(func() {
		tick := time.NewTicker(contentionEvery)
		defer tick.Stop()
		for {
			select {
			case <-s.stop:
				s.sample()
				return
			case <-tick.C:
				s.sample()
			}
		}
	})
	return s
}

func (s *contentionSampler) sample() {
	if t, ok := readTimes(s.pids); ok {
		s.samples = append(s.samples, timesSample{time.Now(), t})
	}
}

// end stops sampling and returns the samples (none for a nil sampler).
func (s *contentionSampler) end() []timesSample {
	if s == nil {
		return nil
	}
	close(s.stop)
	s.wg.Wait()
	return s.samples
}

// timesBetween returns the times between a and b, read off the samples
// (linear between two samples, clamped to the sampled span).
func timesBetween(samples []timesSample, a, b time.Time) times {
	if len(samples) == 0 || !b.After(a) {
		return times{}
	}
	return timesAt(samples, b).minus(timesAt(samples, a))
}

// timesAt interpolates the cumulative times at t.
func timesAt(samples []timesSample, t time.Time) times {
	if !t.After(samples[0].at) {
		return samples[0].t
	}
	for i := 1; i < len(samples); i++ {
		p, q := samples[i-1], samples[i]
		if t.After(q.at) {
			continue
		}
		span := q.at.Sub(p.at)
		if span <= 0 {
			return q.t
		}
		return p.t.lerp(q.t, float64(t.Sub(p.at))/float64(span))
	}
	return samples[len(samples)-1].t
}

// Contention is what the machine did over one span, in ms: the stalls of
// its pressure stall information and who used its cores (see times). Over
// 100 ms, Machine is at most 100 ms per core.
type Contention struct {
	IOSomeMS      float64 `json:"io_stall_some_ms"`
	IOFullMS      float64 `json:"io_stall_full_ms"`
	CPUSomeMS     float64 `json:"cpu_wait_some_ms"`
	HarnessCPUMS  float64 `json:"harness_cpu_ms"`
	InstanceCPUMS float64 `json:"instances_cpu_ms"`
	PostgresCPUMS float64 `json:"postgres_cpu_ms"`
	VaultCPUMS    float64 `json:"vault_cpu_ms"`
	MachineCPUMS  float64 `json:"machine_busy_ms"`
	// WrittenMiB is what the kernel wrote out of the page cache: a burst
	// of writeback shares the disk with the WAL's flushes.
	WrittenMiB float64 `json:"page_cache_written_mib"`
}

// String says c in a few words, for the progress line and the targets.
func (c *Contention) String() string {
	return fmt.Sprintf("disk stall %.0f ms (every task %.0f), written out %.0f MiB, core wait %.0f ms; cpu: harness %.0f, instances %.0f, postgres %.0f, vault %.0f, others %.0f ms",
		c.IOSomeMS, c.IOFullMS, c.WrittenMiB, c.CPUSomeMS, c.HarnessCPUMS, c.InstanceCPUMS, c.PostgresCPUMS, c.VaultCPUMS, c.OthersMS())
}

// OthersMS is the machine's busy time that none of the measured processes
// account for: the kernel's threads, any other process (at the 10 ms
// resolution of /proc's ticks, so a little under zero at times).
func (c *Contention) OthersMS() float64 {
	return c.MachineCPUMS - c.HarnessCPUMS - c.InstanceCPUMS - c.PostgresCPUMS - c.VaultCPUMS
}

func contentionOf(t times) *Contention {
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	return &Contention{ms(t.IOSome), ms(t.IOFull), ms(t.CPUSome), ms(t.Harness), ms(t.Instances), ms(t.Postgres), ms(t.Vault), ms(t.Machine),
		float64(t.Written) / (1 << 20)}
}

// addContention sets the contention of p's windows (which start at started)
// and of p: over the whole of [from, to), and over the span from the worst
// window's start until its median request was answered (the window's width
// plus its median latency), within [from, to). With no samples it sets
// none.
func addContention(p *Paced, samples []timesSample, started, from, to time.Time) {
	if len(samples) == 0 {
		return
	}
	p.Contention = contentionOf(timesBetween(samples, from, to))
	start := func(w Window) time.Time { return started.Add(time.Duration(w.StartMS * float64(time.Millisecond))) }
	for i := range p.Windows {
		a := start(p.Windows[i])
		p.Windows[i].Contention = contentionOf(timesBetween(samples, a, a.Add(windowWidth)))
	}
	if w := worstWindow(p.Windows); w.Count > 0 {
		// Within the run: on a loaded machine the last window's median
		// answer can come after the run's end was read, and the span
		// would then count stalls the run's own figures do not.
		a, b := start(w), start(w).Add(windowWidth+time.Duration(w.P50*float64(time.Millisecond)))
		if a.Before(from) {
			a = from
		}
		if b.After(to) {
			b = to
		}
		p.WorstContention = contentionOf(timesBetween(samples, a, b))
	}
}
