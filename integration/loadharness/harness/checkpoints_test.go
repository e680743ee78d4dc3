package harness

import (
	"testing"
)

// TestCheckpointCounters: a checkpoint the server makes is counted, and its
// fsync time never goes back.
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
	if _, err := e.admin.ExecContext(t.Context(), "CHECKPOINT"); err != nil {
		t.Fatal(err)
	}
	after, err := e.checkpoints(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if after.began < before.began+1 || after.syncMS < before.syncMS {
		t.Errorf("counters %+v before a checkpoint, %+v after", before, after)
	}
}
