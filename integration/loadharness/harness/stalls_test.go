package harness

import (
	"math"
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

func TestStalledBetweenInterpolates(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ms := time.Millisecond
	samples := []stallSample{
		{t0, stalls{}},
		{t0.Add(10 * ms), stalls{IOSome: 10 * ms, CPUSome: 2 * ms}},
		{t0.Add(20 * ms), stalls{IOSome: 10 * ms, IOFull: 4 * ms, CPUSome: 2 * ms}},
	}
	for _, c := range []struct {
		a, b time.Duration
		want stalls
	}{
		{0, 20 * ms, stalls{10 * ms, 4 * ms, 2 * ms}},
		{5 * ms, 15 * ms, stalls{5 * ms, 2 * ms, 1 * ms}},
		// Outside the sampled span: clamped, nothing is invented.
		{-time.Second, 0, stalls{}},
		{15 * ms, time.Second, stalls{0, 2 * ms, 0}},
		{10 * ms, 10 * ms, stalls{}},
	} {
		if got := stalledBetween(samples, t0.Add(c.a), t0.Add(c.b)); got != c.want {
			t.Errorf("[%v, %v): got %+v, want %+v", c.a, c.b, got, c.want)
		}
	}
	if got := stalledBetween(nil, t0, t0.Add(time.Second)); got != (stalls{}) {
		t.Errorf("no samples: %+v", got)
	}
}

// TestAddStalls lays a disk stall of 80 ms (every task) at the window that
// published the slow requests: the worst window's span holds it, the other
// windows nothing.
func TestAddStalls(t *testing.T) {
	started := time.Unix(2000, 0)
	var samples []stallSample
	var io, cpu time.Duration
	for i := 0; i <= 60; i++ { // 600 ms, every 10 ms
		at := started.Add(time.Duration(i) * 10 * time.Millisecond)
		if at.After(started.Add(300*time.Millisecond)) && !at.After(started.Add(380*time.Millisecond)) {
			io += 10 * time.Millisecond
		}
		if at.After(started.Add(500 * time.Millisecond)) {
			cpu += 5 * time.Millisecond
		}
		samples = append(samples, stallSample{at, stalls{IOSome: io, IOFull: io, CPUSome: cpu}})
	}
	p := Paced{Windows: []Window{
		{StartMS: 0, Count: 10, P50: 3},
		{StartMS: 200, Count: 10, P50: 150}, // published just before the stall, answered after it
		{StartMS: 300, Count: 10, P50: 60},
		{StartMS: 500, Count: 10, P50: 3},
	}}
	addStalls(&p, samples, started, started, started.Add(600*time.Millisecond))
	if s := p.Stalls; s == nil || !near(s.IOFullMS, 80) || !near(s.IOSomeMS, 80) || !near(s.CPUSomeMS, 50) {
		t.Fatalf("run: %+v", s)
	}
	// The worst window (200 ms, median 150 ms) spans 200-450 ms: all of
	// the disk stall, none of the cores'.
	if w := p.WorstStalls; w == nil || !near(w.IOFullMS, 80) || !near(w.IOSomeMS, 80) || w.CPUSomeMS != 0 {
		t.Errorf("worst window's span: %+v", w)
	}
	for i, want := range []Stalls{{}, {}, {80, 80, 0}, {0, 0, 50}} {
		if w := p.Windows[i]; w.Stalls == nil || !near(w.Stalls.IOSomeMS, want.IOSomeMS) || !near(w.Stalls.IOFullMS, want.IOFullMS) || !near(w.Stalls.CPUSomeMS, want.CPUSomeMS) {
			t.Errorf("window at %v ms: %+v, want %+v", w.StartMS, w.Stalls, want)
		}
	}

	var none Paced
	addStalls(&none, nil, started, started, started.Add(time.Second))
	if none.Stalls != nil || none.WorstStalls != nil {
		t.Error("no samples, yet stalls reported")
	}
}

// TestStallSamplerReads runs the sampler where the machine has pressure
// stall information.
func TestStallSamplerReads(t *testing.T) {
	for _, f := range []string{"/proc/pressure/io", "/proc/pressure/cpu"} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("no %s on this machine", f)
		}
	}
	s := startStallSampler()
	if s == nil {
		t.Fatal("/proc/pressure exists but was not read")
	}
	time.Sleep(5 * stallEvery)
	samples := s.end()
	if len(samples) < 3 {
		t.Fatalf("%d samples in %v", len(samples), 5*stallEvery)
	}
	for i := 1; i < len(samples); i++ {
		p, q := samples[i-1], samples[i]
		if q.s.IOSome < p.s.IOSome || q.s.IOFull < p.s.IOFull || q.s.CPUSome < p.s.CPUSome || q.at.Before(p.at) {
			t.Fatalf("sample %d goes back: %+v after %+v", i, q, p)
		}
	}
}

func near(got, want float64) bool { return math.Abs(got-want) < 0.01 }
