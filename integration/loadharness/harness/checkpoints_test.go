package harness

import (
	"testing"
	"time"
)

// TestCheckpointCounters: the counters move with a checkpoint the server
// makes (the one env.checkpoint asks for, as before each paced run), and
// never go back; the WAL position is read, and a checkpoint moves it on (it
// writes a record of its own). The server publishes its checkpointer's
// counters when it gets to it, and a CHECKPOINT that finds one running
// finishes that one (already counted as begun, its fsync time still to
// come), so either counter may be the one that moves, and not at once.
func TestCheckpointCounters(t *testing.T) {
	e := &env{cfg: Config{}.Defaults()}
	t.Cleanup(e.close)
	if err := e.postgres(t.Context()); err != nil {
		t.Fatal(err)
	}
	before, err := e.checkpoints(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if ms, err := e.checkpoint(t.Context()); err != nil || ms <= 0 {
		t.Fatalf("checkpoint: %.3f ms, %v", ms, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		after, err := e.checkpoints(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if before.wal <= 0 || after.wal <= before.wal {
			t.Fatalf("wal position %d before a checkpoint, %d after", before.wal, after.wal)
		}
		if after.began < before.began || after.syncMS < before.syncMS {
			t.Fatalf("counters %+v before a checkpoint, %+v after: they went back", before, after)
		}
		if after.began > before.began || after.syncMS > before.syncMS {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("counters %+v before a checkpoint, still %+v 10 s after", before, after)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
