package harness

import (
	"errors"
	"os"
	"testing"
	"time"
)

func TestParsePressure(t *testing.T) {
	some, full, ok := parsePressure("some avg10=1.06 avg60=1.64 avg300=1.21 total=16709432\nfull avg10=0.33 avg60=0.65 avg300=0.65 total=9318108\n")
	if !ok || some != 16709432*time.Microsecond || full != 9318108*time.Microsecond {
		t.Fatalf("got %v %v %v", some, full, ok)
	}
	for _, bad := range []string{"", "some avg10=0.00 total=12\n", "some total=x\nfull total=1\n"} {
		if _, _, ok := parsePressure(bad); ok {
			t.Errorf("%q: read as complete", bad)
		}
	}
}

func TestTimesBetweenInterpolates(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ms := time.Millisecond
	samples := []timesSample{
		{t0, times{}},
		{t0.Add(10 * ms), times{IOSome: 10 * ms, CPUSome: 2 * ms, Machine: 20 * ms}},
		{t0.Add(20 * ms), times{IOSome: 10 * ms, IOFull: 4 * ms, CPUSome: 2 * ms, Harness: 6 * ms, Instances: 8 * ms, Postgres: 2 * ms, Vault: 2 * ms, Machine: 20 * ms, Written: 8 << 20}},
	}
	for _, c := range []struct {
		a, b time.Duration
		want times
	}{
		{0, 20 * ms, times{10 * ms, 4 * ms, 2 * ms, 6 * ms, 8 * ms, 2 * ms, 2 * ms, 20 * ms, 8 << 20}},
		{5 * ms, 15 * ms, times{5 * ms, 2 * ms, 1 * ms, 3 * ms, 4 * ms, 1 * ms, 1 * ms, 10 * ms, 4 << 20}},
		// Outside the sampled span: clamped, nothing is invented.
		{-time.Second, 0, times{}},
		{15 * ms, time.Second, times{0, 2 * ms, 0, 3 * ms, 4 * ms, 1 * ms, 1 * ms, 0, 4 << 20}},
		{10 * ms, 10 * ms, times{}},
	} {
		if got := timesBetween(samples, t0.Add(c.a), t0.Add(c.b)); got != c.want {
			t.Errorf("[%v, %v): got %+v, want %+v", c.a, c.b, got, c.want)
		}
	}
	if got := timesBetween(nil, t0, t0.Add(time.Second)); got != (times{}) {
		t.Errorf("no samples: %+v", got)
	}
}

// TestAddContention lays a disk stall of 80 ms (every task) at the window
// that published the slow requests: the worst window's span holds it, the
// other windows nothing; the cores' use falls in the windows that had it.
func TestAddContention(t *testing.T) {
	started := time.Unix(2000, 0)
	var samples []timesSample
	var cur times
	for i := 0; i <= 60; i++ { // 600 ms, every 10 ms
		at := started.Add(time.Duration(i) * 10 * time.Millisecond)
		if at.After(started.Add(300*time.Millisecond)) && !at.After(started.Add(380*time.Millisecond)) {
			cur.IOSome += 10 * time.Millisecond
			cur.IOFull += 10 * time.Millisecond
			cur.Written += 16 << 20
		}
		if at.After(started.Add(500 * time.Millisecond)) {
			cur.CPUSome += 5 * time.Millisecond
			cur.Harness += 10 * time.Millisecond
			cur.Postgres += 2 * time.Millisecond
			cur.Vault += 1 * time.Millisecond
			cur.Machine += 20 * time.Millisecond
		}
		samples = append(samples, timesSample{at, cur})
	}
	p := Paced{Windows: []Window{
		{StartMS: 0, Count: 10, P50: 3},
		{StartMS: 200, Count: 10, P50: 150}, // published just before the stall, answered after it
		{StartMS: 300, Count: 10, P50: 60},
		{StartMS: 500, Count: 10, P50: 3},
	}}
	addContention(&p, samples, started, started, started.Add(600*time.Millisecond))
	if c := p.Contention; c == nil || *c != (Contention{80, 80, 50, 100, 0, 20, 10, 200, 128}) || c.OthersMS() != 70 {
		t.Fatalf("run: %+v", c)
	}
	// The worst window (200 ms, median 150 ms) spans 200-450 ms: all of
	// the disk stall, none of the cores' use.
	if c := p.WorstContention; c == nil || *c != (Contention{IOSomeMS: 80, IOFullMS: 80, WrittenMiB: 128}) {
		t.Errorf("worst window's span: %+v", c)
	}
	for i, want := range []Contention{{}, {}, {IOSomeMS: 80, IOFullMS: 80, WrittenMiB: 128}, {CPUSomeMS: 50, HarnessCPUMS: 100, PostgresCPUMS: 20, VaultCPUMS: 10, MachineCPUMS: 200}} {
		if c := p.Windows[i].Contention; c == nil || *c != want {
			t.Errorf("window at %v ms: %+v, want %+v", p.Windows[i].StartMS, c, want)
		}
	}

	// A worst window whose median answer comes after the run's end (a
	// loaded machine): its span ends with the run, so it never counts more
	// than the run does.
	late := Paced{Windows: []Window{{StartMS: 500, Count: 10, P50: 300}}}
	addContention(&late, samples, started, started, started.Add(550*time.Millisecond))
	if c := late.WorstContention; c == nil || *c != (Contention{CPUSomeMS: 25, HarnessCPUMS: 50, PostgresCPUMS: 10, VaultCPUMS: 5, MachineCPUMS: 100}) {
		t.Errorf("worst window past the run's end: %+v", c)
	}

	var none Paced
	addContention(&none, nil, started, started, started.Add(time.Second))
	if none.Contention != nil || none.WorstContention != nil {
		t.Error("no samples, yet contention reported")
	}
}

// TestContentionSamplerReads runs the sampler where the machine has
// pressure stall information, with this process as the instance.
func TestContentionSamplerReads(t *testing.T) {
	for _, f := range []string{"/proc/pressure/io", "/proc/pressure/cpu"} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("no %s on this machine", f)
		}
	}
	s := startContentionSampler([]int{os.Getpid()}, 0)
	if s == nil {
		t.Fatal("/proc/pressure exists but was not read")
	}
	// Busy until this process has used 50 ms of CPU (five of /proc's
	// ticks), however loaded the machine is.
	for cpu0, end := processCPU(), time.Now().Add(10*time.Second); processCPU()-cpu0 < 50*time.Millisecond && time.Now().Before(end); {
	}
	// And writes a file out, so that the page cache's writeback counter
	// moves.
	f, err := os.CreateTemp(t.TempDir(), "written")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(f.Sync(), f.Close()); err != nil {
		t.Fatal(err)
	}
	samples := s.end()
	if len(samples) < 3 {
		t.Fatalf("%d samples in %v", len(samples), 5*contentionEvery)
	}
	if first, last := samples[0].t, samples[len(samples)-1].t; last.Harness <= first.Harness || last.Instances <= first.Instances || last.Machine <= first.Machine || last.Written < first.Written+1<<20 {
		t.Errorf("CPU times or the page cache's writeback did not move while busy and writing 1 MiB: %+v, then %+v", first, last)
	}
	for i := 1; i < len(samples); i++ {
		p, q := samples[i-1], samples[i]
		if q.t.IOSome < p.t.IOSome || q.t.IOFull < p.t.IOFull || q.t.CPUSome < p.t.CPUSome || q.t.Harness < p.t.Harness || q.t.Written < p.t.Written || q.at.Before(p.at) {
			t.Fatalf("sample %d goes back: %+v after %+v", i, q, p)
		}
	}
}
