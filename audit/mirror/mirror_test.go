package mirror

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/broker/brokertest"
)

// testJetStream returns JetStream on an embedded server of the test's own,
// with the default mirror stream created when withStream is set.
func testJetStream(t *testing.T, withStream bool) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(brokertest.Connect(t, brokertest.StartNATS(t)))
	if err != nil {
		t.Fatal(err)
	}
	if withStream {
		if err := EnsureStream(t.Context(), js, DefaultStream, 1); err != nil {
			t.Fatal(err)
		}
	}
	return js
}

// TestMirrorRoundTrip mirrors the checkpoints of a log as it is written,
// reads them back, and verifies the log against them; a checkpoint
// published twice is kept once, and the stream refuses to delete or purge.
func TestMirrorRoundTrip(t *testing.T) {
	ctx := t.Context()
	js := testJetStream(t, true)
	keys := brokertest.DevKeys(t, filepath.Join(t.TempDir(), "ring.json"))
	pub := NewPublisher(js, DefaultStream, nil)
	var mirrored []string
	log, _ := brokertest.OpenAudit(t, brokertest.SQLiteDSN(t), keys, func(o *audit.Options) {
		o.CheckpointEvery = 1 << 30
		o.OnCheckpoint = func(jws []string) {
			mirrored = append(mirrored, jws...)
			pub.Checkpoints(jws)
		}
	})
	for i := range 3 {
		for j := range 4 {
			e := &audit.Entry{Event: audit.EventDecided, RequestID: "req-" + string(rune('a'+i)) + string(rune('a'+j)), Decision: "deny"}
			if _, err := log.Append(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := log.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
	}
	pub.Checkpoints(mirrored[:1]) // again: kept once
	if err := pub.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if pub.Sent() != 4 || pub.Failed() != 0 {
		t.Fatalf("sent %d, failed %d; want 4 and 0", pub.Sent(), pub.Failed())
	}
	got, err := Read(ctx, js, DefaultStream)
	if err != nil || len(got) != 3 {
		t.Fatalf("read %d copies, %v; want 3", len(got), err)
	}
	for i := range got {
		if got[i] != mirrored[i] {
			t.Fatalf("copy %d differs from the checkpoint", i)
		}
	}
	jwks, err := keys.JWKS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	v, err := audit.NewJWKSVerifier(jwks)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := log.VerifyWith(ctx, v, audit.VerifyOptions{Mirrored: got})
	if err != nil || rep.Mirrored != 3 {
		t.Fatalf("verify: %+v, %v", rep, err)
	}

	s, err := js.Stream(ctx, DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMsg(ctx, 1); err == nil {
		t.Error("the stream deleted a copy")
	}
	if err := s.Purge(ctx); err == nil {
		t.Error("the stream was purged")
	}
	if got, err := Read(ctx, js, DefaultStream); err != nil || len(got) != 3 {
		t.Fatalf("after the refused delete and purge: %d copies, %v", len(got), err)
	}
}

// TestPublisherCountsFailures: a checkpoint the stream never takes is
// counted and logged, not retried for ever; one that is no checkpoint too.
func TestPublisherCountsFailures(t *testing.T) {
	js := testJetStream(t, false)
	// No stream listens on the subject: every publish is refused.
	pub := NewPublisher(js, "NO_SUCH_STREAM", nil)
	pub.retry, pub.attempts = time.Millisecond, 2
	pub.Checkpoints([]string{"not-a-jws", "eyJhbGciOiJFZERTQSJ9.eyJzZXF1ZW5jZSI6MywiaGVhZCI6ImFiIn0.c2ln"})
	if err := pub.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	pub.Checkpoints([]string{"after-close"}) // counted, and no panic
	if pub.Failed() != 3 || pub.Sent() != 0 {
		t.Fatalf("failed %d, sent %d; want 3 and 0", pub.Failed(), pub.Sent())
	}
	if _, err := Read(context.Background(), js, "NO_SUCH_STREAM"); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("read of a missing stream: %v", err)
	}
}

func TestValidStream(t *testing.T) {
	for name, want := range map[string]bool{DefaultStream: true, "audit-eu_1": true, "": false, "a.b": false, "a b": false, "a>": false} {
		if got := ValidStream(name); got != want {
			t.Errorf("ValidStream(%q) = %v, want %v", name, got, want)
		}
	}
}

// fakeCheckpoint is a compact JWS whose payload holds seq and a head, as
// the publisher reads it; its signature is not checked here.
func fakeCheckpoint(seq int) string {
	payload := fmt.Sprintf(`{"sequence":%d,"head":"%064d"}`, seq, seq)
	return "eyJhbGciOiJFZERTQSJ9." + base64.RawURLEncoding.EncodeToString([]byte(payload)) + ".c2ln"
}

// TestPublisherTriesAgain: a checkpoint the stream refused on every
// attempt is kept and published after the next one the stream takes.
func TestPublisherTriesAgain(t *testing.T) {
	ctx := t.Context()
	js := testJetStream(t, false)
	pub := NewPublisher(js, DefaultStream, nil)
	pub.retry, pub.attempts = time.Millisecond, 2
	pub.Checkpoints([]string{fakeCheckpoint(10)}) // no stream yet: refused
	for deadline := time.Now().Add(10 * time.Second); pub.Waiting() != 1; {
		if time.Now().After(deadline) {
			t.Fatal("the refused checkpoint is not kept to be tried again")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := EnsureStream(ctx, js, DefaultStream, 1); err != nil {
		t.Fatal(err)
	}
	pub.Checkpoints([]string{fakeCheckpoint(20)})
	if err := pub.Close(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := Read(ctx, js, DefaultStream)
	if err != nil || len(got) != 2 || pub.Sent() != 2 || pub.Failed() != 0 || pub.Waiting() != 0 {
		t.Fatalf("%d copies (%v), sent %d, failed %d; want both sent", len(got), err, pub.Sent(), pub.Failed())
	}
}

// TestCatchUp publishes the checkpoints a log signed while nothing
// mirrored them, then only those without a copy, including one below the
// newest copy (given up by an instance while another, on a chain of its
// own, mirrored a later one).
func TestCatchUp(t *testing.T) {
	ctx := t.Context()
	js := testJetStream(t, true)
	keys := brokertest.DevKeys(t, filepath.Join(t.TempDir(), "ring.json"))
	log, _ := brokertest.OpenAudit(t, brokertest.SQLiteDSN(t), keys, func(o *audit.Options) { o.CheckpointEvery = 1 << 30 })
	appended := 0
	checkpoint := func(n int) {
		for range n {
			appended++
			if _, err := log.Append(ctx, &audit.Entry{Event: audit.EventDecided, RequestID: fmt.Sprintf("req-%d", appended), Decision: "deny"}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := log.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
	}
	checkpoint(2)
	checkpoint(3)
	catchUp := func() int {
		pub := NewPublisher(js, DefaultStream, nil)
		pub.CatchUp(DefaultStream, log.CheckpointsAfter)
		pub.catching.Wait()
		if err := pub.Close(ctx); err != nil {
			t.Fatal(err)
		}
		got, err := Read(ctx, js, DefaultStream)
		if err != nil {
			t.Fatal(err)
		}
		return len(got)
	}
	if n := catchUp(); n != 2 {
		t.Fatalf("%d copies after catching up, want 2", n)
	}
	checkpoint(4)
	if n := catchUp(); n != 3 {
		t.Fatalf("%d copies after catching up again, want 3", n)
	}
	want, _ := log.CheckpointsAfter(ctx, 0, 10)
	got, _ := Read(ctx, js, DefaultStream)
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("copy %d differs from the log's checkpoint", i)
		}
	}

	// Two more checkpoints; the later one alone is mirrored, as when the
	// instance holding the first stopped with it refused.
	checkpoint(1)
	checkpoint(2)
	all, _ := log.CheckpointsAfter(ctx, 0, 10)
	pub := NewPublisher(js, DefaultStream, nil)
	pub.Checkpoints(all[4:])
	if err := pub.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if n := catchUp(); n != 5 {
		t.Fatalf("%d copies after catching up below the newest copy, want 5", n)
	}
	got, _ = Read(ctx, js, DefaultStream)
	copies := map[string]bool{}
	for _, c := range got {
		copies[c] = true
	}
	for i, c := range all {
		if !copies[c] {
			t.Fatalf("checkpoint %d of %d has no copy", i+1, len(all))
		}
	}
}
