package faults

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/audit"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/uptrace/bun"
)

// auditRow is the part of a stored audit entry the checks read.
type auditRow struct {
	Seq       int64     `bun:"seq"`
	At        time.Time `bun:"at"`
	Event     string    `bun:"event"`
	RequestID string    `bun:"request_id"`
	Decision  string    `bun:"decision"`
	Reasons   string    `bun:"reasons"`
}

func readAudit(t *testing.T, db *bun.DB) []auditRow {
	t.Helper()
	var rows []auditRow
	err := db.NewSelect().Table("audit_entries").Column("seq", "at", "event", "request_id", "decision", "reasons").
		Order("seq").Scan(t.Context(), &rows)
	if err != nil && !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("read audit: %v", err)
	}
	return rows
}

// isFinal reports whether the entry ends a request's story: delivered,
// delivery failed (dead-lettered), rejected, or decided as a denial.
func isFinal(r auditRow) bool {
	switch audit.Event(r.Event) {
	case audit.EventDelivered, audit.EventRejected:
		return true
	case audit.EventDeliveryFailed:
		// A transient failure is retried; a permanent or exhausted one is
		// dead-lettered and final.
		return !strings.Contains(r.Reasons, "delivery_failed: transient")
	case audit.EventDecided:
		return r.Decision == "deny"
	}
	return false
}

// finalOutcomes groups the final entries by request id.
func finalOutcomes(rows []auditRow) map[string][]auditRow {
	out := map[string][]auditRow{}
	for _, r := range rows {
		if isFinal(r) {
			out[r.RequestID] = append(out[r.RequestID], r)
		}
	}
	return out
}

// wantEvent is the final event a request of kind k must end with.
func wantEvent(k kind) string {
	switch k {
	case kindDenied:
		return string(audit.EventDecided)
	case kindInvalid:
		return string(audit.EventRejected)
	}
	return string(audit.EventDelivered)
}

func checkOutcomes(t *testing.T, rows []auditRow, n int) {
	finals := finalOutcomes(rows)
	bad := 0
	for i := range n {
		id := requestID(i)
		got := finals[id]
		var events []string
		for _, r := range got {
			events = append(events, r.Event+"/"+r.Reasons)
		}
		if len(got) != 1 || got[0].Event != wantEvent(kindOf(i)) {
			bad++
			if bad <= 10 {
				t.Errorf("%s (%s): final outcomes %v, want one %s", id, kindOf(i), events, wantEvent(kindOf(i)))
			}
		}
	}
	if extra := len(finals) - n; extra > 0 {
		t.Errorf("%d final outcomes for requests never sent", extra)
	}
	if bad > 0 {
		t.Errorf("%d of %d requests without exactly one right final outcome", bad, n)
	}
}

// checkOrder: every delivered entry follows an allowing decided entry of
// its request, and every application at the partner happened after it.
func checkOrder(t *testing.T, rows []auditRow, applied map[string][]time.Time, region []streamMsg) {
	firstAllow := map[string]auditRow{}
	bad := 0
	for _, r := range rows {
		if r.Event == string(audit.EventDecided) && r.Decision == "allow" {
			if _, ok := firstAllow[r.RequestID]; !ok {
				firstAllow[r.RequestID] = r
			}
		}
		if r.Event == string(audit.EventDelivered) {
			if d, ok := firstAllow[r.RequestID]; !ok || d.Seq > r.Seq {
				bad++
				if bad <= 10 {
					t.Errorf("%s: delivered (seq %d) without an earlier allowing decision", r.RequestID, r.Seq)
				}
			}
		}
	}
	for _, m := range region {
		id := m.header.Get(jetstream.MsgIDHeader)
		if d, ok := firstAllow[id]; !ok || m.at.Before(d.At) {
			bad++
			if bad <= 10 {
				t.Errorf("%s: stored by the region at %s before its decision was recorded", id, m.at)
			}
		}
	}
	for id, times := range applied {
		d, ok := firstAllow[id]
		if !ok || times[0].Before(d.At) {
			bad++
			if bad <= 10 {
				t.Errorf("%s: applied by the partner at %s before its decision was recorded (%v)", id, times[0], d.At)
			}
		}
	}
}

func checkApplied(t *testing.T, n int, posts map[string]int, applied map[string][]time.Time, region []streamMsg) {
	inRegion := map[string]int{}
	for _, m := range region {
		inRegion[m.header.Get(jetstream.MsgIDHeader)]++
	}
	bad := 0
	fail := func(format string, args ...any) {
		bad++
		if bad <= 10 {
			t.Errorf(format, args...)
		}
	}
	for i := range n {
		id := requestID(i)
		switch kindOf(i) {
		case kindWebhook:
			if len(applied[id]) != 1 {
				fail("%s: applied %d times by the partner (%d posts)", id, len(applied[id]), posts[id])
			}
		case kindRegion:
			if inRegion[id] != 1 {
				fail("%s: %d messages in the regional stream", id, inRegion[id])
			}
		default:
			if posts[id] > 0 || inRegion[id] > 0 {
				fail("%s (%s) reached a recipient", id, kindOf(i))
			}
		}
	}
	if len(inRegion) != countKind(n, kindRegion) {
		t.Errorf("regional stream holds %d request ids, want %d", len(inRegion), countKind(n, kindRegion))
	}
	if bad > 0 {
		t.Errorf("%d requests applied other than once", bad)
	}
}

func checkDeadLetters(t *testing.T, n int, dls []streamMsg) {
	per := map[string]int{}
	for _, m := range dls {
		per[m.header.Get("Clearance-Request-Id")]++
	}
	for i := range n {
		id := requestID(i)
		want := 0
		if kindOf(i) == kindInvalid {
			want = 1
		}
		if per[id] != want {
			t.Errorf("%s (%s): %d dead letters, want %d", id, kindOf(i), per[id], want)
		}
	}
}

// checkSealed: every body that left the broker (partner deliveries,
// regional messages, dead letters) is a compact JWE; the count of partner
// deliveries during the Vault outages is reported.
func checkSealed(t *testing.T, faults []fault, bodies []posted, region, dls []streamMsg) {
	var during int
	for _, b := range bodies {
		if err := compactJWE(b.body); err != nil {
			t.Errorf("a partner delivery is not sealed: %v", err)
		}
		for _, f := range faults {
			if strings.HasPrefix(f.name, "vault") && b.at.After(f.start) && b.at.Before(f.end) {
				during++
			}
		}
	}
	for _, m := range region {
		if err := compactJWE(m.data); err != nil {
			t.Errorf("a regional message is not sealed: %v", err)
		}
	}
	for _, m := range dls {
		if err := compactJWE(m.data); err != nil {
			t.Errorf("a dead letter is not sealed: %v", err)
		}
	}
	t.Logf("%d partner posts arrived while Vault was cut off (sealed before the outage)", during)
}

// compactJWE checks that b is five base64url parts whose header names an
// encryption.
func compactJWE(b []byte) error {
	parts := bytes.Split(bytes.TrimSpace(b), []byte("."))
	if len(parts) != 5 {
		return fmt.Errorf("%d dot-separated parts, want 5", len(parts))
	}
	hdr, err := base64.RawURLEncoding.DecodeString(string(parts[0]))
	if err != nil {
		return fmt.Errorf("header: %w", err)
	}
	var h struct {
		Enc string `json:"enc"`
	}
	if err := json.Unmarshal(hdr, &h); err != nil || h.Enc == "" {
		return fmt.Errorf("header without enc")
	}
	return nil
}

// streamMsg is one stored stream message.
type streamMsg struct {
	header nats.Header
	data   []byte
	at     time.Time
}

func readStream(t *testing.T, nc *nats.Conn, name string) []streamMsg {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	st, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []streamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			continue // deleted
		}
		out = append(out, streamMsg{header: m.Header, data: m.Data, at: m.Time})
	}
	return out
}

func regionMessages(t *testing.T, url string) []streamMsg {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	return readStream(t, nc, regionStream)
}

// regionCount is how many messages the regional stream holds (0 before it
// exists).
func regionCount(t *testing.T, url string) int {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(t.Context(), regionStream)
	if err != nil {
		return 0
	}
	info, err := st.Info(t.Context())
	if err != nil {
		return 0
	}
	return int(info.State.Msgs)
}

// checkLeaks searches every log line, metric, dead letter, audit row and
// captured wire byte for the canaries, and the logs for the secrets.
func (w *world) checkLeaks(t *testing.T, db *bun.DB, wire []byte, region, dls []streamMsg) {
	// Controls: the search finds the canaries where they belong (the
	// recipient's decrypted payload) and in base64.
	if len(findCanaries("payload", w.partner.Sample())) == 0 {
		t.Error("the canary search finds nothing in a decrypted payload: it is blind")
	}
	_, req := request(0)
	if len(findCanaries("encoded", []byte("x"+base64.StdEncoding.EncodeToString(req)))) == 0 {
		t.Error("the canary search misses base64")
	}
	var hits []string
	for i, b := range w.brokers {
		log := []byte(b.Log())
		hits = append(hits, findCanaries(fmt.Sprintf("log of instance %d", i), log)...)
		for _, s := range w.secrets {
			if bytes.Contains(log, []byte(s)) {
				hits = append(hits, fmt.Sprintf("log of instance %d: a secret", i))
			}
		}
		var metrics bytes.Buffer
		get(t, b.api+"/metrics", &metrics)
		hits = append(hits, findCanaries(fmt.Sprintf("/metrics of instance %d", i), metrics.Bytes())...)
	}
	var rows []map[string]any
	if err := db.NewSelect().Table("audit_entries").Scan(t.Context(), &rows); err != nil {
		t.Fatal(err)
	}
	all, _ := json.Marshal(rows)
	hits = append(hits, findCanaries("audit rows", all)...)
	hits = append(hits, findCanaries("partner wire", wire)...)
	hits = append(hits, findCanaries("NATS wire from the brokers", w.natsNet.Sent())...)
	for _, set := range []struct {
		name string
		msgs []streamMsg
	}{{"regional stream", region}, {"dead letters", dls}} {
		var buf bytes.Buffer
		for _, m := range set.msgs {
			for k, vs := range m.header {
				buf.WriteString(k + ": " + strings.Join(vs, ",") + "\n")
			}
			buf.Write(m.data)
			buf.WriteByte('\n')
		}
		hits = append(hits, findCanaries(set.name, buf.Bytes())...)
	}
	for _, h := range hits {
		t.Error(h)
	}
	t.Logf("searched %d KiB of logs, wire, audit rows, metrics and dead letters for %d canaries", (len(all)+len(wire)+len(w.natsNet.Sent()))/1024, len(canaries))
}
