package harness

import (
	"context"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/audit"
)

// TestStatCPU: a process's own time, and with its children that exited.
func TestStatCPU(t *testing.T) {
	// pid (comm with spaces) state ppid ... utime stime cutime cstime ...
	line := []byte("42 (post gres) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 20 11 20 0 1 0 100 1000 10 18446744073709551615")
	if got, want := statCPU(line, false), 100*time.Millisecond; got != want {
		t.Errorf("own time %v, want %v", got, want)
	}
	if got, want := statCPU(line, true), 410*time.Millisecond; got != want {
		t.Errorf("with children %v, want %v", got, want)
	}
	if got := statPPid(line); got != 1 {
		t.Errorf("parent %d, want 1", got)
	}
}

// TestPostgresOfTheHarnessOnly: once the harness knows its server's
// postmaster, Postgres's time is that of the postmaster and its children
// only, not of every process named postgres (another cluster, as a test
// suite's private one, comes and goes during a run).
func TestPostgresOfTheHarnessOnly(t *testing.T) {
	dsn := os.Getenv("CLEARANCE_TEST_POSTGRES")
	if dsn == "" {
		dsn = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	db, err := audit.OpenDB(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	prev := postmaster.Load()
	t.Cleanup(func() { postmaster.Store(prev) })
	postmaster.Store(0)
	findPostmaster(context.Background(), db)
	pm := int(postmaster.Load())
	if pm == 0 {
		t.Skip("the server's backend is not a process of this machine")
	}
	n := 0
	eachPostgres(func(pid int, stat []byte) {
		n++
		if pid != pm && statPPid(stat) != pm {
			t.Errorf("process %d (parent %d) counted, not of postmaster %d", pid, statPPid(stat), pm)
		}
	})
	if n < 2 {
		t.Errorf("%d processes counted; want the postmaster and its backend at least", n)
	}
}

// TestHostPostgresCPUNeverFalls: Postgres's CPU time, as the harness reads
// it, does not fall when backends that did work exit, as other users'
// connections do during a measurement.
func TestHostPostgresCPUNeverFalls(t *testing.T) {
	dsn := os.Getenv("CLEARANCE_TEST_POSTGRES")
	if dsn == "" {
		dsn = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	ctx := context.Background()
	for i := range 4 {
		db, err := audit.OpenDB(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		if err := db.QueryRowContext(ctx, "SELECT count(*) FROM generate_series(1, 3000000)").Scan(&n); err != nil {
			t.Fatal(err)
		}
		// Read while the backend, which did the work, is still there,
		// and again once it has exited.
		before, _ := hostCPU()
		_ = db.Close()
		time.Sleep(200 * time.Millisecond)
		after, _ := hostCPU()
		if after < before {
			t.Fatalf("round %d: Postgres CPU fell from %v to %v when a backend exited", i, before, after)
		}
	}
}

// TestProcessFaultsCountNewMemory: touching fresh pages shows as page
// faults, one a page (the kernel here backs anonymous memory with huge
// pages only when asked to).
func TestProcessFaultsCountNewMemory(t *testing.T) {
	const size = 32 << 20
	b, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Skipf("mmap: %v", err)
	}
	defer syscall.Munmap(b)
	page := os.Getpagesize()
	f0 := processFaults()
	for i := 0; i < size; i += page {
		b[i] = 1
	}
	if got, want := processFaults()-f0, int64(size/page); got < want*9/10 {
		t.Errorf("%d page faults for %d fresh pages", got, want)
	}
}

// TestNewMemoryNoted: a measurement whose harness process grew by more than
// newMemoryNote gets a note naming it; one that grew less does not.
func TestNewMemoryNoted(t *testing.T) {
	r := &Report{Settings: Settings{Prefault: 1 << 30}, Runs: []*Measurement{
		{Name: "jetstream/baseline-1", NewMemoryBytes: newMemoryNote + 1<<20},
		{Name: "jetstream/broker-1", NewMemoryBytes: newMemoryNote / 2},
	}}
	r.finish()
	var noted []string
	for _, n := range r.Notes {
		if strings.Contains(n, "Raise -prefault") {
			noted = append(noted, n)
		}
	}
	if len(noted) != 1 || !strings.Contains(noted[0], "65 MiB") || !strings.Contains(noted[0], "jetstream/baseline-1's") || !strings.Contains(noted[0], "(1024 MiB)") {
		t.Errorf("notes on new memory: %q", noted)
	}
}
