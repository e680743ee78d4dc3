package mirror

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/broker/brokertest"
)

// TestMirrorRoundTrip mirrors the checkpoints of a log as it is written,
// reads them back, and verifies the log against them; a checkpoint
// published twice is kept once, and the stream refuses to delete or purge.
func TestMirrorRoundTrip(t *testing.T) {
	ctx := t.Context()
	js, err := jetstream.New(brokertest.Connect(t, brokertest.StartNATS(t)))
	if err != nil {
		t.Fatal(err)
	}
	if err := EnsureStream(ctx, js, DefaultStream, 1); err != nil {
		t.Fatal(err)
	}
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
	js, err := jetstream.New(brokertest.Connect(t, brokertest.StartNATS(t)))
	if err != nil {
		t.Fatal(err)
	}
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
