package harness

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// stallEvery is how often a stallSampler reads the machine's pressure stall
// information: a tenth of a latency Window, so that a stall is laid at the
// window it falls in.
const stallEvery = 10 * time.Millisecond

// stalls are the machine's cumulative stall times (Linux pressure stall
// information): IOSome, the time in which at least one task waited for the
// disk (a commit's WAL flush, for one); IOFull, the time in which every task
// that could run waited for it at once; CPUSome, the time in which at least
// one task that could run waited for a core.
type stalls struct {
	IOSome, IOFull, CPUSome time.Duration
}

func (s stalls) minus(o stalls) stalls {
	return stalls{s.IOSome - o.IOSome, s.IOFull - o.IOFull, s.CPUSome - o.CPUSome}
}

// lerp is s plus f of the way to o.
func (s stalls) lerp(o stalls, f float64) stalls {
	at := func(a, b time.Duration) time.Duration { return a + time.Duration(f*float64(b-a)) }
	return stalls{at(s.IOSome, o.IOSome), at(s.IOFull, o.IOFull), at(s.CPUSome, o.CPUSome)}
}

// readStalls reads /proc/pressure/io and /proc/pressure/cpu (Linux 4.20+
// with pressure stall information); ok is false where there are none.
func readStalls() (s stalls, ok bool) {
	io, err := os.ReadFile("/proc/pressure/io")
	if err != nil {
		return s, false
	}
	cpu, err := os.ReadFile("/proc/pressure/cpu")
	if err != nil {
		return s, false
	}
	var okIO, okCPU bool
	s.IOSome, s.IOFull, okIO = parsePressure(string(io))
	s.CPUSome, _, okCPU = parsePressure(string(cpu))
	return s, okIO && okCPU
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

// stallSample is the machine's cumulative stall times at one moment.
type stallSample struct {
	at time.Time
	s  stalls
}

// stallSampler records the machine's stall times every stallEvery while a
// paced run is measured, so that its slow windows can be laid beside the
// disk's and the cores' stalls (BENCHMARKS.md, finding 60).
type stallSampler struct {
	stop    chan struct{}
	wg      sync.WaitGroup
	samples []stallSample
}

// startStallSampler starts sampling; it returns nil where the machine has no
// pressure stall information.
func startStallSampler() *stallSampler {
	s0, ok := readStalls()
	if !ok {
		return nil
	}
	s := &stallSampler{stop: make(chan struct{}), samples: []stallSample{{time.Now(), s0}}}
	s.wg.Go(func() {
		tick := time.NewTicker(stallEvery)
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

func (s *stallSampler) sample() {
	if v, ok := readStalls(); ok {
		s.samples = append(s.samples, stallSample{time.Now(), v})
	}
}

// end stops sampling and returns the samples (none for a nil sampler).
func (s *stallSampler) end() []stallSample {
	if s == nil {
		return nil
	}
	close(s.stop)
	s.wg.Wait()
	return s.samples
}

// stalledBetween returns the stall times between a and b, read off the
// samples (linear between two samples, clamped to the sampled span).
func stalledBetween(samples []stallSample, a, b time.Time) stalls {
	if len(samples) == 0 || !b.After(a) {
		return stalls{}
	}
	return stallsAt(samples, b).minus(stallsAt(samples, a))
}

// stallsAt interpolates the cumulative stall times at t.
func stallsAt(samples []stallSample, t time.Time) stalls {
	if !t.After(samples[0].at) {
		return samples[0].s
	}
	for i := 1; i < len(samples); i++ {
		p, q := samples[i-1], samples[i]
		if t.After(q.at) {
			continue
		}
		span := q.at.Sub(p.at)
		if span <= 0 {
			return q.s
		}
		return p.s.lerp(q.s, float64(t.Sub(p.at))/float64(span))
	}
	return samples[len(samples)-1].s
}

// Stalls are a span's stall times in ms (see stalls).
type Stalls struct {
	IOSomeMS  float64 `json:"io_some_ms"`
	IOFullMS  float64 `json:"io_full_ms"`
	CPUSomeMS float64 `json:"cpu_some_ms"`
}

func stallsMS(s stalls) *Stalls {
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	return &Stalls{ms(s.IOSome), ms(s.IOFull), ms(s.CPUSome)}
}

// addStalls sets the stall times of p's windows (which start at started)
// and of p: over the whole of [from, to), and over the span from the worst
// window's start until its median request was answered (the window's width
// plus its median latency). With no samples it sets none.
func addStalls(p *Paced, samples []stallSample, started, from, to time.Time) {
	if len(samples) == 0 {
		return
	}
	p.Stalls = stallsMS(stalledBetween(samples, from, to))
	start := func(w Window) time.Time { return started.Add(time.Duration(w.StartMS * float64(time.Millisecond))) }
	for i := range p.Windows {
		a := start(p.Windows[i])
		p.Windows[i].Stalls = stallsMS(stalledBetween(samples, a, a.Add(windowWidth)))
	}
	if w := worstWindow(p.Windows); w.Count > 0 {
		a := start(w)
		p.WorstStalls = stallsMS(stalledBetween(samples, a, a.Add(windowWidth+time.Duration(w.P50*float64(time.Millisecond)))))
	}
}
