package harness

import (
	"encoding/json"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/broker"
)

func TestWorkloadSizeAndMix(t *testing.T) {
	tests := []struct {
		name string
		sink string
		size int
	}{
		{name: "jetstream 256 B", sink: SinkJetStream, size: 256},
		{name: "jetstream 1 KB", sink: SinkJetStream, size: 1024},
		{name: "webhook 1 KB", sink: SinkWebhook, size: 1024},
		{name: "webhook 16 KB", sink: SinkWebhook, size: 16384},
	}
	reg, _, err := loadRegistry("", 0, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := newWorkload(tt.sink, tt.size)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.check(agreements.NewEngine(reg), time.Now()); err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(1, 1))
			for i := range 200 {
				_, id, body := w.request(12, 100000+i, rng, nil)
				if n, ok := indexOf(id); !ok || n != 100000+i {
					t.Fatalf("id %s gives index %d, %v", id, n, ok)
				}
				if _, err := agreements.ParseRequest(body); err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				if tt.size >= 512 && (len(body) < tt.size-16 || len(body) > tt.size+16) {
					t.Fatalf("request %d is %d bytes, want about %d", i, len(body), tt.size)
				}
			}
			got := w.expected(100)
			if got[ClassAllowed] != 40 || got[ClassMinimised] != 35 || got[ClassRefused] != 25 {
				t.Errorf("mix of 100 requests: %v", got)
			}
		})
	}
}

func TestTrackerLatency(t *testing.T) {
	tr := newTracker(3, 1000)
	for i := range 1000 {
		tr.sentAt(i, 1)
	}
	for i := range 1000 {
		tr.finish("lh3-"+strconv.Itoa(i), "delivered")
		tr.done[i] = 1 + int64(i+1)*int64(time.Millisecond)
	}
	tr.finish("lh3-5", "delivered")
	tr.finish("lh4-5", "delivered")
	l := tr.latency(0, 1000)
	if l.Count != 1000 || l.P50 != 500 || l.P99 != 990 || l.P999 != 999 || l.Max != 1000 {
		t.Errorf("latency %+v", l)
	}
	if l := tr.latency(900, 1000); l.Count != 100 || l.P50 != 950 || l.Max != 1000 {
		t.Errorf("latency of the last 100: %+v", l)
	}
	if tr.dups.Load() != 1 || tr.alien.Load() != 1 || tr.left.Load() != 0 {
		t.Errorf("dups %d, foreign %d, left %d", tr.dups.Load(), tr.alien.Load(), tr.left.Load())
	}
}

// TestReceiptFields: the harness reads a receipt's id and status as
// encoding/json does, also when they hold escapes.
func TestReceiptFields(t *testing.T) {
	for _, r := range []broker.Receipt{
		{RequestID: "lh1-42", Decision: "allow", Status: broker.StatusDelivered, Reasons: []string{}, AuditSequence: 7},
		{RequestID: `lh1-"43"`, Decision: "deny", Status: broker.StatusDenied, Reasons: []string{`a "status":"x"`}},
		{RequestID: "lh1-44", Status: broker.StatusRejected},
	} {
		data, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		id, status, ok := receiptFields(data)
		if !ok || id != r.RequestID || status != string(r.Status) {
			t.Errorf("%s: got %q %q %v", data, id, status, ok)
		}
	}
	if _, _, ok := receiptFields([]byte("not json")); ok {
		t.Error("read a receipt out of no JSON")
	}
}
