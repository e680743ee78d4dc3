package faults

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// fault is one injected failure and how long it lasted.
type fault struct {
	name       string
	start, end time.Time
}

// TestFaultInjection sends requests through two `clearance serve`
// instances while a broker is killed, Vault is cut off, NATS restarts and
// Postgres stops, then checks that nothing was lost, doubled, reordered or
// leaked.
func TestFaultInjection(t *testing.T) {
	sc := runScale()
	began := time.Now()
	w := startWorld(t, 2, "")
	t.Logf("world up in %s", time.Since(began).Round(time.Millisecond))

	pnc, err := nats.Connect(w.nats.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer pnc.Close()
	js, err := jetstream.New(pnc)
	if err != nil {
		t.Fatal(err)
	}
	p := &producer{js: js}
	ctx, cancel := context.WithTimeout(t.Context(), sc.pace+sc.settle)
	defer cancel()
	produced := make(chan error, 1)
	go func() { produced <- p.run(ctx, sc.requests, sc.pace) }()

	faults := w.inject(t, p, sc)
	if err := <-produced; err != nil {
		t.Fatal(err)
	}
	sentAt := time.Now()

	db := openAuditDB(t, w.pg.DSN())
	var rows []auditRow
	for {
		rows = readAudit(t, db)
		if len(finalOutcomes(rows)) >= sc.requests && regionCount(t, w.region) >= countKind(sc.requests, kindRegion) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("only %d of %d requests have a final outcome %s after the last was sent", len(finalOutcomes(rows)), sc.requests, sc.settle)
		}
		time.Sleep(500 * time.Millisecond)
	}
	// Let redeliveries that are still due land before judging "once".
	time.Sleep(6 * time.Second)
	rows = readAudit(t, db)
	t.Logf("all %d outcomes %s after the last request was sent; %s in all", sc.requests, time.Since(sentAt).Round(time.Millisecond), time.Since(began).Round(time.Millisecond))

	posts, applied, wire, bodies := w.partner.snapshot()
	regionMsgs := regionMessages(t, w.region)
	deadLetters := readStream(t, pnc, "CLEARANCE_DEADLETTER")

	t.Run("one final outcome each", func(t *testing.T) { checkOutcomes(t, rows, sc.requests) })
	t.Run("delivery after decision", func(t *testing.T) { checkOrder(t, rows, applied, regionMsgs) })
	t.Run("every allowed transfer applied once", func(t *testing.T) {
		checkApplied(t, sc.requests, posts, applied, regionMsgs)
	})
	t.Run("dead letters", func(t *testing.T) { checkDeadLetters(t, sc.requests, deadLetters) })
	t.Run("nothing unsealed", func(t *testing.T) { checkSealed(t, faults, bodies, regionMsgs, deadLetters) })
	t.Run("audit verify", func(t *testing.T) { w.auditVerify(t) })
	t.Run("canaries and secrets", func(t *testing.T) { w.checkLeaks(t, db, wire, regionMsgs, deadLetters) })
	t.Run("faults bit", func(t *testing.T) {
		// Without transient failures the faults missed the pipeline and
		// the run proves nothing.
		var transient float64
		for _, b := range w.brokers {
			var m bytes.Buffer
			get(t, b.api+"/metrics", &m)
			transient += sumMetric(m.String(), "clearance_messages_total", `outcome="transient"`)
		}
		if transient == 0 {
			t.Error("no transient outcome on the surviving instances: the faults did not reach the pipeline")
		}
		t.Logf("transient outcomes retried (instances since their last start): %.0f", transient)
	})
	t.Run("healthy", func(t *testing.T) {
		for _, b := range w.brokers {
			if code := get(t, b.api+"/readyz", nil); code != http.StatusOK {
				t.Errorf("%s/readyz: %d", b.api, code)
			}
		}
	})

	redelivered := 0
	for _, n := range posts {
		redelivered += n - 1
	}
	t.Logf("figures: requests=%d faults=%d producer_retries=%d audit_entries=%d webhook_posts=%d duplicate_posts_absorbed=%d region_messages=%d dead_letters=%d broker_starts=%d",
		sc.requests, len(faults), p.retries.Load(), len(rows), sumCounts(posts), redelivered, len(regionMsgs), len(deadLetters), w.brokers[0].starts+w.brokers[1].starts)
	for _, f := range faults {
		t.Logf("fault %s: %s", f.name, f.end.Sub(f.start).Round(time.Millisecond))
	}
}

// inject runs the rounds of faults as the producer passes fractions of its
// requests: a broker killed and restarted, Vault cut off, NATS restarted,
// Postgres stopped.
func (w *world) inject(t *testing.T, p *producer, sc scale) []fault {
	t.Helper()
	steps := []struct {
		name string
		do   func()
	}{
		{"kill -9 broker", func() {
			w.brokers[0].Kill()
			time.Sleep(time.Second)
			w.brokers[0].Start()
		}},
		{"vault outage 5s", func() {
			w.vaultNet.Cut()
			time.Sleep(5 * time.Second)
			w.vaultNet.Restore()
		}},
		{"nats restart", func() {
			w.nats.Stop()
			time.Sleep(2 * time.Second)
			w.nats.Start()
		}},
		{"postgres outage 5s", func() {
			w.pg.Stop()
			time.Sleep(5 * time.Second)
			w.pg.Start()
		}},
	}
	var out []fault
	total := sc.rounds * len(steps)
	for k := range total {
		at := int64(sc.requests) * int64(k+1) / int64(total+1)
		for p.sent.Load() < at {
			time.Sleep(50 * time.Millisecond)
		}
		s := steps[k%len(steps)]
		f := fault{name: s.name, start: time.Now()}
		s.do()
		f.end = time.Now()
		out = append(out, f)
		t.Logf("fault %s at request %d", s.name, p.sent.Load())
	}
	return out
}

// auditVerify runs `clearance audit verify` on the store, holding it to
// the copies of its checkpoints the brokers mirrored through the faults
// (the configuration's NATS and audit.checkpoint_stream).
func (w *world) auditVerify(t *testing.T) {
	var out, errb bytes.Buffer
	cmd := exec.Command(w.bin, "audit", "verify", "--db", w.pg.DSN(), "--jwks", w.jwksFile, "--config", w.cfgPath)
	cmd.Env = filterEnv(os.Environ(), "CLEARANCE_")
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("clearance audit verify: %v\n%s%s", err, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "mirrored copies:") || strings.Contains(out.String(), "mirrored copies:     0 checked") ||
		strings.Contains(out.String(), "mirrored copies:     not checked") {
		t.Errorf("audit verify held the log to no copies of its checkpoints:\n%s", out.String())
	}
	t.Logf("audit verify: %s", strings.TrimSpace(out.String()))
}

func get(t *testing.T, url string, out io.Writer) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Errorf("GET %s: %v", url, err)
		return 0
	}
	defer resp.Body.Close()
	if out != nil {
		_, _ = io.Copy(out, resp.Body)
	}
	return resp.StatusCode
}

// sumMetric adds the samples of a Prometheus counter whose labels hold
// label.
func sumMetric(text, name, label string) float64 {
	var sum float64
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name+"{") || !strings.Contains(line, label) {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v); err == nil {
			sum += v
		}
	}
	return sum
}

func sumCounts(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func countKind(n int, k kind) int {
	c := 0
	for i := range n {
		if kindOf(i) == k {
			c++
		}
	}
	return c
}
