package broker_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/clearance-broker/clearance/broker"
	"github.com/clearance-broker/clearance/broker/brokertest"
	"github.com/clearance-broker/clearance/keys"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// versioned is a key service whose messages read "vN:content": it brings
// them up to version to, refuses "altered" ones for their own sake, and
// answers as down once down is set; during, when set, is called first.
type versioned struct {
	to     int
	down   bool
	calls  int
	during func() // called in the next call, once
}

func (v *versioned) Rewrap(_ context.Context, sealed [][]byte) ([][]byte, error) {
	v.calls++
	if v.during != nil {
		v.during()
	}
	if v.down {
		return nil, fmt.Errorf("vault down: %w", keys.ErrUnavailable)
	}
	out := make([][]byte, len(sealed))
	for i, s := range sealed {
		_, content, ok := strings.Cut(string(s), ":")
		if !ok || content == "altered" {
			return nil, fmt.Errorf("message %d: %w", i, keys.ErrMalformed)
		}
		out[i] = fmt.Appendf(nil, "v%d:%s", v.to, content)
		if string(out[i]) == string(s) {
			out[i] = s
		}
	}
	return out, nil
}

// TestRewrapDeadLetters: the dead letters under the broker's own key are
// published again brought up to the latest version, with their headers,
// and their old copy deleted; those under a subject's key, empty ones and
// current ones are left; one refused for its own sake is named and left
// while the rest goes on; the service down stops the walk. A run that
// published a copy but stopped before deleting the old one is made good
// by the next, within the stream's duplicate window or after it, without
// a third copy; one deleted meanwhile is not brought back; a message id
// taken by a dead letter that is no copy stops it.
func TestRewrapDeadLetters(t *testing.T) {
	ctx := t.Context()
	ns := brokertest.StartNATS(t)
	js, err := jetstream.New(brokertest.Connect(t, ns))
	if err != nil {
		t.Fatal(err)
	}
	rw := &versioned{to: 2}
	if st, err := broker.RewrapDeadLetters(ctx, js, rw, 2, nil); err != nil || !reflect.DeepEqual(st, broker.DeadLetterRewrapStats{}) || rw.calls != 0 {
		t.Fatalf("without a dead-letter stream: %+v, %v", st, err)
	}
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: broker.DeadLetterStream, Subjects: []string{broker.DeadLetterSubject + ".>"}})
	if err != nil {
		t.Fatal(err)
	}
	publish := func(id, data string) uint64 {
		t.Helper()
		m := nats.NewMsg(broker.DeadLetterSubject + ".orders")
		m.Data = []byte(data)
		m.Header.Set("Clearance-Request-Id", id)
		m.Header.Add("Clearance-Reason", "first")
		m.Header.Add("Clearance-Reason", "second")
		ack, err := js.PublishMsg(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		return ack.Sequence
	}
	old1 := publish("r1", "v1:one")
	publish("r2", "v2:current")
	altered := publish("r3", "v1:altered")
	publish("r4", "")
	// A subject envelope: its subject's key is what is brought up.
	publish("r5", base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"dir","enc":"A256GCM","skid":"k1","sh":"h1"}`))+"..iv.ct.tag")
	old6 := publish("r6", "v1:six")

	var rounds int
	st, err := broker.RewrapDeadLetters(ctx, js, rw, 2, func(broker.DeadLetterRewrapStats) { rounds++ })
	if !errors.Is(err, keys.ErrMalformed) || !strings.Contains(err.Error(), "1 left as they were") {
		t.Fatalf("err = %v, want the altered one named", err)
	}
	if st.Read != 6 || st.Rewrapped != 2 || st.SubjectKeyed != 1 || st.Current != 1 || st.Empty != 1 || !reflect.DeepEqual(st.Failed, []uint64{altered}) || rounds == 0 {
		t.Fatalf("stats %+v after %d rounds", st, rounds)
	}
	for _, seq := range []uint64{old1, old6} {
		if _, err := s.GetMsg(ctx, seq); !errors.Is(err, jetstream.ErrMsgNotFound) {
			t.Errorf("old copy %d: %v, want deleted", seq, err)
		}
	}
	byID := map[string]*jetstream.RawStreamMsg{}
	info, _ := s.Info(ctx)
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		if m, err := s.GetMsg(ctx, seq); err == nil {
			byID[m.Header.Get("Clearance-Request-Id")] = m
		}
	}
	if m := byID["r1"]; m == nil || string(m.Data) != "v2:one" || !reflect.DeepEqual(m.Header.Values("Clearance-Reason"), []string{"first", "second"}) ||
		m.Header.Get(broker.RewrappedFromHeader) != fmt.Sprint(old1) || m.Header.Get(broker.DeadLetteredAtHeader) == "" {
		t.Fatalf("r1 rewrapped: %+v", m)
	}
	if len(byID) != 6 || string(byID["r3"].Data) != "v1:altered" {
		t.Fatalf("dead letters after the rewrap: %d, altered %q", len(byID), byID["r3"].Data)
	}

	// Runs that published a copy and stopped before deleting the old one:
	// r7's within the duplicate window (the message id names the old
	// sequence), r8's after it. The next run deletes the old ones and
	// publishes no third copy. r9 is deleted by someone else while it is
	// rewrapped: it is not brought back.
	rw.to = 3
	copyOf := func(id string, from uint64, msgID string) {
		t.Helper()
		c := nats.NewMsg(broker.DeadLetterSubject + ".orders")
		c.Data = []byte("v3:" + id)
		c.Header.Set("Clearance-Request-Id", id)
		c.Header.Set(broker.RewrappedFromHeader, fmt.Sprint(from))
		if msgID != "" {
			c.Header.Set(jetstream.MsgIDHeader, msgID)
		}
		if _, err := js.PublishMsg(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	r7 := publish("r7", "v1:r7")
	copyOf("r7", r7, fmt.Sprintf("dl.rewrap.%d", r7))
	r8 := publish("r8", "v1:r8")
	copyOf("r8", r8, "")
	r9 := publish("r9", "v1:r9")
	// A dead letter that only claims to be r11's copy (another request):
	// r11 is rewrapped, not deleted.
	r11 := publish("r11", "v1:r11")
	copyOf("forged", r11, "")
	rw.during = func() {
		rw.during = nil
		if err := s.DeleteMsg(ctx, r9); err != nil {
			t.Error(err)
		}
	}
	st, err = broker.RewrapDeadLetters(ctx, js, rw, 100, nil)
	if !errors.Is(err, keys.ErrMalformed) || st.Gone != 1 {
		t.Fatalf("%+v, %v; want the altered one named, r9 gone", st, err)
	}
	count := map[string]int{}
	info, _ = s.Info(ctx)
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		if m, err := s.GetMsg(ctx, seq); err == nil {
			count[m.Header.Get("Clearance-Request-Id")]++
		}
	}
	if count["r7"] != 1 || count["r8"] != 1 || count["r9"] != 0 || count["r1"] != 1 || count["r11"] != 1 || count["forged"] != 1 {
		t.Fatalf("kept %v; want r1, r7, r8, r11 and the forged one once, r9 not at all", count)
	}

	// A message id taken by a dead letter that is no copy: left as it was.
	r10 := publish("r10", "v1:r10")
	imposter := nats.NewMsg(broker.DeadLetterSubject + ".orders")
	imposter.Data = []byte("v3:imposter")
	imposter.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("dl.rewrap.%d", r10))
	if _, err := js.PublishMsg(ctx, imposter); err != nil {
		t.Fatal(err)
	}
	if _, err := broker.RewrapDeadLetters(ctx, js, rw, 100, nil); err == nil || !strings.Contains(err.Error(), "no copy of it") {
		t.Fatalf("err = %v, want the message id named as taken", err)
	}
	if m, err := s.GetMsg(ctx, r10); err != nil || string(m.Data) != "v1:r10" {
		t.Fatalf("r10: %v", err)
	}

	rw.down = true
	if st, err := broker.RewrapDeadLetters(ctx, js, rw, 100, nil); !errors.Is(err, keys.ErrUnavailable) || st.Rewrapped != 0 {
		t.Fatalf("the key service down: %+v, %v", st, err)
	}
}
